//! Email over SMTP (RFC 5321) with lettre, configured by one URL (`TESSERA_SMTP_URL`):
//!
//! | URL | connection |
//! |---|---|
//! | `smtps://user:pass@host[:465]` | implicit TLS (RFC 8314), recommended |
//! | `smtp://user:pass@host[:587]?tls=required` | STARTTLS, refused if the server does not offer it |
//! | `smtp://host[:587]?tls=opportunistic` | STARTTLS when offered (open to downgrade) |
//! | `smtp://host[:25]` | plain text: a local relay or a test server only |
//!
//! Defends against leaking the SMTP password: it exists only inside lettre's transport (whose
//! `Debug` hides credentials) and the configuration's `SecretString`; this type's `Debug` and
//! [`EmailTransport::describe`] show `scheme://host:port` only. Certificates are checked
//! against the Web PKI roots.

use super::{EmailTransport, NotifyError, OutgoingEmail, TransportError, redact_url};
use async_trait::async_trait;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};
use std::fmt;
use std::time::Duration;

/// How long one SMTP command may take before the attempt fails (and is retried later).
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends email through an SMTP server (a pool of connections).
pub struct SmtpTransport {
    inner: AsyncSmtpTransport<Tokio1Executor>,
    redacted_url: String,
}

impl SmtpTransport {
    /// A transport for `TESSERA_SMTP_URL`. Connects lazily, on the first message.
    ///
    /// Must be called within a Tokio runtime: lettre's connection pool spawns its reaper task
    /// on creation (and would panic without a runtime, so this returns an error instead).
    pub fn from_url(url: &SecretString) -> Result<Self, NotifyError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(NotifyError::SmtpUrl(
                "the SMTP transport must be created inside the Tokio runtime".to_owned(),
            ));
        }
        let inner = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret())
            .map_err(|error| NotifyError::SmtpUrl(error.to_string()))?
            .timeout(Some(SMTP_TIMEOUT))
            .build();
        Ok(Self {
            inner,
            redacted_url: redact_url(url),
        })
    }
}

impl fmt::Debug for SmtpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpTransport")
            .field("url", &self.redacted_url)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl EmailTransport for SmtpTransport {
    async fn send_email(&self, email: &OutgoingEmail) -> Result<(), TransportError> {
        let formatted = email.message.formatted();
        match self
            .inner
            .send_raw(email.message.envelope(), &formatted)
            .await
        {
            Ok(response) => {
                tracing::info!(
                    outbox_id = email.outbox_id,
                    code = %response.code(),
                    "email accepted by the SMTP server"
                );
                Ok(())
            }
            Err(error) => Err(TransportError(format!("SMTP: {}", error_chain(&error)))),
        }
    }

    fn describe(&self) -> String {
        format!("SMTP {}", self.redacted_url)
    }
}

/// `error: cause: cause`, since lettre puts the useful part (refused, timed out) in `source`.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(value: &str) -> SecretString {
        SecretString::from(value.to_owned())
    }

    #[tokio::test]
    async fn every_documented_url_form_is_accepted() {
        for url in [
            "smtp://127.0.0.1:2525",
            "smtp://user:pass@mail.example.com?tls=required",
            "smtp://mail.example.com:587?tls=opportunistic",
            "smtps://user:pass@mail.example.com",
        ] {
            assert!(SmtpTransport::from_url(&secret(url)).is_ok(), "{url}");
        }
        assert!(SmtpTransport::from_url(&secret("smtp://host?tls=sometimes")).is_err());
        assert!(SmtpTransport::from_url(&secret("http://host")).is_err());
    }

    #[tokio::test]
    async fn debug_and_describe_hide_the_credentials() {
        let transport =
            SmtpTransport::from_url(&secret("smtps://mailer:hunter2@smtp.example.com:465"))
                .unwrap();
        let shown = format!("{transport:?} {}", transport.describe());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("mailer"), "{shown}");
        assert!(shown.contains("smtps://smtp.example.com:465"), "{shown}");
    }

    #[test]
    fn outside_a_runtime_it_is_an_error_not_a_panic() {
        assert!(SmtpTransport::from_url(&secret("smtp://127.0.0.1:2525")).is_err());
    }
}

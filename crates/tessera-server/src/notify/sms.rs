//! Text messages through a webhook (`TESSERA_SMS_WEBHOOK_URL`): `POST` of `{"to", "body"}` as
//! JSON; any 2xx answer means accepted, anything else is a failure that the worker retries.
//!
//! Defends against leaking the webhook's token (often in its path or query) and against a
//! redirect sending one-time codes elsewhere: the URL is kept in a `SecretString`, error texts are
//! stripped of it (`reqwest::Error::without_url`), logs show `scheme://host:port` only, and
//! redirects are not followed. A slow provider cannot hold the worker for long: each request
//! has [`SMS_WEBHOOK_TIMEOUT`].

use super::{NotifyError, OutgoingSms, SmsTransport, TransportError, redact_url};
use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use std::fmt;
use std::time::Duration;

/// The whole-request timeout of one webhook call.
pub const SMS_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends text messages by posting them to a webhook.
pub struct WebhookSms {
    client: reqwest::Client,
    url: SecretString,
    redacted_url: String,
}

impl WebhookSms {
    /// A transport posting to `url` (http or https).
    pub fn new(url: &SecretString) -> Result<Self, NotifyError> {
        let parsed = url::Url::parse(url.expose_secret())
            .map_err(|error| NotifyError::SmsWebhookUrl(error.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(NotifyError::SmsWebhookUrl(
                "expected an http:// or https:// URL with a host".to_owned(),
            ));
        }
        let client = http_client(SMS_WEBHOOK_TIMEOUT)
            .map_err(|error| NotifyError::SmsWebhookUrl(error.without_url().to_string()))?;
        Ok(Self {
            client,
            url: url.clone(),
            redacted_url: redact_url(url),
        })
    }
}

impl fmt::Debug for WebhookSms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSms")
            .field("url", &self.redacted_url)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl SmsTransport for WebhookSms {
    async fn send_sms(&self, sms: &OutgoingSms) -> Result<(), TransportError> {
        let payload = serde_json::json!({ "to": sms.to, "body": sms.body });
        let response = self
            .client
            .post(self.url.expose_secret())
            .json(&payload)
            .send()
            .await
            .map_err(|error| TransportError(format!("SMS webhook: {}", request_error(error))))?;
        let status = response.status();
        if status.is_success() {
            tracing::info!(
                outbox_id = sms.outbox_id,
                status = status.as_u16(),
                "SMS accepted by the webhook"
            );
            Ok(())
        } else {
            Err(TransportError(format!(
                "SMS webhook answered HTTP {}",
                status.as_u16()
            )))
        }
    }

    fn describe(&self) -> String {
        format!("SMS webhook {}", self.redacted_url)
    }
}

/// The HTTP client of an SMS provider: a whole-request `timeout`, no redirects (a redirect
/// could carry a one-time code elsewhere), Tessera's user agent.
pub(super) fn http_client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("tessera/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// The error and its causes, without the URL.
pub(super) fn request_error(error: reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let error = error.without_url();
    let mut text = kind.to_owned();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn secret(value: &str) -> SecretString {
        SecretString::from(value.to_owned())
    }

    #[test]
    fn only_http_urls_are_accepted() {
        assert!(WebhookSms::new(&secret("https://sms.example.com/send")).is_ok());
        assert!(WebhookSms::new(&secret("http://127.0.0.1:9000")).is_ok());
        assert!(WebhookSms::new(&secret("ftp://sms.example.com")).is_err());
        assert!(WebhookSms::new(&secret("no url")).is_err());
    }

    #[tokio::test]
    async fn an_unreachable_webhook_is_a_failure_without_the_token() {
        // Port 9 (discard) on localhost: nothing listens there in a test environment.
        let sms = WebhookSms::new(&secret("http://127.0.0.1:9/hook?token=s3cr3t")).unwrap();
        assert!(!format!("{sms:?} {}", sms.describe()).contains("s3cr3t"));
        let error = sms
            .send_sms(&OutgoingSms {
                outbox_id: 1,
                created_at: datetime!(2026-01-01 00:00 UTC),
                to: "+15555550123".into(),
                body: "hi".into(),
            })
            .await
            .unwrap_err();
        assert!(error.0.starts_with("SMS webhook: "), "{error}");
        assert!(!error.0.contains("s3cr3t"), "{error}");
    }
}

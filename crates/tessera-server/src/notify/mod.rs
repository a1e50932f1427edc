//! Delivery of the transactional outbox: rendering notifications and handing them to a transport
//! (SMTP, an SMS webhook, or the dev outbox directory), and the worker that drains the outbox.
//!
//! A use case writes its outbox row in the same transaction as the change
//! ([`tessera_core::notification`]); this module only delivers. Delivery is at least once: a
//! crash between handing a message to the transport and marking it sent repeats it, so the
//! email carries a stable `Message-ID` and the dev outbox a stable file name per outbox row.
//!
//! Defends against leaking transport secrets: SMTP credentials and webhook tokens live in
//! [`secrecy::SecretString`], and every `Debug` or log line shows a redacted URL only
//! (`scheme://host:port`). Transport error texts are stripped of URLs before they are logged
//! or stored. Recipient addresses are not logged; the outbox id identifies a message.
//!
//! The server calls [`spawn_outbox_worker`] at start-up (it builds a [`Delivery`] from the
//! settings and runs an [`OutboxWorker`]) and pokes `AppState::outbox_wake` after each commit
//! that enqueued a message. Tests and tools can assemble the pieces themselves.

mod dev_outbox;
mod render;
mod sms;
mod smtp;
mod twilio;
mod worker;

pub use dev_outbox::DevOutbox;
pub use render::{RenderError, Rendered, RenderedEmail, Renderer, SERVICE_NAME};
pub use sms::{SMS_WEBHOOK_TIMEOUT, WebhookSms};
pub use smtp::{SMTP_TIMEOUT, SmtpTransport};
pub use twilio::{TWILIO_BASE_URL, TWILIO_TIMEOUT, TwilioSettings, TwilioSms};
pub use worker::{
    DEFAULT_POLL_INTERVAL, DELIVERY_TIMEOUT, OutboxWaker, OutboxWorker, PassHook, PassOutcome,
    WorkerStats, run_outbox_worker,
};

use crate::config::Settings;
use crate::state::AppState;
use anyhow::Context;
use async_trait::async_trait;
use lettre::Message;
use lettre::message::{Mailbox, MultiPart};
use secrecy::SecretString;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use tessera_core::crypto::KeyRing;
use tessera_core::notification::{Channel, Notification, OutboxMessage};
use tessera_core::otc::{CodePurpose, open_from_outbox};
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The `From:` used when `TESSERA_MAIL_FROM` is not set.
pub const DEFAULT_MAIL_FROM: &str = "Tessera <tessera@localhost>";

/// The settings delivery needs, taken from the server configuration.
pub struct NotifyConfig {
    /// `TESSERA_PUBLIC_URL`: links in messages point under it.
    pub public_url: String,
    /// `TESSERA_DATA_DIR`: the dev outbox is `<data_dir>/outbox/`.
    pub data_dir: PathBuf,
    /// `TESSERA_SMTP_URL` (`smtp://`, `smtp://…?tls=required`, `smtps://user:pass@host`); `None`
    /// writes emails to the dev outbox. May hold a password.
    pub smtp_url: Option<SecretString>,
    /// `TESSERA_MAIL_FROM`, e.g. [`DEFAULT_MAIL_FROM`].
    pub mail_from: String,
    /// `TESSERA_SMS_WEBHOOK_URL`; `None` writes texts to the dev outbox. May hold a token.
    pub sms_webhook_url: Option<SecretString>,
    /// A Twilio-compatible account (`TESSERA_SMS_TWILIO_*`); used instead of the webhook.
    pub sms_twilio: Option<TwilioSettings>,
}

impl NotifyConfig {
    /// Settings with no transport configured: both channels go to `<data_dir>/outbox/`.
    pub fn dev(public_url: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            public_url: public_url.into(),
            data_dir: data_dir.into(),
            smtp_url: None,
            mail_from: DEFAULT_MAIL_FROM.to_owned(),
            sms_webhook_url: None,
            sms_twilio: None,
        }
    }
}

impl fmt::Debug for NotifyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NotifyConfig")
            .field("public_url", &self.public_url)
            .field("data_dir", &self.data_dir)
            .field("smtp_url", &self.smtp_url.as_ref().map(redact_url))
            .field("mail_from", &self.mail_from)
            .field(
                "sms_webhook_url",
                &self.sms_webhook_url.as_ref().map(redact_url),
            )
            .field("sms_twilio", &self.sms_twilio)
            .finish()
    }
}

/// Why the delivery side could not be set up (a configuration error, reported at start-up).
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// `TESSERA_MAIL_FROM` is not a mailbox.
    #[error("TESSERA_MAIL_FROM is not a valid mailbox: {0}")]
    MailFrom(String),
    /// `TESSERA_SMTP_URL` cannot be used (the message never repeats the URL).
    #[error("TESSERA_SMTP_URL is not usable: {0}")]
    SmtpUrl(String),
    /// `TESSERA_SMS_WEBHOOK_URL` cannot be used (the message never repeats the URL).
    #[error("TESSERA_SMS_WEBHOOK_URL is not usable: {0}")]
    SmsWebhookUrl(String),
    /// The `TESSERA_SMS_TWILIO_*` settings cannot be used (the message never repeats the token).
    #[error("the Twilio SMS settings are not usable: {0}")]
    SmsTwilio(String),
}

/// A transport's failure, already stripped of URLs and credentials, fit for logs and the
/// outbox row's `last_error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TransportError(pub String);

/// Why one message was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The notification could not be rendered.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// The recipient or the message is malformed; retrying cannot help.
    #[error("invalid message: {0}")]
    Invalid(String),
    /// The transport refused or failed; worth retrying.
    #[error("transport: {0}")]
    Transport(#[from] TransportError),
}

impl DeliveryError {
    /// Whether retrying cannot succeed, so the message should be marked failed at once.
    pub fn is_permanent(&self) -> bool {
        match self {
            DeliveryError::Render(RenderError::Template(_)) | DeliveryError::Invalid(_) => true,
            DeliveryError::Render(RenderError::Unsupported) | DeliveryError::Transport(_) => false,
        }
    }
}

/// An email ready for a transport.
#[derive(Debug, Clone)]
pub struct OutgoingEmail {
    /// The outbox row it comes from.
    pub outbox_id: i64,
    /// When the row was written (the `Date:` header).
    pub created_at: OffsetDateTime,
    /// The MIME message, with its envelope.
    pub message: Message,
}

/// A text message ready for a transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingSms {
    /// The outbox row it comes from.
    pub outbox_id: i64,
    /// When the row was written.
    pub created_at: OffsetDateTime,
    /// The E.164 phone number.
    pub to: String,
    /// The text.
    pub body: String,
}

/// Sends emails (SMTP, or the dev outbox).
#[async_trait]
pub trait EmailTransport: fmt::Debug + Send + Sync + 'static {
    /// Hands `email` to the transport; `Ok` means it accepted responsibility for it.
    async fn send_email(&self, email: &OutgoingEmail) -> Result<(), TransportError>;

    /// A line for the start-up log, without secrets.
    fn describe(&self) -> String;
}

/// Sends text messages (the webhook, or the dev outbox).
#[async_trait]
pub trait SmsTransport: fmt::Debug + Send + Sync + 'static {
    /// Hands `sms` to the transport; `Ok` means it accepted responsibility for it.
    async fn send_sms(&self, sms: &OutgoingSms) -> Result<(), TransportError>;

    /// A line for the start-up log, without secrets.
    fn describe(&self) -> String;
}

/// Renders outbox messages and sends them through the configured transports.
#[derive(Debug, Clone)]
pub struct Delivery {
    renderer: Renderer,
    mail_from: Mailbox,
    message_id_domain: String,
    email: Arc<dyn EmailTransport>,
    sms: Arc<dyn SmsTransport>,
    /// The current key ring, to open the sealed codes of one-time-code messages; without it
    /// they cannot be sent.
    keys: Option<KeySource>,
}

/// Where delivery gets the current key ring (it changes when the keys are rotated).
#[derive(Clone)]
pub struct KeySource(Arc<dyn Fn() -> Arc<KeyRing> + Send + Sync>);

impl KeySource {
    /// Asks `current` for the key ring each time a code is opened.
    pub fn new(current: impl Fn() -> Arc<KeyRing> + Send + Sync + 'static) -> Self {
        Self(Arc::new(current))
    }

    /// Always this key ring (tests, tools).
    pub fn fixed(keys: Arc<KeyRing>) -> Self {
        Self::new(move || Arc::clone(&keys))
    }
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeySource([REDACTED])")
    }
}

impl Delivery {
    /// Builds the transports the settings ask for: SMTP when `smtp_url` is set; for SMS the
    /// Twilio-compatible API when `sms_twilio` is set, else the webhook when `sms_webhook_url`
    /// is; the dev outbox for whichever channel has none. Call it
    /// within the Tokio runtime (the SMTP pool spawns a task).
    pub fn from_config(config: &NotifyConfig) -> Result<Self, NotifyError> {
        let mail_from = parse_mail_from(&config.mail_from)?;
        let outbox = Arc::new(DevOutbox::new(&config.data_dir));
        let email: Arc<dyn EmailTransport> = match &config.smtp_url {
            Some(url) => Arc::new(SmtpTransport::from_url(url)?),
            None => outbox.clone(),
        };
        let sms: Arc<dyn SmsTransport> = match (&config.sms_twilio, &config.sms_webhook_url) {
            (Some(twilio), _) => Arc::new(TwilioSms::new(twilio)?),
            (None, Some(url)) => Arc::new(WebhookSms::new(url)?),
            (None, None) => outbox,
        };
        Ok(Self::new(
            Renderer::new(&config.public_url),
            mail_from,
            email,
            sms,
        ))
    }

    /// Delivery through the given transports (tests, or transports the config does not name).
    pub fn new(
        renderer: Renderer,
        mail_from: Mailbox,
        email: Arc<dyn EmailTransport>,
        sms: Arc<dyn SmsTransport>,
    ) -> Self {
        let message_id_domain = url::Url::parse(renderer.public_url())
            .ok()
            .and_then(|url| url.host_str().map(str::to_owned))
            .unwrap_or_else(|| "localhost".to_owned());
        Self {
            renderer,
            mail_from,
            message_id_domain,
            email,
            sms,
            keys: None,
        }
    }

    /// Gives delivery the instance key ring, to open the codes of one-time-code messages.
    #[must_use]
    pub fn with_keys(mut self, keys: KeySource) -> Self {
        self.keys = Some(keys);
        self
    }

    /// Every form of an outbox message. A one-time code is opened here, just before it is
    /// written into the message, and only for the message's own recipient and purpose; one
    /// that does not open fails the delivery for good (retrying cannot help, and the user
    /// asks for a new code).
    fn render(&self, message: &OutboxMessage) -> Result<Rendered, DeliveryError> {
        if let Notification::MfaResetLink {
            display_name,
            org_name,
            sealed_token,
            expires_at,
        } = &message.notification
        {
            let keys = self.keys.as_ref().ok_or_else(|| {
                DeliveryError::Invalid("no key ring to open the reset link".to_owned())
            })?;
            let token = tessera_core::otc::open_secret_from_outbox(
                &(keys.0)(),
                sealed_token,
                &message.recipient,
                tessera_core::service::RESET_LINK_PURPOSE,
            )
            .map_err(|_| DeliveryError::Invalid("the reset link does not open".to_owned()))?;
            return Ok(self.renderer.reset_link(
                display_name,
                org_name.as_deref(),
                &token,
                expires_at,
            )?);
        }
        let Notification::OneTimeCode {
            purpose,
            sealed_code,
        } = &message.notification
        else {
            return Ok(self.renderer.render(&message.notification)?);
        };
        let purpose = CodePurpose::parse(purpose).ok_or_else(|| {
            DeliveryError::Invalid(format!("unknown one-time code purpose {purpose:?}"))
        })?;
        let keys = self.keys.as_ref().ok_or_else(|| {
            DeliveryError::Invalid("no key ring to open the one-time code".to_owned())
        })?;
        let code = open_from_outbox(&(keys.0)(), sealed_code, &message.recipient, purpose)
            .map_err(|_| DeliveryError::Invalid("the one-time code does not open".to_owned()))?;
        Ok(self.renderer.one_time_code(&code, purpose)?)
    }

    /// The renderer (for previews).
    pub fn renderer(&self) -> &Renderer {
        &self.renderer
    }

    /// A line for the start-up log naming both transports, without secrets.
    pub fn describe(&self) -> String {
        format!(
            "email: {}; sms: {}",
            self.email.describe(),
            self.sms.describe()
        )
    }

    /// Renders and sends one outbox message through its channel's transport.
    pub async fn deliver(&self, message: &OutboxMessage) -> Result<(), DeliveryError> {
        match message.channel {
            Channel::Email => {
                let email = self.build_email(message)?;
                self.email.send_email(&email).await?;
            }
            Channel::Sms => {
                let sms = OutgoingSms {
                    outbox_id: message.id,
                    created_at: message.created_at,
                    to: message.recipient.clone(),
                    body: self.render(message)?.sms,
                };
                self.sms.send_sms(&sms).await?;
            }
        }
        Ok(())
    }

    /// The MIME message for an email outbox row: `multipart/alternative` with the text part
    /// first (the least preferred, per RFC 2046) and the HTML part last.
    pub fn build_email(&self, message: &OutboxMessage) -> Result<OutgoingEmail, DeliveryError> {
        let rendered = self.render(message)?.email;
        let to: lettre::Address = message.recipient.parse().map_err(|_| {
            DeliveryError::Invalid("the recipient is not an email address".to_owned())
        })?;
        let mime = Message::builder()
            .from(self.mail_from.clone())
            .to(Mailbox::new(None, to))
            .subject(rendered.subject)
            .date(message.created_at.into())
            // Stable across retries, so a receiver can drop a duplicate delivery.
            .message_id(Some(format!(
                "<outbox-{}.{}@{}>",
                message.id,
                message.created_at.unix_timestamp(),
                self.message_id_domain
            )))
            .multipart(MultiPart::alternative_plain_html(
                rendered.text,
                rendered.html,
            ))
            .map_err(|error| DeliveryError::Invalid(error.to_string()))?;
        Ok(OutgoingEmail {
            outbox_id: message.id,
            created_at: message.created_at,
            message: mime,
        })
    }
}

impl NotifyConfig {
    /// The delivery settings of the server configuration.
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            public_url: settings.public_url.clone(),
            data_dir: settings.data_dir.clone(),
            smtp_url: settings.smtp_url.clone().map(SecretString::from),
            mail_from: settings.mail_from.clone(),
            sms_webhook_url: settings.sms_webhook_url.clone().map(SecretString::from),
            sms_twilio: match (
                &settings.sms_twilio_account_sid,
                &settings.sms_twilio_auth_token,
                &settings.sms_twilio_from,
            ) {
                (Some(account_sid), Some(auth_token), Some(from)) => Some(TwilioSettings {
                    account_sid: account_sid.clone(),
                    auth_token: SecretString::from(auth_token.clone()),
                    from: from.clone(),
                    base_url: settings.sms_twilio_base_url.clone(),
                }),
                _ => None,
            },
        }
    }
}

/// Starts the outbox worker of a server: builds the transports from its settings, wakes on
/// `state.outbox_wake`, adds to `state.metrics`, and stops when `shutdown` turns `true`.
/// Fails (at start-up) when the transport settings are unusable.
pub fn spawn_outbox_worker(
    state: &AppState,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<JoinHandle<()>> {
    let services = state.services.clone();
    let delivery = Delivery::from_config(&NotifyConfig::from_settings(&state.settings))
        .context("cannot set up notification delivery")?
        .with_keys(KeySource::new(move || services.key_ring()));
    let metrics = Arc::clone(&state.metrics);
    let worker = OutboxWorker::new(
        Arc::clone(state.services.store()),
        Arc::clone(state.services.clock()),
        Arc::new(delivery),
    )
    .with_waker(OutboxWaker::from_notify(Arc::clone(&state.outbox_wake)))
    .with_pass_hook(Arc::new(move |outcome: &PassOutcome| {
        metrics.outbox_delivered.inc_by(outcome.delivered);
        metrics.outbox_failed.inc_by(outcome.failed);
    }));
    Ok(tokio::spawn(worker.run(shutdown)))
}

/// Parses `TESSERA_MAIL_FROM` (`Name <addr>` or `addr`).
pub fn parse_mail_from(value: &str) -> Result<Mailbox, NotifyError> {
    value
        .parse()
        .map_err(|error: lettre::address::AddressError| NotifyError::MailFrom(error.to_string()))
}

/// `scheme://host:port` of a URL that may carry credentials, a token in its path or query:
/// the only form of a transport URL that may appear in `Debug` output or logs.
pub fn redact_url(url: &SecretString) -> String {
    use secrecy::ExposeSecret;
    match url::Url::parse(url.expose_secret()) {
        Ok(parsed) => {
            let host = parsed.host_str().unwrap_or("");
            let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
            let hidden = !parsed.username().is_empty()
                || parsed.password().is_some()
                || parsed.query().is_some()
                || parsed.fragment().is_some()
                || !parsed.path().trim_matches('/').is_empty();
            let marker = if hidden { "/[REDACTED]" } else { "" };
            format!("{}://{host}{port}{marker}", parsed.scheme())
        }
        Err(_) => "[REDACTED unparsable URL]".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_core::notification::Notification;
    use time::macros::datetime;

    fn secret(value: &str) -> SecretString {
        SecretString::from(value.to_owned())
    }

    #[tokio::test]
    async fn debug_hides_smtp_password_and_webhook_token() {
        let config = NotifyConfig {
            public_url: "https://id.example.com".into(),
            data_dir: "/var/lib/tessera".into(),
            smtp_url: Some(secret(
                "smtps://mailer:hunter2@smtp.example.com:465/ehlo?tls=x",
            )),
            mail_from: DEFAULT_MAIL_FROM.into(),
            sms_webhook_url: Some(secret(
                "https://sms.example.com/hook/s3cr3t-path?token=t0ken",
            )),
            sms_twilio: Some(TwilioSettings {
                account_sid: "AC123".into(),
                auth_token: secret("tw1l10-t0ken"),
                from: "+15005550006".into(),
                base_url: TWILIO_BASE_URL.into(),
            }),
        };
        let debug = format!("{config:?}");
        for secret in ["hunter2", "mailer", "t0ken", "s3cr3t-path", "ehlo"] {
            assert!(!debug.contains(secret), "{secret} leaked: {debug}");
        }
        assert!(
            debug.contains("smtps://smtp.example.com:465/[REDACTED]"),
            "{debug}"
        );
        assert!(
            debug.contains("https://sms.example.com/[REDACTED]"),
            "{debug}"
        );

        let delivery = Delivery::from_config(&config).unwrap();
        let debug = format!("{delivery:?} {}", delivery.describe());
        for secret in ["hunter2", "mailer", "t0ken", "s3cr3t-path"] {
            assert!(!debug.contains(secret), "{secret} leaked: {debug}");
        }
    }

    #[test]
    fn redaction_keeps_plain_urls_readable() {
        assert_eq!(
            redact_url(&secret("smtp://127.0.0.1:2525")),
            "smtp://127.0.0.1:2525"
        );
        assert_eq!(
            redact_url(&secret("not a url :pass@")),
            "[REDACTED unparsable URL]"
        );
    }

    #[tokio::test]
    async fn bad_settings_are_reported_without_the_url() {
        let mut config = NotifyConfig::dev("http://localhost:8080", "/tmp/x");
        config.mail_from = "not an address".into();
        assert!(matches!(
            Delivery::from_config(&config),
            Err(NotifyError::MailFrom(_))
        ));

        let mut config = NotifyConfig::dev("http://localhost:8080", "/tmp/x");
        config.smtp_url = Some(secret("ftp://user:hunter2@host"));
        let error = Delivery::from_config(&config).unwrap_err();
        assert!(matches!(error, NotifyError::SmtpUrl(_)));
        assert!(!error.to_string().contains("hunter2"), "{error}");

        let mut config = NotifyConfig::dev("http://localhost:8080", "/tmp/x");
        config.sms_webhook_url = Some(secret("file:///etc/passwd?token=abc"));
        let error = Delivery::from_config(&config).unwrap_err();
        assert!(matches!(error, NotifyError::SmsWebhookUrl(_)));
        assert!(!error.to_string().contains("abc"), "{error}");
    }

    #[test]
    fn emails_are_multipart_with_stable_message_id() {
        let delivery =
            Delivery::from_config(&NotifyConfig::dev("https://id.example.com", "/tmp/x")).unwrap();
        let message = OutboxMessage {
            id: 42,
            channel: Channel::Email,
            recipient: "ann@example.com".into(),
            notification: Notification::AccountCreated {
                email: "ann@example.com".into(),
            },
            created_at: datetime!(2026-01-02 03:04:05 UTC),
            attempts: 0,
        };
        let eml =
            String::from_utf8(delivery.build_email(&message).unwrap().message.formatted()).unwrap();
        assert!(
            eml.contains("From: Tessera <tessera@localhost>\r\n"),
            "{eml}"
        );
        assert!(eml.contains("To: ann@example.com\r\n"), "{eml}");
        assert!(eml.contains("Subject: Welcome to Tessera\r\n"), "{eml}");
        assert!(
            eml.contains("Date: Fri, 02 Jan 2026 03:04:05 +0000\r\n"),
            "{eml}"
        );
        assert!(
            eml.contains("Message-ID: <outbox-42.1767323045@id.example.com>\r\n"),
            "{eml}"
        );
        assert!(
            eml.contains("Content-Type: multipart/alternative;"),
            "{eml}"
        );
        let text_at = eml.find("Content-Type: text/plain").unwrap();
        let html_at = eml.find("Content-Type: text/html").unwrap();
        assert!(text_at < html_at);
    }

    #[test]
    fn a_malformed_recipient_fails_permanently() {
        let delivery =
            Delivery::from_config(&NotifyConfig::dev("https://id.example.com", "/tmp/x")).unwrap();
        let message = OutboxMessage {
            id: 1,
            channel: Channel::Email,
            recipient: "ann@example.com\r\nBcc: eve@example.com".into(),
            notification: Notification::AccountCreated {
                email: "ann@example.com".into(),
            },
            created_at: datetime!(2026-01-02 03:04:05 UTC),
            attempts: 0,
        };
        let error = delivery.build_email(&message).unwrap_err();
        assert!(error.is_permanent());
        assert!(!DeliveryError::Transport(TransportError("x".into())).is_permanent());
        assert!(!DeliveryError::Render(RenderError::Unsupported).is_permanent());
    }
}

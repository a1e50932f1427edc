//! Text messages through a Twilio-compatible REST API: `POST
//! {base_url}/2010-04-01/Accounts/{account_sid}/Messages.json` with HTTP Basic authentication
//! (account SID and auth token) and the form fields `To`, `From` and `Body`. Any 2xx answer
//! (Twilio answers 201) means accepted; anything else is a failure that the worker retries.
//! The base URL is configurable for compatible providers and for tests.
//!
//! Defends against leaking the auth token (kept in a `SecretString`, never in `Debug`, logs or
//! error texts) and against a redirect carrying a one-time code elsewhere (redirects are not
//! followed); a slow provider cannot hold the worker for long ([`TWILIO_TIMEOUT`]).

use super::sms::{http_client, request_error};
use super::{NotifyError, OutgoingSms, SmsTransport, TransportError};
use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use std::fmt;
use std::time::Duration;

/// The whole-request timeout of one API call.
pub const TWILIO_TIMEOUT: Duration = Duration::from_secs(10);

/// Twilio's API, the default base URL.
pub const TWILIO_BASE_URL: &str = "https://api.twilio.com";

/// The settings of a Twilio-compatible account.
#[derive(Clone)]
pub struct TwilioSettings {
    /// The account SID (`AC…`): the Basic-auth user and part of the path.
    pub account_sid: String,
    /// The auth token: the Basic-auth password.
    pub auth_token: SecretString,
    /// The sending number (E.164) or messaging-service SID.
    pub from: String,
    /// Where the API lives (without a trailing slash); [`TWILIO_BASE_URL`] by default.
    pub base_url: String,
}

impl fmt::Debug for TwilioSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioSettings")
            .field("account_sid", &self.account_sid)
            .field("from", &self.from)
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// Sends text messages through a Twilio-compatible API.
pub struct TwilioSms {
    client: reqwest::Client,
    settings: TwilioSettings,
    messages_url: String,
}

impl TwilioSms {
    /// A transport for this account. The SID must be letters and digits (it goes into the
    /// path), the base URL http or https with a host.
    pub fn new(settings: &TwilioSettings) -> Result<Self, NotifyError> {
        let bad = |why: &str| NotifyError::SmsTwilio(why.to_owned());
        if settings.account_sid.is_empty()
            || !settings
                .account_sid
                .chars()
                .all(|c| c.is_ascii_alphanumeric())
        {
            return Err(bad("the account SID must be letters and digits"));
        }
        if settings.auth_token.expose_secret().is_empty() {
            return Err(bad("the auth token is empty"));
        }
        if settings.from.trim().is_empty() {
            return Err(bad("the from-number is empty"));
        }
        let base = settings.base_url.trim_end_matches('/');
        let parsed = url::Url::parse(base).map_err(|_| bad("the base URL is not a URL"))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(bad("the base URL must be http:// or https:// with a host"));
        }
        let client = http_client(TWILIO_TIMEOUT)
            .map_err(|error| NotifyError::SmsTwilio(error.without_url().to_string()))?;
        Ok(Self {
            client,
            messages_url: format!(
                "{base}/2010-04-01/Accounts/{}/Messages.json",
                settings.account_sid
            ),
            settings: settings.clone(),
        })
    }
}

impl fmt::Debug for TwilioSms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioSms")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl SmsTransport for TwilioSms {
    async fn send_sms(&self, sms: &OutgoingSms) -> Result<(), TransportError> {
        let form = [
            ("To", sms.to.as_str()),
            ("From", self.settings.from.as_str()),
            ("Body", sms.body.as_str()),
        ];
        let response = self
            .client
            .post(&self.messages_url)
            .basic_auth(
                &self.settings.account_sid,
                Some(self.settings.auth_token.expose_secret()),
            )
            .form(&form)
            .send()
            .await
            .map_err(|error| TransportError(format!("Twilio: {}", request_error(error))))?;
        let status = response.status();
        if status.is_success() {
            tracing::info!(
                outbox_id = sms.outbox_id,
                status = status.as_u16(),
                "SMS accepted by Twilio"
            );
            return Ok(());
        }
        // Twilio explains refusals as {"code": 21211, "message": "..."}; keep the code only
        // (the message can quote the number).
        let code = response
            .json::<serde_json::Value>()
            .await
            .ok()
            .and_then(|body| body.get("code").and_then(serde_json::Value::as_i64));
        Err(TransportError(match code {
            Some(code) => format!("Twilio answered HTTP {} (error {code})", status.as_u16()),
            None => format!("Twilio answered HTTP {}", status.as_u16()),
        }))
    }

    fn describe(&self) -> String {
        format!(
            "Twilio-compatible API {} (account {})",
            self.settings.base_url, self.settings.account_sid
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> TwilioSettings {
        TwilioSettings {
            account_sid: "AC0123456789abcdef0123456789abcdef".into(),
            auth_token: SecretString::from("s3cr3t-token".to_owned()),
            from: "+15005550006".into(),
            base_url: TWILIO_BASE_URL.into(),
        }
    }

    #[test]
    fn settings_are_checked_and_the_token_never_shows() {
        let sms = TwilioSms::new(&settings()).unwrap();
        assert!(!format!("{sms:?} {}", sms.describe()).contains("s3cr3t"));
        let bad = |change: fn(&mut TwilioSettings)| {
            let mut s = settings();
            change(&mut s);
            TwilioSms::new(&s).unwrap_err().to_string()
        };
        assert!(bad(|s| s.account_sid = "AC/../x".into()).contains("SID"));
        assert!(bad(|s| s.auth_token = SecretString::from(String::new())).contains("token"));
        assert!(bad(|s| s.from = " ".into()).contains("from"));
        assert!(bad(|s| s.base_url = "ftp://x".into()).contains("base URL"));
    }
}

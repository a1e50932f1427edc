//! Notifications and the transactional outbox.
//!
//! A use case that must tell the user something writes an outbox row in the same transaction as
//! the change; a background worker renders and delivers it, retrying with backoff. A crash
//! between commit and delivery loses nothing.

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

/// How long the worker keeps retrying before it marks a message failed.
pub const OUTBOX_GIVE_UP_AFTER: Duration = Duration::days(1);
/// How long a claimed message is reserved for one worker before another may retry it.
pub const OUTBOX_LEASE: Duration = Duration::minutes(2);

/// The channel a message goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// Email, through SMTP or the dev outbox.
    Email,
    /// A text message, through the SMS webhook or the dev outbox.
    Sms,
}

impl Channel {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
        }
    }

    /// Parses the stored name.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "email" => Some(Channel::Email),
            "sms" => Some(Channel::Sms),
            _ => None,
        }
    }
}

/// What to tell the user. Never carries a secret other than a one-time code meant for them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Notification {
    /// Welcome after sign-up. It carries nothing the person signing up typed except the
    /// address it goes to, so it cannot relay a chosen text to someone else's inbox.
    AccountCreated {
        /// The new account's email address.
        email: String,
    },
    /// The password was changed.
    PasswordChanged {
        /// The name to greet.
        display_name: String,
        /// When (RFC 3339).
        at: String,
        /// From which address.
        ip: Option<String>,
        /// How many other sessions were signed out.
        sessions_revoked: u64,
    },
    /// An authenticator app was added or replaced, or MFA was turned on.
    FactorChanged {
        /// The name to greet.
        display_name: String,
        /// What happened.
        change: FactorChange,
        /// The factor's label.
        label: String,
        /// When (RFC 3339).
        at: String,
        /// From which address.
        ip: Option<String>,
        /// How many other sessions were signed out.
        sessions_revoked: u64,
        /// The factor's kind (`totp`, `sms`, `email`); absent in messages written before
        /// SMS and email factors, which were all authenticator apps.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kind: Option<String>,
    },
    /// MFA was turned off: every factor and backup code is gone.
    MfaDisabled {
        /// The name to greet.
        display_name: String,
        /// When (RFC 3339).
        at: String,
        /// From which address (none when an operator did it).
        ip: Option<String>,
        /// Whether an operator did it from the command line.
        by_operator: bool,
    },
    /// A new set of backup codes replaced the old one.
    BackupCodesRegenerated {
        /// The name to greet.
        display_name: String,
        /// When (RFC 3339).
        at: String,
        /// From which address.
        ip: Option<String>,
    },
    /// A backup code was used to sign in.
    BackupCodeUsed {
        /// The name to greet.
        display_name: String,
        /// When (RFC 3339).
        at: String,
        /// From which address.
        ip: Option<String>,
        /// Codes left.
        remaining: u32,
    },
    /// Someone passed the password step but not the second step.
    UnfinishedSignin {
        /// The name to greet.
        display_name: String,
        /// When the password was accepted (RFC 3339).
        at: String,
        /// From which address.
        ip: Option<String>,
        /// With which browser or client.
        user_agent: Option<String>,
    },
    /// A one-time code for an SMS or email factor. The code travels sealed
    /// ([`crate::otc::seal_for_outbox`]): the outbox row never holds it in clear, and only
    /// the delivery worker, which has the key ring, opens it to write the message.
    /// A link to reset the user's MFA, asked for by an organization's admin or an operator.
    /// The link's token travels sealed (see [`crate::otc::seal_secret_for_outbox`]).
    MfaResetLink {
        /// The name to greet.
        display_name: String,
        /// Who asked: the organization's name, or `None` for the server's operator.
        org_name: Option<String>,
        /// The sealed token of `/mfa-reset/{token}`, base64.
        sealed_token: String,
        /// When the link stops working (RFC 3339).
        expires_at: String,
    },
    /// An MFA reset was completed (to the user, and to the admin who asked for it).
    MfaResetCompleted {
        /// The name to greet.
        display_name: String,
        /// For the admin's copy: whose reset it was.
        member_email: Option<String>,
        /// When (RFC 3339).
        at: String,
        /// From which address.
        ip: Option<String>,
    },
    OneTimeCode {
        /// What the code is for: `enrollment`, `signin` or `reauth`.
        purpose: String,
        /// The sealed code, base64 (standard, padded).
        sealed_code: String,
    },
}

/// What happened to a factor, for [`Notification::FactorChanged`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FactorChange {
    /// The first factor: MFA is now on.
    MfaEnabled,
    /// Another factor was added.
    Added,
    /// A factor replaced an older one (a new device).
    Replaced,
    /// A factor was removed (others remain).
    Removed,
}

/// A message to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOutboxMessage {
    /// The channel.
    pub channel: Channel,
    /// An email address or an E.164 phone number.
    pub recipient: String,
    /// What to say.
    pub notification: Notification,
    /// When it was written.
    pub created_at: OffsetDateTime,
}

/// A message the worker has claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    /// Its id.
    pub id: i64,
    /// The channel.
    pub channel: Channel,
    /// Where it goes.
    pub recipient: String,
    /// What to say.
    pub notification: Notification,
    /// When it was written.
    pub created_at: OffsetDateTime,
    /// Delivery attempts before this one.
    pub attempts: u32,
}

/// When to retry after `attempts` failed tries: 30 s doubling to at most an hour.
pub fn retry_delay(attempts: u32) -> Duration {
    let seconds = 30i64.saturating_mul(1i64 << attempts.min(7));
    Duration::seconds(seconds.min(3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_an_hour() {
        assert_eq!(retry_delay(0), Duration::seconds(30));
        assert_eq!(retry_delay(1), Duration::seconds(60));
        assert_eq!(retry_delay(6), Duration::seconds(1920));
        assert_eq!(retry_delay(7), Duration::seconds(3600));
        assert_eq!(retry_delay(40), Duration::seconds(3600));
    }

    #[test]
    fn notifications_round_trip_as_json() {
        let n = Notification::PasswordChanged {
            display_name: "Ann".into(),
            at: "2026-01-01T00:00:00Z".into(),
            ip: Some("127.0.0.1".into()),
            sessions_revoked: 2,
        };
        let json = serde_json::to_string(&n).unwrap();
        assert!(json.contains("\"type\":\"password_changed\""));
        assert_eq!(serde_json::from_str::<Notification>(&json).unwrap(), n);
    }
}

//! Server-side sessions.
//!
//! Threats: token theft from the database (only SHA-256 hashes are stored), session fixation (a
//! new token at every authentication step), forgotten sessions (absolute lifetime and idle
//! timeout), and stale privileges (the re-auth window is a timestamp on the session, checked at
//! use).

use crate::crypto::TokenHash;
use crate::ids::{SessionId, UserId};
use time::{Duration, OffsetDateTime};

/// Default absolute lifetime of a session.
pub const DEFAULT_SESSION_LIFETIME: Duration = Duration::hours(12);
/// Default idle timeout of a session.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::minutes(30);
/// How long a password re-entry keeps sensitive actions open.
pub const REAUTH_WINDOW: Duration = Duration::minutes(10);
/// `last_seen_at` is written at most this often per session.
pub const LAST_SEEN_RESOLUTION: Duration = Duration::minutes(1);

/// What a session may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Every authentication step is done.
    Full,
    /// Policy requires MFA and the user must enroll before anything else.
    EnrollmentOnly,
}

impl SessionState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Full => "full",
            SessionState::EnrollmentOnly => "enrollment_only",
        }
    }

    /// Parses the stored name; unknown values are treated as the most restricted state.
    pub fn parse(value: &str) -> Self {
        match value {
            "full" => SessionState::Full,
            _ => SessionState::EnrollmentOnly,
        }
    }
}

/// Lifetimes that apply to every session of the instance.
#[derive(Debug, Clone, Copy)]
pub struct SessionPolicy {
    /// Absolute lifetime from creation.
    pub lifetime: Duration,
    /// A session unused for this long ends.
    pub idle_timeout: Duration,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self {
            lifetime: DEFAULT_SESSION_LIFETIME,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// A session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Its public id (listed in Settings, used to revoke it).
    pub id: SessionId,
    /// Whose it is.
    pub user_id: UserId,
    /// SHA-256 of the bearer token.
    pub token_hash: TokenHash,
    /// What it may do.
    pub state: SessionState,
    /// RFC 8176 authentication method references, e.g. `["pwd"]`.
    pub amr: Vec<String>,
    /// When it was created.
    pub created_at: OffsetDateTime,
    /// When it was last used (to within [`LAST_SEEN_RESOLUTION`]).
    pub last_seen_at: OffsetDateTime,
    /// Its absolute end.
    pub expires_at: OffsetDateTime,
    /// Until when sensitive actions are open, after a password entry.
    pub reauth_until: Option<OffsetDateTime>,
    /// The client address it was created from.
    pub ip: Option<String>,
    /// The user agent it was created from.
    pub user_agent: Option<String>,
    /// The exact second factor it was created with, if any.
    pub mfa_method: Option<crate::factor::MfaMethod>,
}

impl Session {
    /// Whether the session is still valid at `now` under `policy`.
    pub fn is_live(&self, now: OffsetDateTime, policy: &SessionPolicy) -> bool {
        now < self.expires_at && now < self.last_seen_at + policy.idle_timeout
    }

    /// When the session ends if it stays unused from now on.
    pub fn effective_expiry(&self, policy: &SessionPolicy) -> OffsetDateTime {
        self.expires_at.min(self.last_seen_at + policy.idle_timeout)
    }

    /// Whether the re-auth window is open at `now`.
    pub fn reauth_open(&self, now: OffsetDateTime) -> bool {
        self.reauth_until.is_some_and(|until| now < until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Token;
    use time::macros::datetime;

    fn session(created: OffsetDateTime) -> Session {
        Session {
            id: SessionId::new(),
            user_id: UserId::new(),
            token_hash: Token::from_client("t").hash(),
            state: SessionState::Full,
            amr: vec!["pwd".into()],
            created_at: created,
            last_seen_at: created,
            expires_at: created + DEFAULT_SESSION_LIFETIME,
            reauth_until: Some(created + REAUTH_WINDOW),
            ip: None,
            user_agent: None,
            mfa_method: None,
        }
    }

    #[test]
    fn idle_timeout_and_absolute_lifetime() {
        let policy = SessionPolicy::default();
        let t0 = datetime!(2026-01-01 08:00 UTC);
        let mut s = session(t0);
        assert!(s.is_live(t0 + Duration::minutes(29), &policy));
        assert!(!s.is_live(t0 + Duration::minutes(30), &policy));
        s.last_seen_at = t0 + Duration::hours(11) + Duration::minutes(50);
        assert!(s.is_live(t0 + Duration::hours(11) + Duration::minutes(59), &policy));
        assert!(!s.is_live(t0 + Duration::hours(12), &policy));
    }

    #[test]
    fn reauth_window_closes_after_ten_minutes() {
        let t0 = datetime!(2026-01-01 08:00 UTC);
        let s = session(t0);
        assert!(s.reauth_open(t0 + Duration::minutes(9)));
        assert!(!s.reauth_open(t0 + Duration::minutes(10)));
    }
}

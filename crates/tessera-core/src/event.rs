//! The security activity log: append-only, written in the same transaction as the change it
//! records.

use crate::ids::UserId;
use serde_json::Value;
use time::OffsetDateTime;

/// Kinds of security events (the API's `kind` strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventKind {
    /// An account was created.
    AccountCreated,
    /// A sign-in completed.
    SigninSucceeded,
    /// A sign-in was refused (wrong password, locked).
    SigninFailed,
    /// The session was ended by its owner.
    Signout,
    /// Another session was revoked.
    SessionRevoked,
    /// The password was re-entered to open the re-auth window.
    Reauth,
    /// The password changed.
    PasswordChanged,
}

impl EventKind {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::AccountCreated => "account_created",
            EventKind::SigninSucceeded => "signin_succeeded",
            EventKind::SigninFailed => "signin_failed",
            EventKind::Signout => "signout",
            EventKind::SessionRevoked => "session_revoked",
            EventKind::Reauth => "reauth",
            EventKind::PasswordChanged => "password_changed",
        }
    }
}

/// Where a request came from, recorded with events and sessions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    /// The client address (the peer, or the first untrusted hop behind trusted proxies).
    pub ip: Option<String>,
    /// The `User-Agent` header, truncated.
    pub user_agent: Option<String>,
}

/// The longest user agent kept, in characters.
pub const MAX_USER_AGENT_CHARS: usize = 512;

impl ClientInfo {
    /// Builds client info, truncating an overlong user agent.
    pub fn new(ip: Option<String>, user_agent: Option<&str>) -> Self {
        Self {
            ip,
            user_agent: user_agent.map(|ua| ua.chars().take(MAX_USER_AGENT_CHARS).collect()),
        }
    }
}

/// An event to append.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Whose activity it is.
    pub user_id: UserId,
    /// What happened.
    pub kind: EventKind,
    /// When.
    pub at: OffsetDateTime,
    /// From where.
    pub client: ClientInfo,
    /// Who did it, when not the user (an admin).
    pub actor_id: Option<UserId>,
    /// Details (never secrets).
    pub details: Value,
}

/// A stored event.
#[derive(Debug, Clone, PartialEq)]
pub struct SecurityEvent {
    /// Its id; ids grow with time, so they page.
    pub id: i64,
    /// Whose activity it is.
    pub user_id: UserId,
    /// The stable kind name.
    pub kind: String,
    /// When.
    pub at: OffsetDateTime,
    /// The client address.
    pub ip: Option<String>,
    /// The user agent.
    pub user_agent: Option<String>,
    /// Who did it, when not the user.
    pub actor_id: Option<UserId>,
    /// Details.
    pub details: Value,
}

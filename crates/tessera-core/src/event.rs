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
    /// The password was right and a second factor is owed.
    SigninMfaPending,
    /// The first factor was added: MFA is on.
    MfaEnabled,
    /// Every factor and backup code was removed.
    MfaDisabled,
    /// A factor was added.
    FactorAdded,
    /// A factor was removed.
    FactorRemoved,
    /// A factor was replaced by a new one (reset to a new device).
    FactorReplaced,
    /// A factor was renamed or made the preferred one.
    FactorUpdated,
    /// A one-time code was sent by SMS or email.
    CodeSent,
    /// A new set of backup codes replaced every earlier one.
    BackupCodesGenerated,
    /// A backup code passed a second step.
    BackupCodeUsed,
    /// The user chose to have no backup codes ("Skip for now").
    BackupCodesRemoved,
    /// A wrong second-factor code.
    SecondFactorFailed,
    /// Too many wrong second-factor codes locked the second step.
    SecondFactorLocked,
    /// An operator reset the account's MFA.
    MfaResetCompleted,
    /// An MFA reset link was sent.
    MfaResetRequested,
    /// An organization's MFA policy changed.
    OrgPolicyChanged,
    /// The user was added to an organization (or created it).
    MemberAdded,
    /// The user was removed from an organization (or left it).
    MemberRemoved,
    /// The user's role in an organization changed.
    MemberRoleChanged,
    /// The user was told of a sign-in that passed the password but not the second step.
    UnfinishedSigninReported,
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
            EventKind::SigninMfaPending => "signin_mfa_pending",
            EventKind::MfaEnabled => "mfa_enabled",
            EventKind::MfaDisabled => "mfa_disabled",
            EventKind::FactorAdded => "factor_added",
            EventKind::FactorRemoved => "factor_removed",
            EventKind::FactorReplaced => "factor_replaced",
            EventKind::FactorUpdated => "factor_updated",
            EventKind::CodeSent => "code_sent",
            EventKind::BackupCodesGenerated => "backup_codes_generated",
            EventKind::BackupCodeUsed => "backup_code_used",
            EventKind::BackupCodesRemoved => "backup_codes_removed",
            EventKind::SecondFactorFailed => "second_factor_failed",
            EventKind::SecondFactorLocked => "second_factor_locked",
            EventKind::MfaResetCompleted => "mfa_reset_completed",
            EventKind::MfaResetRequested => "mfa_reset_requested",
            EventKind::OrgPolicyChanged => "org_policy_changed",
            EventKind::MemberAdded => "member_added",
            EventKind::MemberRemoved => "member_removed",
            EventKind::MemberRoleChanged => "member_role_changed",
            EventKind::UnfinishedSigninReported => "signin_unfinished_reported",
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

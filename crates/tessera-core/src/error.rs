//! The one domain error type. Each variant has a stable `code()` that the API puts in its error
//! envelope; denials carry fixed messages, and the detail goes to the audit log, not the client.

use thiserror::Error;

/// Everything a Tessera use case can refuse or fail with.
#[derive(Debug, Error)]
pub enum Error {
    /// The request is malformed or a value is out of range; the message says which.
    #[error("{0}")]
    InvalidRequest(String),
    /// The password policy rejected a new password; the message says why.
    #[error("{0}")]
    WeakPassword(String),
    /// No valid session.
    #[error("authentication required")]
    Unauthenticated,
    /// Wrong email or password (the same for unknown emails).
    #[error("the email or password is incorrect")]
    InvalidCredentials,
    /// Wrong, expired, used or unknown code, challenge or enrollment.
    #[error("the code is invalid or has expired")]
    InvalidCode,
    /// The session has passed the password only.
    #[error("a second factor is required")]
    MfaRequired,
    /// Policy requires MFA and the user must enroll first.
    #[error("multi-factor authentication must be set up first")]
    MfaEnrollmentRequired,
    /// The action needs a password re-entry in the last 10 minutes.
    #[error("confirm your password to continue")]
    ReauthRequired,
    /// Authenticated but not allowed.
    #[error("you are not allowed to do this")]
    Forbidden,
    /// Organization or instance policy forbids this change.
    #[error("{0}")]
    PolicyForbids(String),
    /// Backup-code regeneration is blocked after a backup-code sign-in.
    #[error("sign in with a current factor before generating new backup codes")]
    BackupCodesLocked,
    /// Self-service sign-up is off.
    #[error("sign-up is disabled on this server")]
    SignupDisabled,
    /// No such resource visible to the caller.
    #[error("not found")]
    NotFound,
    /// Not found, with a message that says what is missing and what to do (for lookups the
    /// caller may make, such as an email address to add to an organization).
    #[error("{0}")]
    NoSuch(String),
    /// The change conflicts with existing data.
    #[error("{0}")]
    Conflict(String),
    /// Too many attempts; try again after `retry_after_secs`.
    #[error("too many attempts; try again later")]
    RateLimited {
        /// Seconds until the next attempt may succeed (at least 1).
        retry_after_secs: u64,
    },
    /// A dependency (the database) is unreachable: fail closed.
    #[error("the service is temporarily unavailable")]
    Unavailable(String),
    /// A bug or an unexpected failure; the detail is logged, never sent.
    #[error("internal error")]
    Internal(String),
}

impl Error {
    /// The stable snake_case code of the API error envelope.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidRequest(_) => "invalid_request",
            Error::WeakPassword(_) => "weak_password",
            Error::Unauthenticated => "unauthenticated",
            Error::InvalidCredentials => "invalid_credentials",
            Error::InvalidCode => "invalid_code",
            Error::MfaRequired => "mfa_required",
            Error::MfaEnrollmentRequired => "mfa_enrollment_required",
            Error::ReauthRequired => "reauth_required",
            Error::Forbidden => "forbidden",
            Error::PolicyForbids(_) => "policy_forbids",
            Error::BackupCodesLocked => "backup_codes_locked",
            Error::SignupDisabled => "signup_disabled",
            Error::NotFound | Error::NoSuch(_) => "not_found",
            Error::Conflict(_) => "conflict",
            Error::RateLimited { .. } => "rate_limited",
            Error::Unavailable(_) => "unavailable",
            Error::Internal(_) => "internal",
        }
    }

    /// Shorthand for [`Error::InvalidRequest`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidRequest(message.into())
    }
}

/// The result type of the domain.
pub type Result<T, E = Error> = std::result::Result<T, E>;

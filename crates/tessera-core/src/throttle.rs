//! Per-account throttling of password guesses.
//!
//! Threat: online guessing against one account from many addresses (which per-address limits do
//! not stop). After [`PASSWORD_FAILURES_BEFORE_LOCK`] wrong passwords in a row the account's
//! sign-in is locked; each further wrong password after a lock doubles the lock, up to
//! [`MAX_PASSWORD_LOCK`]. A correct password once the lock has ended resets the count. The
//! counters live in the store so they hold across instances.
//!
//! Parallel guesses: an attempt is reserved (counted) atomically *before* the password is
//! hashed, and the attempt that reaches the limit sets the lock at once, so concurrent guesses
//! cannot exceed the limit while earlier ones are still being hashed.

use crate::crypto::Pepper;
use time::{Duration, OffsetDateTime};

/// Whose password attempts are counted: a keyed hash of the normalized email, so an unknown
/// email is counted and locked exactly like an account (no enumeration by 429s or timing), and
/// the store never holds the address in this table.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ThrottleKey(pub [u8; 32]);

impl ThrottleKey {
    /// The key of a normalized (lower-case) email.
    pub fn for_email(pepper: &Pepper, email_normalized: &str) -> Self {
        Self(pepper.keyed_hash("password-throttle", email_normalized.as_bytes()))
    }
}

impl std::fmt::Debug for ThrottleKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ThrottleKey(..)")
    }
}

/// Wrong passwords in a row before the first lock.
pub const PASSWORD_FAILURES_BEFORE_LOCK: u32 = 10;
/// The first lock.
pub const FIRST_PASSWORD_LOCK: Duration = Duration::seconds(30);
/// The longest lock.
pub const MAX_PASSWORD_LOCK: Duration = Duration::minutes(15);

/// Wrong second-factor codes in a row (on any endpoint that checks one) before the account's
/// second step locks.
pub const MAX_FAILED_SECOND_FACTOR_ATTEMPTS: u32 = 5;
/// How long the second step stays locked.
pub const SECOND_FACTOR_LOCK: Duration = Duration::minutes(5);

/// The stored state of an account's second-factor throttle: the same shape as the password
/// throttle, keyed by account (the password was already right).
pub type SecondFactorThrottle = PasswordThrottle;

/// The stored state of an account's password throttle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PasswordThrottle {
    /// Wrong passwords in a row.
    pub failures: u32,
    /// Sign-in is refused until then.
    pub locked_until: Option<OffsetDateTime>,
}

impl PasswordThrottle {
    /// Seconds until sign-in may be tried again, if locked at `now`.
    pub fn retry_after(&self, now: OffsetDateTime) -> Option<u64> {
        let until = self.locked_until?;
        if now >= until {
            return None;
        }
        let seconds = (until - now).whole_seconds().max(1);
        Some(u64::try_from(seconds).unwrap_or(1))
    }
}

/// The lock that follows the `failures`-th wrong password in a row, if any.
pub fn lock_after(failures: u32) -> Option<Duration> {
    if failures < PASSWORD_FAILURES_BEFORE_LOCK {
        return None;
    }
    let doublings = (failures - PASSWORD_FAILURES_BEFORE_LOCK).min(16);
    let seconds = FIRST_PASSWORD_LOCK
        .whole_seconds()
        .saturating_mul(1i64 << doublings);
    Some(Duration::seconds(seconds).min(MAX_PASSWORD_LOCK))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn locks_start_at_the_tenth_failure_and_back_off_to_fifteen_minutes() {
        assert_eq!(lock_after(9), None);
        assert_eq!(lock_after(10), Some(Duration::seconds(30)));
        assert_eq!(lock_after(11), Some(Duration::seconds(60)));
        assert_eq!(lock_after(14), Some(Duration::seconds(480)));
        assert_eq!(lock_after(15), Some(Duration::minutes(15)));
        assert_eq!(lock_after(1000), Some(Duration::minutes(15)));
    }

    #[test]
    fn retry_after_counts_down() {
        let now = datetime!(2026-01-01 00:00 UTC);
        let t = PasswordThrottle {
            failures: 10,
            locked_until: Some(now + Duration::seconds(30)),
        };
        assert_eq!(t.retry_after(now), Some(30));
        assert_eq!(t.retry_after(now + Duration::seconds(29)), Some(1));
        assert_eq!(t.retry_after(now + Duration::seconds(30)), None);
    }
}

//! TOTP, the time-based one-time password of RFC 6238.
//!
//! Threats: a phished or shoulder-surfed code must stop working soon, and a guesser must not
//! learn from timing how close a guess was. Codes are valid only within [`TOTP_WINDOW_STEPS`]
//! steps of now (RFC 6238 §5.2 allows one step of network delay), and [`verify_totp`] compares
//! in constant time against every step of the window with no early exit. Preventing the replay
//! of a code inside its window is the caller's job: store the returned step and refuse steps at
//! or below it (RFC 6238 §5.2).

use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

use crate::{Algorithm, OtpCode, OtpError, hotp};

/// How many steps before and after the current one [`verify_totp`] accepts.
pub const TOTP_WINDOW_STEPS: u64 = 1;

/// The parameters of a TOTP factor, as carried in an `otpauth://` URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TotpParams {
    /// The HMAC hash function.
    pub algorithm: Algorithm,
    /// Digits per code, 6..=8.
    pub digits: u32,
    /// Length of a time step in seconds, 1..=3600.
    pub period: u64,
}

impl TotpParams {
    /// What every authenticator app supports: SHA1, 6 digits, 30 seconds.
    pub const STANDARD: TotpParams = TotpParams {
        algorithm: Algorithm::Sha1,
        digits: 6,
        period: 30,
    };

    /// Fewest digits accepted (RFC 4226 §5.3 requires at least six).
    pub const MIN_DIGITS: u32 = 6;
    /// Most digits accepted.
    pub const MAX_DIGITS: u32 = 8;
    /// Longest accepted period, in seconds.
    pub const MAX_PERIOD_SECONDS: u64 = 3600;

    /// Checks `digits` (6..=8) and `period` (1..=3600 seconds).
    pub fn new(algorithm: Algorithm, digits: u32, period: u64) -> Result<Self, OtpError> {
        if !(Self::MIN_DIGITS..=Self::MAX_DIGITS).contains(&digits) {
            return Err(OtpError::Digits);
        }
        if !(1..=Self::MAX_PERIOD_SECONDS).contains(&period) {
            return Err(OtpError::Period);
        }
        Ok(Self {
            algorithm,
            digits,
            period,
        })
    }
}

impl Default for TotpParams {
    fn default() -> Self {
        Self::STANDARD
    }
}

/// The RFC 6238 time step `floor(unix_seconds / period)` with T0 = 0; `None` for times before
/// the epoch and for a zero period.
pub fn time_step(unix_seconds: i64, period: u64) -> Option<u64> {
    let seconds = u64::try_from(unix_seconds).ok()?;
    seconds.checked_div(period)
}

/// The code of the step containing `unix_seconds`; `None` where [`time_step`] is.
pub fn totp_at(secret: &[u8], unix_seconds: i64, params: TotpParams) -> Option<String> {
    let step = time_step(unix_seconds, params.period)?;
    Some(hotp(secret, step, params.algorithm, params.digits))
}

/// Checks `code` against steps T−1, T and T+1, where T = [`time_step`] of `unix_seconds`, and
/// returns the step it matched (the largest, should several match).
///
/// At T = 0 only steps 0 and 1 are tried: the window never underflows. Every candidate is
/// computed and compared in constant time, with no early exit. `None` if no step matches, if
/// the code does not have `params.digits` digits, or if the time is before the epoch.
pub fn verify_totp(
    secret: &[u8],
    code: &OtpCode,
    unix_seconds: i64,
    params: TotpParams,
) -> Option<u64> {
    let now = time_step(unix_seconds, params.period)?;
    let first = now.saturating_sub(TOTP_WINDOW_STEPS);
    let last = now.saturating_add(TOTP_WINDOW_STEPS);
    let typed = code.as_str().as_bytes();
    let mut found = Choice::from(0);
    let mut matched = 0u64;
    for step in first..=last {
        let expected = hotp(secret, step, params.algorithm, params.digits);
        // `ct_eq` on slices of different lengths is false, so a code with the wrong number of
        // digits never matches.
        let equal = expected.as_bytes().ct_eq(typed);
        matched.conditional_assign(&step, equal);
        found |= equal;
    }
    bool::from(found).then_some(matched)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode_secret;

    const SHA1_SEED: &[u8] = b"12345678901234567890";

    fn code(text: &str) -> OtpCode {
        OtpCode::parse(text, text.len() as u32).unwrap()
    }

    #[test]
    fn rfc6238_appendix_b_vectors() {
        let mut rows = 0;
        for line in crate::testdata!("rfc6238-totp.tsv").lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let columns: Vec<&str> = line.split('\t').collect();
            let [time, counter_hex, algorithm, seed, totp8, totp6] = columns[..] else {
                panic!("malformed row {line:?}");
            };
            let time: i64 = time.parse().unwrap();
            let algorithm = Algorithm::parse(algorithm).unwrap();
            let seed = decode_secret(seed).unwrap();
            let counter = u64::from_str_radix(counter_hex, 16).unwrap();
            assert_eq!(time_step(time, 30), Some(counter), "t={time}");
            for expected in [totp8, totp6] {
                let digits = expected.len() as u32;
                let params = TotpParams::new(algorithm, digits, 30).unwrap();
                assert_eq!(
                    totp_at(&seed, time, params).as_deref(),
                    Some(expected),
                    "t={time} {algorithm} {digits} digits"
                );
                assert_eq!(
                    verify_totp(&seed, &code(expected), time, params),
                    Some(counter)
                );
            }
            rows += 1;
        }
        assert_eq!(rows, 18);
    }

    #[test]
    fn seed_length_trap_20_byte_seed_for_sha256_is_wrong() {
        let params = TotpParams::new(Algorithm::Sha256, 8, 30).unwrap();
        assert_eq!(totp_at(SHA1_SEED, 59, params).as_deref(), Some("32247374"));
        let params = TotpParams::new(Algorithm::Sha512, 8, 30).unwrap();
        assert_eq!(totp_at(SHA1_SEED, 59, params).as_deref(), Some("69342147"));
    }

    #[test]
    fn leading_zeros_are_kept() {
        assert_eq!(
            totp_at(SHA1_SEED, 1_234_567_890, TotpParams::STANDARD).as_deref(),
            Some("005924")
        );
    }

    #[test]
    fn window_accepts_one_step_either_side_only() {
        let params = TotpParams::STANDARD;
        let now = 1_111_111_111;
        let t = time_step(now, params.period).unwrap();
        let at_step = |step: u64| code(&hotp(SHA1_SEED, step, params.algorithm, params.digits));
        assert_eq!(verify_totp(SHA1_SEED, &at_step(t - 2), now, params), None);
        assert_eq!(
            verify_totp(SHA1_SEED, &at_step(t - 1), now, params),
            Some(t - 1)
        );
        assert_eq!(verify_totp(SHA1_SEED, &at_step(t), now, params), Some(t));
        assert_eq!(
            verify_totp(SHA1_SEED, &at_step(t + 1), now, params),
            Some(t + 1)
        );
        assert_eq!(verify_totp(SHA1_SEED, &at_step(t + 2), now, params), None);
    }

    #[test]
    fn window_at_the_epoch_does_not_underflow() {
        let params = TotpParams::STANDARD;
        let at_step = |step: u64| code(&hotp(SHA1_SEED, step, params.algorithm, params.digits));
        for now in 0..30 {
            assert_eq!(verify_totp(SHA1_SEED, &at_step(0), now, params), Some(0));
            assert_eq!(verify_totp(SHA1_SEED, &at_step(1), now, params), Some(1));
            assert_eq!(verify_totp(SHA1_SEED, &at_step(2), now, params), None);
            // "Step −1" wraps to u64::MAX if computed carelessly.
            assert_eq!(
                verify_totp(SHA1_SEED, &at_step(u64::MAX), now, params),
                None
            );
        }
    }

    #[test]
    fn largest_matching_step_wins() {
        // With one digit (bypassing `new`) collisions are common: find a seed whose steps T−1
        // and T+1 share a code, then check the later step is reported.
        let params = TotpParams {
            digits: 1,
            ..TotpParams::STANDARD
        };
        let now = 3000;
        let t = time_step(now, params.period).unwrap();
        let found = (0u32..1_000).find_map(|i| {
            let seed = i.to_be_bytes();
            let before = hotp(&seed, t - 1, params.algorithm, params.digits);
            let after = hotp(&seed, t + 1, params.algorithm, params.digits);
            (before == after).then_some((seed, after))
        });
        let (seed, shared) = found.unwrap();
        assert_eq!(verify_totp(&seed, &code(&shared), now, params), Some(t + 1));
    }

    #[test]
    fn wrong_number_of_digits_never_matches() {
        let params = TotpParams::new(Algorithm::Sha1, 8, 30).unwrap();
        // "287082" is the 6-digit code at t=59; the 8-digit factor expects "94287082".
        assert_eq!(verify_totp(SHA1_SEED, &code("287082"), 59, params), None);
        assert_eq!(
            verify_totp(SHA1_SEED, &code("94287082"), 59, params),
            Some(1)
        );
    }

    #[test]
    fn times_before_the_epoch_and_extremes() {
        assert_eq!(time_step(-1, 30), None);
        assert_eq!(time_step(i64::MIN, 30), None);
        assert_eq!(time_step(29, 30), Some(0));
        assert_eq!(time_step(30, 30), Some(1));
        assert_eq!(time_step(10, 0), None);
        assert_eq!(time_step(i64::MAX, 1), Some(i64::MAX as u64));
        assert_eq!(totp_at(SHA1_SEED, -30, TotpParams::STANDARD), None);
        assert_eq!(
            verify_totp(SHA1_SEED, &code("123456"), -1, TotpParams::STANDARD),
            None
        );
        let params = TotpParams::new(Algorithm::Sha1, 6, 1).unwrap();
        let _ = verify_totp(SHA1_SEED, &code("123456"), i64::MAX, params);
    }

    #[test]
    fn params_are_validated() {
        assert_eq!(
            TotpParams::new(Algorithm::Sha1, 6, 30),
            Ok(TotpParams::STANDARD)
        );
        assert!(TotpParams::new(Algorithm::Sha512, 7, 1).is_ok());
        assert!(TotpParams::new(Algorithm::Sha256, 8, 3600).is_ok());
        assert_eq!(
            TotpParams::new(Algorithm::Sha1, 5, 30),
            Err(OtpError::Digits)
        );
        assert_eq!(
            TotpParams::new(Algorithm::Sha1, 9, 30),
            Err(OtpError::Digits)
        );
        assert_eq!(
            TotpParams::new(Algorithm::Sha1, 6, 0),
            Err(OtpError::Period)
        );
        assert_eq!(
            TotpParams::new(Algorithm::Sha1, 6, 3601),
            Err(OtpError::Period)
        );
    }
}

//! One-time codes sent by SMS or email: [`OneTimeCode`], [`IssuedCode`] and the send limits.
//!
//! The rules, all pure (the store keeps the state, the clock is injected):
//! - a code is 6 digits drawn uniformly from a CSPRNG (rejection sampling: no modulo bias);
//! - it is stored only as a keyed hash that binds it to the user, the factor or enrollment it
//!   was sent for and its [`CodePurpose`], so a code sent for one purpose, factor or user never
//!   matches another;
//! - it is valid for [`CODE_TTL`], once; [`MAX_CODE_TRIES`] wrong tries void it; sending a new
//!   code for the same target and purpose voids the earlier one (the store replaces it);
//! - sending is limited per factor ([`RESEND_INTERVAL`]), per account ([`MAX_SENDS_PER_HOUR`])
//!   and per destination ([`MAX_SENDS_PER_DESTINATION_PER_DAY`]) against SMS pumping and mail
//!   bombing; [`SendCounts::check`] says when the next send is allowed.
//!
//! Threats: guessing (10⁶ codes, 3 tries per code, and every wrong try also counts toward the
//! account's second-factor lock), replay (single use), a code leaking from one context into
//! another (purpose binding), and the database leaking codes (keyed hashes only).

use crate::crypto::{KeyRing, Pepper, constant_time_eq, random_bytes};
use crate::{Error, Result};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use std::fmt;
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

/// Digits in a code.
pub const CODE_DIGITS: usize = 6;
/// How long a code is valid.
pub const CODE_TTL: Duration = Duration::minutes(10);
/// Wrong tries that void a code.
pub const MAX_CODE_TRIES: u32 = 3;
/// The shortest time between two codes sent to one factor (or enrollment).
pub const RESEND_INTERVAL: Duration = Duration::seconds(30);
/// Codes one account may be sent in an hour.
pub const MAX_SENDS_PER_HOUR: u32 = 10;
/// Codes one phone number or address may be sent in a day, whoever asks.
pub const MAX_SENDS_PER_DESTINATION_PER_DAY: u32 = 20;

/// What a code was sent for; a code satisfies only its own purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodePurpose {
    /// Confirming a new SMS or email factor.
    Enrollment,
    /// The second step of sign-in.
    Signin,
    /// Reopening the re-authentication window.
    Reauth,
}

impl CodePurpose {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            CodePurpose::Enrollment => "enrollment",
            CodePurpose::Signin => "signin",
            CodePurpose::Reauth => "reauth",
        }
    }

    /// The purpose with this stored name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "enrollment" => Some(CodePurpose::Enrollment),
            "signin" => Some(CodePurpose::Signin),
            "reauth" => Some(CodePurpose::Reauth),
            _ => None,
        }
    }
}

/// A freshly generated code, to send once; only its [`OneTimeCode::hash`] is kept.
#[derive(Clone)]
pub struct OneTimeCode(Zeroizing<String>);

impl OneTimeCode {
    /// A uniform random 6-digit code.
    pub fn generate() -> Result<Self> {
        // 10⁶ divides neither 2³² nor its multiples; drawing below the largest multiple of 10⁶
        // that fits keeps every code equally likely. A draw is rejected with probability
        // about 0.02%, so the loop ends at once in practice; 64 rounds bound it anyway.
        const SPACE: u32 = 1_000_000;
        const LIMIT: u32 = u32::MAX - u32::MAX % SPACE;
        for _ in 0..64 {
            let draw = u32::from_le_bytes(random_bytes::<4>()?);
            if draw < LIMIT {
                return Ok(Self(Zeroizing::new(format!("{:06}", draw % SPACE))));
            }
        }
        Err(Error::Internal(
            "the random source keeps returning the same values".into(),
        ))
    }

    /// The code's digits, for the message that carries it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The stored form of this code for `user_id`, `target` (the factor or enrollment id) and
    /// `purpose`.
    pub fn hash(
        &self,
        pepper: &Pepper,
        user_id: &str,
        target: &str,
        purpose: CodePurpose,
    ) -> [u8; 32] {
        code_hash(pepper, user_id, target, purpose, &self.0)
    }
}

impl fmt::Debug for OneTimeCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OneTimeCode([REDACTED])")
    }
}

/// The associated data that binds a sealed code to its outbox message.
fn outbox_aad(recipient: &str, purpose: CodePurpose) -> Vec<u8> {
    format!("one-time-code|{}|{recipient}", purpose.as_str()).into_bytes()
}

/// Seals `code` for the outbox message to `recipient` (E.164 number or address) for
/// `purpose`, as [`crate::notification::Notification::OneTimeCode`] carries it. The associated
/// data names the recipient and purpose, so a sealed code copied into another message (to
/// another number, or for another purpose) does not open.
pub fn seal_for_outbox(
    keys: &KeyRing,
    code: &OneTimeCode,
    recipient: &str,
    purpose: CodePurpose,
) -> Result<String> {
    let sealed = keys.seal(code.expose().as_bytes(), &outbox_aad(recipient, purpose))?;
    Ok(STANDARD.encode(sealed))
}

/// Opens a code sealed by [`seal_for_outbox`] for the same recipient and purpose. Fails
/// closed: anything that does not open, or does not open to 6 digits, is an error.
pub fn open_from_outbox(
    keys: &KeyRing,
    sealed_code: &str,
    recipient: &str,
    purpose: CodePurpose,
) -> Result<Zeroizing<String>> {
    let fail = || Error::Internal("one-time code: the sealed code does not open".into());
    let sealed = STANDARD.decode(sealed_code).map_err(|_| fail())?;
    let opened = Zeroizing::new(keys.open(&sealed, &outbox_aad(recipient, purpose))?);
    let digits = std::str::from_utf8(&opened).map_err(|_| fail())?;
    if digits.len() != CODE_DIGITS || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(fail());
    }
    Ok(Zeroizing::new(digits.to_owned()))
}

/// Seals a secret other than a code (an MFA reset link's token) for the outbox message to
/// `recipient`, bound to `purpose` like [`seal_for_outbox`].
pub fn seal_secret_for_outbox(
    keys: &KeyRing,
    secret: &str,
    recipient: &str,
    purpose: &str,
) -> Result<String> {
    let aad = format!("outbox-secret|{purpose}|{recipient}");
    Ok(STANDARD.encode(keys.seal(secret.as_bytes(), aad.as_bytes())?))
}

/// Opens a secret sealed by [`seal_secret_for_outbox`]; fails closed.
pub fn open_secret_from_outbox(
    keys: &KeyRing,
    sealed: &str,
    recipient: &str,
    purpose: &str,
) -> Result<Zeroizing<String>> {
    let fail = || Error::Internal("outbox secret: the sealed value does not open".into());
    let sealed = STANDARD.decode(sealed).map_err(|_| fail())?;
    let aad = format!("outbox-secret|{purpose}|{recipient}");
    let opened = Zeroizing::new(keys.open(&sealed, aad.as_bytes())?);
    let text = std::str::from_utf8(&opened).map_err(|_| fail())?;
    Ok(Zeroizing::new(text.to_owned()))
}

/// The keyed hash of a code as typed (already normalized by [`normalize_code`]).
pub fn code_hash(
    pepper: &Pepper,
    user_id: &str,
    target: &str,
    purpose: CodePurpose,
    digits: &str,
) -> [u8; 32] {
    // Length-prefixed fields, so no two different tuples share an input.
    let mut data = Vec::with_capacity(96);
    for field in [user_id, target, purpose.as_str(), digits] {
        data.extend_from_slice(&u32::try_from(field.len()).unwrap_or(u32::MAX).to_be_bytes());
        data.extend_from_slice(field.as_bytes());
    }
    pepper.keyed_hash("one-time-code", &data)
}

/// A code as a user typed it, reduced to its 6 ASCII digits (spaces and dashes dropped).
/// Anything else — letters, full-width digits, another length — is [`Error::InvalidCode`],
/// like a wrong code.
pub fn normalize_code(input: &str) -> Result<Zeroizing<String>> {
    if input.len() > 64 {
        return Err(Error::InvalidCode);
    }
    let digits: Zeroizing<String> = Zeroizing::new(
        input
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '\t'))
            .collect(),
    );
    if digits.len() == CODE_DIGITS && digits.chars().all(|c| c.is_ascii_digit()) {
        Ok(digits)
    } else {
        Err(Error::InvalidCode)
    }
}

/// A code that was sent, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCode {
    /// The keyed hash of the code.
    pub hash: [u8; 32],
    /// What it was sent for.
    pub purpose: CodePurpose,
    /// When it was sent.
    pub created_at: OffsetDateTime,
    /// Wrong tries so far.
    pub tries: u32,
    /// When it was used; a used code never matches again.
    pub used_at: Option<OffsetDateTime>,
}

/// What checking a typed code against an [`IssuedCode`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeCheck {
    /// The code is right and usable: consume it.
    Accepted,
    /// The code is wrong: count a try (the code is void once `tries_after` reaches
    /// [`MAX_CODE_TRIES`]).
    Wrong {
        /// The tries after this one.
        tries_after: u32,
    },
    /// The code is expired, used, voided by wrong tries, or for another purpose: refuse
    /// without counting anything on the code.
    Unusable,
}

impl IssuedCode {
    /// When the code stops being valid.
    pub fn expires_at(&self) -> OffsetDateTime {
        self.created_at + CODE_TTL
    }

    /// Checks `candidate` (the keyed hash of what was typed) for `purpose` at `now`.
    pub fn check(
        &self,
        candidate: &[u8; 32],
        purpose: CodePurpose,
        now: OffsetDateTime,
    ) -> CodeCheck {
        if self.used_at.is_some()
            || self.tries >= MAX_CODE_TRIES
            || now >= self.expires_at()
            || purpose != self.purpose
        {
            return CodeCheck::Unusable;
        }
        if constant_time_eq(candidate, &self.hash) {
            CodeCheck::Accepted
        } else {
            CodeCheck::Wrong {
                tries_after: self.tries + 1,
            }
        }
    }
}

/// What the store counted for a send about to happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendCounts {
    /// When the last code for this factor or enrollment was sent.
    pub last_to_target: Option<OffsetDateTime>,
    /// Codes sent to this account in the last hour.
    pub account_last_hour: u32,
    /// The oldest send counted in `account_last_hour`.
    pub account_oldest: Option<OffsetDateTime>,
    /// Codes sent to this destination in the last day.
    pub destination_last_day: u32,
    /// The oldest send counted in `destination_last_day`.
    pub destination_oldest: Option<OffsetDateTime>,
}

impl SendCounts {
    /// `Ok` when a code may be sent at `now`; otherwise [`Error::RateLimited`] with the
    /// seconds until the first limit that refuses it lifts.
    pub fn check(&self, now: OffsetDateTime) -> Result<()> {
        let mut until: Option<OffsetDateTime> = None;
        let mut refuse = |at: OffsetDateTime| {
            if at > now {
                until = Some(until.map_or(at, |u| u.max(at)));
            }
        };
        if let Some(last) = self.last_to_target {
            refuse(last + RESEND_INTERVAL);
        }
        if self.account_last_hour >= MAX_SENDS_PER_HOUR {
            refuse(self.account_oldest.unwrap_or(now) + Duration::HOUR);
        }
        if self.destination_last_day >= MAX_SENDS_PER_DESTINATION_PER_DAY {
            refuse(self.destination_oldest.unwrap_or(now) + Duration::DAY);
        }
        match until {
            None => Ok(()),
            Some(until) => Err(Error::RateLimited {
                retry_after_secs: u64::try_from((until - now).whole_seconds().max(1)).unwrap_or(1),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-12-03 10:00 UTC);

    fn pepper() -> Pepper {
        Pepper::new([7; 32])
    }

    fn issued(code: &OneTimeCode, purpose: CodePurpose) -> IssuedCode {
        IssuedCode {
            hash: code.hash(&pepper(), "user-1", "factor-1", purpose),
            purpose,
            created_at: T0,
            tries: 0,
            used_at: None,
        }
    }

    fn typed(code: &str, purpose: CodePurpose) -> [u8; 32] {
        let digits = normalize_code(code).unwrap();
        code_hash(&pepper(), "user-1", "factor-1", purpose, &digits)
    }

    #[test]
    fn codes_are_six_digits_and_spread_over_every_position() {
        let mut seen = [[false; 10]; CODE_DIGITS];
        for _ in 0..2000 {
            let code = OneTimeCode::generate().unwrap();
            assert_eq!(code.expose().len(), CODE_DIGITS);
            for (i, c) in code.expose().chars().enumerate() {
                seen[i][c.to_digit(10).unwrap() as usize] = true;
            }
        }
        // 2000 draws miss a given digit at a given position with probability 0.9²⁰⁰⁰.
        assert!(seen.iter().all(|position| position.iter().all(|&s| s)));
        assert_eq!(
            format!("{:?}", OneTimeCode::generate().unwrap()),
            "OneTimeCode([REDACTED])"
        );
    }

    #[test]
    fn a_code_is_accepted_until_ten_minutes_and_only_for_its_purpose() {
        let code = OneTimeCode::generate().unwrap();
        let sent = issued(&code, CodePurpose::Signin);
        let right = typed(code.expose(), CodePurpose::Signin);
        assert_eq!(
            sent.check(&right, CodePurpose::Signin, T0),
            CodeCheck::Accepted
        );
        let last = T0 + CODE_TTL - Duration::seconds(1);
        assert_eq!(
            sent.check(&right, CodePurpose::Signin, last),
            CodeCheck::Accepted
        );
        let expired = T0 + CODE_TTL + Duration::seconds(1);
        assert_eq!(
            sent.check(&right, CodePurpose::Signin, expired),
            CodeCheck::Unusable
        );
        // A sign-in code is refused for re-auth, and vice versa (the hash differs as well).
        assert_eq!(
            sent.check(&right, CodePurpose::Reauth, T0),
            CodeCheck::Unusable
        );
        let reauth = issued(&code, CodePurpose::Reauth);
        assert_ne!(
            reauth.check(&right, CodePurpose::Reauth, T0),
            CodeCheck::Accepted
        );
        assert_eq!(
            reauth.check(&right, CodePurpose::Signin, T0),
            CodeCheck::Unusable
        );
    }

    #[test]
    fn a_code_is_bound_to_its_user_and_target() {
        let code = OneTimeCode::generate().unwrap();
        let p = pepper();
        let h = |user: &str, target: &str| code.hash(&p, user, target, CodePurpose::Signin);
        assert_ne!(h("user-1", "factor-1"), h("user-2", "factor-1"));
        assert_ne!(h("user-1", "factor-1"), h("user-1", "factor-2"));
        // Field boundaries are part of the input: ("ab", "c") is not ("a", "bc").
        assert_ne!(h("ab", "c"), h("a", "bc"));
    }

    #[test]
    fn three_wrong_tries_void_a_code_and_a_used_code_never_matches() {
        let code = OneTimeCode::generate().unwrap();
        let mut sent = issued(&code, CodePurpose::Signin);
        let wrong_digits = if code.expose() == "000000" {
            "111111"
        } else {
            "000000"
        };
        let wrong = typed(wrong_digits, CodePurpose::Signin);
        for expected in 1..=MAX_CODE_TRIES {
            assert_eq!(
                sent.check(&wrong, CodePurpose::Signin, T0),
                CodeCheck::Wrong {
                    tries_after: expected
                }
            );
            sent.tries = expected;
        }
        let right = typed(code.expose(), CodePurpose::Signin);
        assert_eq!(
            sent.check(&right, CodePurpose::Signin, T0),
            CodeCheck::Unusable
        );
        let mut used = issued(&code, CodePurpose::Signin);
        used.used_at = Some(T0);
        assert_eq!(
            used.check(&right, CodePurpose::Signin, T0),
            CodeCheck::Unusable
        );
    }

    #[test]
    fn sealed_codes_open_only_for_their_recipient_and_purpose() {
        let keys = KeyRing::generate().unwrap();
        let code = OneTimeCode::generate().unwrap();
        let sealed = seal_for_outbox(&keys, &code, "+14155552671", CodePurpose::Signin).unwrap();
        assert!(!sealed.contains(code.expose()));
        let opened = open_from_outbox(&keys, &sealed, "+14155552671", CodePurpose::Signin).unwrap();
        assert_eq!(opened.as_str(), code.expose());
        assert!(open_from_outbox(&keys, &sealed, "+14155550000", CodePurpose::Signin).is_err());
        assert!(open_from_outbox(&keys, &sealed, "+14155552671", CodePurpose::Reauth).is_err());
        let other_keys = KeyRing::generate().unwrap();
        assert!(
            open_from_outbox(&other_keys, &sealed, "+14155552671", CodePurpose::Signin).is_err()
        );
        assert!(
            open_from_outbox(&keys, "not base64!", "+14155552671", CodePurpose::Signin).is_err()
        );
        let mut tampered = STANDARD.decode(&sealed).unwrap();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        let tampered = STANDARD.encode(tampered);
        assert!(open_from_outbox(&keys, &tampered, "+14155552671", CodePurpose::Signin).is_err());
    }

    #[test]
    fn typed_codes_are_six_ascii_digits() {
        assert_eq!(normalize_code(" 123 456 ").unwrap().as_str(), "123456");
        assert_eq!(normalize_code("123-456").unwrap().as_str(), "123456");
        assert_eq!(normalize_code("005924").unwrap().as_str(), "005924");
        for bad in [
            "",
            "12345",
            "1234567",
            "12345a",
            "１２３４５６",
            &"1".repeat(1_000_000),
        ] {
            assert!(
                matches!(normalize_code(bad), Err(Error::InvalidCode)),
                "{bad:.20}"
            );
        }
    }

    #[test]
    fn each_send_limit_refuses_with_the_time_until_it_lifts() {
        let quiet = SendCounts {
            last_to_target: None,
            account_last_hour: 0,
            account_oldest: None,
            destination_last_day: 0,
            destination_oldest: None,
        };
        assert!(quiet.check(T0).is_ok());
        let retry = |counts: SendCounts| match counts.check(T0) {
            Err(Error::RateLimited { retry_after_secs }) => retry_after_secs,
            other => panic!("expected a limit, got {other:?}"),
        };
        let resend = SendCounts {
            last_to_target: Some(T0 - Duration::seconds(10)),
            ..quiet
        };
        assert_eq!(retry(resend), 20);
        let after_interval = SendCounts {
            last_to_target: Some(T0 - RESEND_INTERVAL),
            ..quiet
        };
        assert!(after_interval.check(T0).is_ok());
        let hourly = SendCounts {
            account_last_hour: MAX_SENDS_PER_HOUR,
            account_oldest: Some(T0 - Duration::minutes(50)),
            ..quiet
        };
        assert_eq!(retry(hourly), 600);
        let daily = SendCounts {
            destination_last_day: MAX_SENDS_PER_DESTINATION_PER_DAY,
            destination_oldest: Some(T0 - Duration::hours(23)),
            ..quiet
        };
        assert_eq!(retry(daily), 3600);
        // Several limits: wait for the last one to lift.
        assert_eq!(
            retry(SendCounts {
                last_to_target: resend.last_to_target,
                ..daily
            }),
            3600
        );
    }
}

//! Second factors: authenticator apps (TOTP), backup codes, sign-in challenges and the rules
//! and limits that govern them.
//!
//! Threats: a stolen database (TOTP secrets are sealed with AES-256-GCM whose associated data
//! names the user and the factor, so a row copied to another account does not open; backup
//! codes are kept only as keyed hashes), code replay (the last accepted time step per factor
//! only moves forward — RFC 6238 §5.2), online guessing of second factors (a per-account lock
//! after [`MAX_FAILED_SECOND_FACTOR_ATTEMPTS`], see `throttle.rs`), and a challenge token
//! used as a session (challenges live in their own table and open only the second step).

use crate::crypto::{Pepper, TokenHash};
use crate::ids::{ChallengeId, EnrollmentId, FactorId, UserId};
use std::fmt;
use tessera_otp::{BackupCode, TotpParams};
use time::{Duration, OffsetDateTime};

/// How long a TOTP enrollment may be finished.
pub const ENROLLMENT_TTL: Duration = Duration::minutes(15);
/// Wrong confirmation codes an enrollment accepts before it is void.
pub const MAX_ENROLLMENT_ATTEMPTS: u32 = 5;
/// How long a sign-in challenge waits for its second step.
pub const CHALLENGE_TTL: Duration = Duration::minutes(5);
/// Backup codes in a set.
pub const BACKUP_CODE_COUNT: usize = 10;
/// At or below this many unused backup codes, Settings warns.
pub const LOW_BACKUP_CODES: u32 = 3;
/// A sign-in whose second step has not completed this long after the password is reported.
pub const UNFINISHED_SIGNIN_AFTER: Duration = Duration::minutes(10);
/// At most one unfinished-sign-in email per user in this period.
pub const UNFINISHED_SIGNIN_REPORT_INTERVAL: Duration = Duration::hours(1);
/// The longest factor label, in characters.
pub const MAX_LABEL_CHARS: usize = 64;
/// The parameters of every new TOTP enrollment: what every authenticator app reads.
pub const ENROLLMENT_TOTP: TotpParams = TotpParams::STANDARD;
/// The issuer shown in authenticator apps.
pub const TOTP_ISSUER: &str = "Tessera";

/// Kinds of second factor (the API's `kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FactorKind {
    /// An authenticator app (RFC 6238).
    Totp,
    /// Codes by text message.
    Sms,
    /// Codes by email.
    Email,
    /// A security key or passkey.
    Webauthn,
}

impl FactorKind {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            FactorKind::Totp => "totp",
            FactorKind::Sms => "sms",
            FactorKind::Email => "email",
            FactorKind::Webauthn => "webauthn",
        }
    }

    /// Parses the stored name.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "totp" => Some(FactorKind::Totp),
            "sms" => Some(FactorKind::Sms),
            "email" => Some(FactorKind::Email),
            "webauthn" => Some(FactorKind::Webauthn),
            _ => None,
        }
    }
}

/// Every factor kind, in the order settings list them.
pub const ALL_FACTOR_KINDS: [FactorKind; 4] = [
    FactorKind::Totp,
    FactorKind::Sms,
    FactorKind::Email,
    FactorKind::Webauthn,
];

/// Which factor kinds may be enrolled (the instance setting `mfa.allowed_methods`; the
/// organization policy narrows it further). Never empty. Backup codes are recovery, not a
/// method, and are always allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllowedMethods([bool; 4]);

impl AllowedMethods {
    /// Every kind.
    pub const ALL: Self = Self([true; 4]);

    /// The set of these kinds; `None` when `kinds` is empty (a policy nobody could satisfy).
    pub fn of(kinds: &[FactorKind]) -> Option<Self> {
        let mut set = [false; 4];
        for kind in kinds {
            set[Self::index(*kind)] = true;
        }
        set.contains(&true).then_some(Self(set))
    }

    /// Parses method names (`totp`, `sms`, `email`, `webauthn`); the error names what to fix.
    pub fn parse<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut kinds = Vec::new();
        for name in names {
            let name = name.trim();
            if name.is_empty() {
                continue;
            }
            kinds.push(FactorKind::parse(name).ok_or_else(|| {
                format!("unknown method `{name}`: expected totp, sms, email or webauthn")
            })?);
        }
        Self::of(&kinds).ok_or_else(|| "allowed methods must name at least one method".to_owned())
    }

    /// Whether `kind` may be enrolled.
    pub fn allows(self, kind: FactorKind) -> bool {
        self.0[Self::index(kind)]
    }

    /// The allowed kinds, in [`ALL_FACTOR_KINDS`] order.
    pub fn kinds(self) -> Vec<FactorKind> {
        ALL_FACTOR_KINDS
            .into_iter()
            .filter(|kind| self.allows(*kind))
            .collect()
    }

    fn index(kind: FactorKind) -> usize {
        match kind {
            FactorKind::Totp => 0,
            FactorKind::Sms => 1,
            FactorKind::Email => 2,
            FactorKind::Webauthn => 3,
        }
    }
}

impl Default for AllowedMethods {
    fn default() -> Self {
        Self::ALL
    }
}

impl serde::Serialize for AllowedMethods {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.kinds().into_iter().map(FactorKind::as_str))
    }
}

impl<'de> serde::Deserialize<'de> for AllowedMethods {
    /// A list (`["totp", "sms"]`) or a comma-separated string (`"totp,sms"`, as the
    /// environment gives it).
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(String),
            Many(Vec<String>),
        }
        let parsed = match Raw::deserialize(deserializer)? {
            Raw::One(text) => Self::parse(text.split(',')),
            Raw::Many(items) => Self::parse(items.iter().map(String::as_str)),
        };
        parsed.map_err(|why| serde::de::Error::custom(format!("mfa.allowed_methods: {why}")))
    }
}

/// How a second step was passed; recorded on the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MfaMethod {
    /// A code from an authenticator app.
    Totp,
    /// A backup code.
    BackupCode,
    /// A code sent by text message.
    Sms,
    /// A code sent by email.
    Email,
}

impl MfaMethod {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            MfaMethod::Totp => "totp",
            MfaMethod::BackupCode => "backup_code",
            MfaMethod::Sms => "sms",
            MfaMethod::Email => "email",
        }
    }

    /// Parses the stored name.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "totp" => Some(MfaMethod::Totp),
            "backup_code" => Some(MfaMethod::BackupCode),
            "sms" => Some(MfaMethod::Sms),
            "email" => Some(MfaMethod::Email),
            _ => None,
        }
    }

    /// The method that passes a second step with a factor of `kind`, for the kinds that
    /// receive codes.
    pub fn for_code_factor(kind: FactorKind) -> Option<Self> {
        match kind {
            FactorKind::Sms => Some(MfaMethod::Sms),
            FactorKind::Email => Some(MfaMethod::Email),
            FactorKind::Totp | FactorKind::Webauthn => None,
        }
    }

    /// RFC 8176 references for a sign-in with the password and this method.
    pub fn amr_with_password(self) -> Vec<String> {
        // RFC 8176: `otp` covers TOTP, backup (one-time) and emailed codes; `sms` is a code
        // sent by text message.
        let second = match self {
            MfaMethod::Sms => "sms",
            MfaMethod::Totp | MfaMethod::BackupCode | MfaMethod::Email => "otp",
        };
        vec!["pwd".into(), second.into(), "mfa".into()]
    }
}

/// An active factor as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct Factor {
    /// Its id.
    pub id: FactorId,
    /// Whose it is.
    pub user_id: UserId,
    /// What kind.
    pub kind: FactorKind,
    /// The user's name for it.
    pub label: String,
    /// The sealed TOTP secret (key id ‖ nonce ‖ ciphertext), for TOTP factors.
    pub secret_sealed: Option<Vec<u8>>,
    /// The id of the key that sealed it.
    pub key_id: Option<u32>,
    /// The last accepted TOTP time step.
    pub last_step: Option<u64>,
    /// Whether it is offered first at sign-in.
    pub preferred: bool,
    /// When it was added.
    pub created_at: OffsetDateTime,
    /// When it last passed a second step.
    pub last_used_at: Option<OffsetDateTime>,
    /// Where an SMS or email factor's codes go: the E.164 number or the address.
    pub destination: Option<String>,
}

impl Factor {
    /// Whether codes are sent to it (SMS and email factors).
    pub fn receives_codes(&self) -> bool {
        MfaMethod::for_code_factor(self.kind).is_some()
    }

    /// An SMS or email factor's destination with most of it hidden (`+1 ••• ••• 2671`,
    /// `j•••@example.com`); `None` for the other kinds.
    pub fn masked_destination(&self) -> Option<String> {
        let destination = self.destination.as_deref()?;
        Some(mask_destination(self.kind, destination))
    }
}

/// Masks a stored destination of an SMS or email factor for display.
pub fn mask_destination(kind: FactorKind, destination: &str) -> String {
    let masked = match kind {
        FactorKind::Sms => crate::phone::Phone::parse(None, destination).map(|p| p.masked()),
        _ => crate::email::Email::parse(destination).map(|e| e.masked()),
    };
    // A stored value that no longer parses is still never shown whole.
    masked.unwrap_or_else(|_| "•••".to_owned())
}

impl fmt::Debug for Factor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Factor")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("kind", &self.kind)
            .field("label", &self.label)
            .field(
                "secret_sealed",
                &self.secret_sealed.as_ref().map(|_| "[SEALED]"),
            )
            .field("key_id", &self.key_id)
            .field("last_step", &self.last_step)
            .field("preferred", &self.preferred)
            .field("destination", &self.masked_destination())
            .finish_non_exhaustive()
    }
}

/// An unfinished SMS or email enrollment as stored: the code sent to `destination` must come
/// back (as a one-time code with target `id` and purpose enrollment) before the factor exists.
#[derive(Clone, PartialEq, Eq)]
pub struct ContactEnrollment {
    /// Its id (the API's `enrollment_id`).
    pub id: EnrollmentId,
    /// Whose it is.
    pub user_id: UserId,
    /// The id the factor will have.
    pub factor_id: FactorId,
    /// SMS or email.
    pub kind: FactorKind,
    /// The E.164 number or the address being verified.
    pub destination: String,
    /// When it was started.
    pub created_at: OffsetDateTime,
    /// When it ends.
    pub expires_at: OffsetDateTime,
}

impl fmt::Debug for ContactEnrollment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContactEnrollment")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("factor_id", &self.factor_id)
            .field("kind", &self.kind)
            .field(
                "destination",
                &mask_destination(self.kind, &self.destination),
            )
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// An unfinished TOTP enrollment as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpEnrollment {
    /// Its id (the API's `enrollment_id`).
    pub id: EnrollmentId,
    /// Whose it is.
    pub user_id: UserId,
    /// The id the factor will have; the sealed secret's associated data names it.
    pub factor_id: FactorId,
    /// The sealed secret.
    pub secret_sealed: Vec<u8>,
    /// The id of the key that sealed it.
    pub key_id: u32,
    /// Wrong confirmation codes so far.
    pub attempts: u32,
    /// When it was started.
    pub created_at: OffsetDateTime,
    /// When it ends.
    pub expires_at: OffsetDateTime,
}

impl fmt::Debug for TotpEnrollment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TotpEnrollment")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("factor_id", &self.factor_id)
            .field("key_id", &self.key_id)
            .field("attempts", &self.attempts)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A sign-in challenge as stored: the password was right, a second factor is owed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Its id.
    pub id: ChallengeId,
    /// SHA-256 of the challenge token.
    pub token_hash: TokenHash,
    /// Whose sign-in it is.
    pub user_id: UserId,
    /// What it is for (always [`CHALLENGE_PURPOSE_SIGNIN`] today).
    pub purpose: String,
    /// When the password was accepted.
    pub created_at: OffsetDateTime,
    /// When it ends.
    pub expires_at: OffsetDateTime,
    /// When a second step completed it.
    pub completed_at: Option<OffsetDateTime>,
    /// Where the password came from.
    pub ip: Option<String>,
    /// With which user agent.
    pub user_agent: Option<String>,
}

/// The purpose of sign-in challenges.
pub const CHALLENGE_PURPOSE_SIGNIN: &str = "signin";

impl Challenge {
    /// Whether it can still be completed at `now`.
    pub fn is_open(&self, now: OffsetDateTime) -> bool {
        self.completed_at.is_none()
            && now < self.expires_at
            && self.purpose == CHALLENGE_PURPOSE_SIGNIN
    }
}

/// What happened to an unfinished sign-in once it was looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportState {
    /// The user was emailed.
    Sent,
    /// Another report went out within the hour.
    Suppressed,
}

impl ReportState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportState::Sent => "sent",
            ReportState::Suppressed => "suppressed",
        }
    }
}

/// The unused and total backup codes of a user.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackupCodeStatus {
    /// Codes not yet used.
    pub remaining: u32,
    /// When the current set was generated.
    pub generated_at: Option<OffsetDateTime>,
}

/// The associated data that binds a sealed TOTP secret to its user and factor.
pub fn totp_secret_aad(user_id: UserId, factor_id: FactorId) -> Vec<u8> {
    format!("tessera/totp-secret/v1|user:{user_id}|factor:{factor_id}").into_bytes()
}

/// The stored form of a backup code: HMAC-SHA256 with the pepper over the user and the code,
/// so equal codes of two users never share a hash.
pub fn backup_code_hash(pepper: &Pepper, user_id: UserId, code: &BackupCode) -> [u8; 32] {
    let mut data = Vec::with_capacity(64);
    data.extend_from_slice(user_id.0.as_bytes());
    data.extend_from_slice(code.normalized().as_bytes());
    pepper.keyed_hash("backup-code", &data)
}

/// Checks a user-chosen label: trimmed, 1 to [`MAX_LABEL_CHARS`] characters, no control
/// characters. `None` or blank gives `default`.
pub fn parse_label(label: Option<&str>, default: &str) -> crate::Result<String> {
    let label = label
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .unwrap_or(default);
    if label.chars().count() > MAX_LABEL_CHARS {
        return Err(crate::Error::invalid(format!(
            "label: must be at most {MAX_LABEL_CHARS} characters"
        )));
    }
    if label.chars().any(char::is_control) {
        return Err(crate::Error::invalid(
            "label: must not contain control characters",
        ));
    }
    Ok(label.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_trimmed_bounded_and_defaulted() {
        assert_eq!(
            parse_label(None, "Authenticator app").unwrap(),
            "Authenticator app"
        );
        assert_eq!(parse_label(Some("  "), "App").unwrap(), "App");
        assert_eq!(parse_label(Some(" Phone "), "App").unwrap(), "Phone");
        assert!(parse_label(Some(&"x".repeat(65)), "App").is_err());
        assert!(parse_label(Some("a\u{0}b"), "App").is_err());
    }

    #[test]
    fn backup_code_hashes_depend_on_user_and_code() {
        let pepper = Pepper::new([9; 32]);
        let code = BackupCode::from_bytes([1; 10]);
        let other = BackupCode::from_bytes([2; 10]);
        let (a, b) = (UserId::new(), UserId::new());
        assert_eq!(
            backup_code_hash(&pepper, a, &code),
            backup_code_hash(&pepper, a, &code)
        );
        assert_ne!(
            backup_code_hash(&pepper, a, &code),
            backup_code_hash(&pepper, b, &code)
        );
        assert_ne!(
            backup_code_hash(&pepper, a, &code),
            backup_code_hash(&pepper, a, &other)
        );
    }

    #[test]
    fn the_aad_names_user_and_factor() {
        let (u, f) = (UserId::new(), FactorId::new());
        let aad = String::from_utf8(totp_secret_aad(u, f)).unwrap();
        assert!(aad.contains(&u.to_string()) && aad.contains(&f.to_string()));
    }
}

//! Database rows (`*Row`) and their conversions to and from domain types, in one place.
//!
//! Storage representation: ids are UUID text, timestamps unix seconds
//! ([`tessera_core::clock::unix_seconds`]), token hashes raw bytes, JSON text. A row that does
//! not convert is reported as corrupt without quoting its content.

use crate::error::corrupt;
use tessera_core::clock::from_unix_seconds;
use tessera_core::crypto::TokenHash;
use tessera_core::email::Email;
use tessera_core::event::SecurityEvent;
use tessera_core::factor::{
    AllowedMethods, Challenge, ContactEnrollment, Factor, FactorKind, MfaMethod, TotpEnrollment,
};
use tessera_core::ids::{ChallengeId, EnrollmentId, FactorId, OrgId, SessionId, UserId};
use tessera_core::notification::{Channel, Notification, OutboxMessage};
use tessera_core::org::{MfaResetRequest, OrgMember, OrgPolicy, Organization, PolicyScope, Role};
use tessera_core::otc::{CodePurpose, IssuedCode};
use tessera_core::session::{Session, SessionState};
use tessera_core::store::{SealedSecret, SecretOwner};
use tessera_core::store::{StoreError, StoreResult};
use tessera_core::throttle::{PasswordThrottle, SecondFactorThrottle};
use tessera_core::user::{User, UserCredentials};
use uuid::Uuid;

/// The columns of [`UserRow`], for `SELECT` lists.
macro_rules! user_columns {
    () => {
        "id, email, display_name, created_at"
    };
}
pub(crate) use user_columns;

/// The columns of [`SessionRow`], for `SELECT` lists.
macro_rules! session_columns {
    () => {
        "id, user_id, token_hash, state, amr, created_at, last_seen_at, expires_at, \
         reauth_until, ip, user_agent, mfa_method"
    };
}
pub(crate) use session_columns;

/// The columns of [`EventRow`], for `SELECT` lists.
macro_rules! event_columns {
    () => {
        "id, user_id, kind, at, ip, user_agent, actor_id, details"
    };
}
pub(crate) use event_columns;

/// A `users` row without the password hash.
#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    pub(crate) id: String,
    pub(crate) email: String,
    pub(crate) display_name: String,
    pub(crate) created_at: i64,
}

impl TryFrom<UserRow> for User {
    type Error = StoreError;

    fn try_from(row: UserRow) -> StoreResult<Self> {
        Ok(User {
            id: UserId(parse_uuid(&row.id, "users.id")?),
            email: Email::parse(&row.email).map_err(|_| corrupt("users.email"))?,
            display_name: row.display_name,
            created_at: from_unix_seconds(row.created_at),
        })
    }
}

/// A `users` row with the password hash, as sign-in reads it.
#[derive(sqlx::FromRow)]
pub(crate) struct CredentialsRow {
    #[sqlx(flatten)]
    user: UserRow,
    password_hash: String,
}

impl TryFrom<CredentialsRow> for UserCredentials {
    type Error = StoreError;

    fn try_from(row: CredentialsRow) -> StoreResult<Self> {
        Ok(UserCredentials {
            user: row.user.try_into()?,
            password_hash: row.password_hash,
        })
    }
}

/// A `sessions` row.
#[derive(sqlx::FromRow)]
pub(crate) struct SessionRow {
    id: String,
    user_id: String,
    token_hash: Vec<u8>,
    state: String,
    amr: String,
    created_at: i64,
    last_seen_at: i64,
    expires_at: i64,
    reauth_until: Option<i64>,
    ip: Option<String>,
    user_agent: Option<String>,
    mfa_method: Option<String>,
}

impl TryFrom<SessionRow> for Session {
    type Error = StoreError;

    fn try_from(row: SessionRow) -> StoreResult<Self> {
        let token_hash: [u8; 32] = row
            .token_hash
            .as_slice()
            .try_into()
            .map_err(|_| corrupt("sessions.token_hash"))?;
        Ok(Session {
            id: SessionId(parse_uuid(&row.id, "sessions.id")?),
            user_id: UserId(parse_uuid(&row.user_id, "sessions.user_id")?),
            token_hash: TokenHash(token_hash),
            state: SessionState::parse(&row.state),
            amr: serde_json::from_str(&row.amr).map_err(|_| corrupt("sessions.amr"))?,
            created_at: from_unix_seconds(row.created_at),
            last_seen_at: from_unix_seconds(row.last_seen_at),
            expires_at: from_unix_seconds(row.expires_at),
            reauth_until: row.reauth_until.map(from_unix_seconds),
            ip: row.ip,
            user_agent: row.user_agent,
            mfa_method: row
                .mfa_method
                .as_deref()
                .map(|m| MfaMethod::parse(m).ok_or_else(|| corrupt("sessions.mfa_method")))
                .transpose()?,
        })
    }
}

/// The columns of [`FactorRow`], for `SELECT` lists.
macro_rules! factor_columns {
    () => {
        "id, user_id, kind, label, secret_sealed, key_id, last_step, preferred, created_at, \
         last_used_at, destination"
    };
}
pub(crate) use factor_columns;

/// A `factors` row.
#[derive(sqlx::FromRow)]
pub(crate) struct FactorRow {
    pub(crate) id: String,
    pub(crate) user_id: String,
    pub(crate) kind: String,
    pub(crate) label: String,
    pub(crate) secret_sealed: Option<Vec<u8>>,
    pub(crate) key_id: Option<i64>,
    pub(crate) last_step: Option<i64>,
    pub(crate) preferred: i64,
    pub(crate) created_at: i64,
    pub(crate) last_used_at: Option<i64>,
    pub(crate) destination: Option<String>,
}

impl TryFrom<FactorRow> for Factor {
    type Error = StoreError;

    fn try_from(row: FactorRow) -> StoreResult<Self> {
        Ok(Factor {
            id: FactorId(parse_uuid(&row.id, "factors.id")?),
            user_id: UserId(parse_uuid(&row.user_id, "factors.user_id")?),
            kind: FactorKind::parse(&row.kind).ok_or_else(|| corrupt("factors.kind"))?,
            label: row.label,
            secret_sealed: row.secret_sealed,
            key_id: row
                .key_id
                .map(|id| u32::try_from(id).map_err(|_| corrupt("factors.key_id")))
                .transpose()?,
            last_step: row
                .last_step
                .map(|step| u64::try_from(step).map_err(|_| corrupt("factors.last_step")))
                .transpose()?,
            preferred: row.preferred != 0,
            created_at: from_unix_seconds(row.created_at),
            last_used_at: row.last_used_at.map(from_unix_seconds),
            destination: row.destination,
        })
    }
}

/// The columns of [`ContactEnrollmentRow`], for `SELECT` and `RETURNING` lists.
macro_rules! contact_enrollment_columns {
    () => {
        "id, user_id, factor_id, kind, destination, created_at, expires_at"
    };
}
pub(crate) use contact_enrollment_columns;

/// A `contact_enrollments` row.
#[derive(sqlx::FromRow)]
pub(crate) struct ContactEnrollmentRow {
    id: String,
    user_id: String,
    factor_id: String,
    kind: String,
    destination: String,
    created_at: i64,
    expires_at: i64,
}

impl TryFrom<ContactEnrollmentRow> for ContactEnrollment {
    type Error = StoreError;

    fn try_from(row: ContactEnrollmentRow) -> StoreResult<Self> {
        Ok(ContactEnrollment {
            id: EnrollmentId(parse_uuid(&row.id, "contact_enrollments.id")?),
            user_id: UserId(parse_uuid(&row.user_id, "contact_enrollments.user_id")?),
            factor_id: FactorId(parse_uuid(&row.factor_id, "contact_enrollments.factor_id")?),
            kind: FactorKind::parse(&row.kind)
                .filter(|kind| matches!(kind, FactorKind::Sms | FactorKind::Email))
                .ok_or_else(|| corrupt("contact_enrollments.kind"))?,
            destination: row.destination,
            created_at: from_unix_seconds(row.created_at),
            expires_at: from_unix_seconds(row.expires_at),
        })
    }
}

/// The columns of [`EnrollmentRow`], for `SELECT` and `RETURNING` lists.
macro_rules! enrollment_columns {
    () => {
        "id, user_id, factor_id, secret_sealed, key_id, attempts, created_at, expires_at"
    };
}
pub(crate) use enrollment_columns;

/// A `totp_enrollments` row.
#[derive(sqlx::FromRow)]
pub(crate) struct EnrollmentRow {
    id: String,
    user_id: String,
    factor_id: String,
    secret_sealed: Vec<u8>,
    key_id: i64,
    attempts: i64,
    created_at: i64,
    expires_at: i64,
}

impl TryFrom<EnrollmentRow> for TotpEnrollment {
    type Error = StoreError;

    fn try_from(row: EnrollmentRow) -> StoreResult<Self> {
        Ok(TotpEnrollment {
            id: EnrollmentId(parse_uuid(&row.id, "totp_enrollments.id")?),
            user_id: UserId(parse_uuid(&row.user_id, "totp_enrollments.user_id")?),
            factor_id: FactorId(parse_uuid(&row.factor_id, "totp_enrollments.factor_id")?),
            secret_sealed: row.secret_sealed,
            key_id: u32::try_from(row.key_id).map_err(|_| corrupt("totp_enrollments.key_id"))?,
            attempts: count_to_u32(row.attempts, "totp_enrollments.attempts")?,
            created_at: from_unix_seconds(row.created_at),
            expires_at: from_unix_seconds(row.expires_at),
        })
    }
}

/// The columns of [`ChallengeRow`], for `SELECT` lists.
macro_rules! challenge_columns {
    () => {
        "id, token_hash, user_id, purpose, created_at, expires_at, completed_at, ip, user_agent"
    };
}
pub(crate) use challenge_columns;

/// A `mfa_challenges` row.
#[derive(sqlx::FromRow)]
pub(crate) struct ChallengeRow {
    pub(crate) id: String,
    pub(crate) token_hash: Vec<u8>,
    pub(crate) user_id: String,
    pub(crate) purpose: String,
    pub(crate) created_at: i64,
    pub(crate) expires_at: i64,
    pub(crate) completed_at: Option<i64>,
    pub(crate) ip: Option<String>,
    pub(crate) user_agent: Option<String>,
}

impl TryFrom<ChallengeRow> for Challenge {
    type Error = StoreError;

    fn try_from(row: ChallengeRow) -> StoreResult<Self> {
        let token_hash: [u8; 32] = row
            .token_hash
            .as_slice()
            .try_into()
            .map_err(|_| corrupt("mfa_challenges.token_hash"))?;
        Ok(Challenge {
            id: ChallengeId(parse_uuid(&row.id, "mfa_challenges.id")?),
            token_hash: TokenHash(token_hash),
            user_id: UserId(parse_uuid(&row.user_id, "mfa_challenges.user_id")?),
            purpose: row.purpose,
            created_at: from_unix_seconds(row.created_at),
            expires_at: from_unix_seconds(row.expires_at),
            completed_at: row.completed_at.map(from_unix_seconds),
            ip: row.ip,
            user_agent: row.user_agent,
        })
    }
}

/// A sealed secret awaiting re-sealing: `table` is `factor` or `enrollment`.
/// The second step's joined read: a challenge, its user and the user's second-factor throttle.
#[derive(sqlx::FromRow)]
pub(crate) struct ContextRow {
    id: String,
    token_hash: Vec<u8>,
    user_id: String,
    purpose: String,
    created_at: i64,
    expires_at: i64,
    completed_at: Option<i64>,
    ip: Option<String>,
    user_agent: Option<String>,
    email: String,
    display_name: String,
    user_created_at: i64,
    failures: Option<i64>,
    locked_until: Option<i64>,
}

impl ContextRow {
    pub(crate) fn into_parts(self) -> StoreResult<(Challenge, User, SecondFactorThrottle)> {
        let user = User::try_from(UserRow {
            id: self.user_id.clone(),
            email: self.email,
            display_name: self.display_name,
            created_at: self.user_created_at,
        })?;
        let challenge = Challenge::try_from(ChallengeRow {
            id: self.id,
            token_hash: self.token_hash,
            user_id: self.user_id,
            purpose: self.purpose,
            created_at: self.created_at,
            expires_at: self.expires_at,
            completed_at: self.completed_at,
            ip: self.ip,
            user_agent: self.user_agent,
        })?;
        let throttle = SecondFactorThrottle {
            failures: count_to_u32(
                self.failures.unwrap_or(0),
                "second_factor_throttle.failures",
            )?,
            locked_until: self.locked_until.map(from_unix_seconds),
        };
        Ok((challenge, user, throttle))
    }
}

/// A [`ContextRow`] joined with one of the user's factors (none when the user has none): the
/// one-query second-step read of PostgreSQL and in-memory SQLite.
#[derive(sqlx::FromRow)]
pub(crate) struct ContextFactorRow {
    #[sqlx(flatten)]
    pub(crate) context: ContextRow,
    f_id: Option<String>,
    f_kind: Option<String>,
    f_label: Option<String>,
    f_secret_sealed: Option<Vec<u8>>,
    f_key_id: Option<i64>,
    f_last_step: Option<i64>,
    f_preferred: Option<i64>,
    f_created_at: Option<i64>,
    f_last_used_at: Option<i64>,
    f_destination: Option<String>,
}

impl ContextFactorRow {
    /// The joined factor, if the row has one.
    pub(crate) fn factor(&self) -> StoreResult<Option<Factor>> {
        let Some(id) = self.f_id.clone() else {
            return Ok(None);
        };
        let missing = || StoreError::Other("second-step read: a factor column is null".into());
        Factor::try_from(FactorRow {
            id,
            user_id: self.context.user_id.clone(),
            kind: self.f_kind.clone().ok_or_else(missing)?,
            label: self.f_label.clone().ok_or_else(missing)?,
            secret_sealed: self.f_secret_sealed.clone(),
            key_id: self.f_key_id,
            last_step: self.f_last_step,
            preferred: self.f_preferred.ok_or_else(missing)?,
            created_at: self.f_created_at.ok_or_else(missing)?,
            last_used_at: self.f_last_used_at,
            destination: self.f_destination.clone(),
        })
        .map(Some)
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct SealedSecretRow {
    table_name: String,
    id: String,
    user_id: String,
    factor_id: String,
    sealed: Vec<u8>,
}

impl TryFrom<SealedSecretRow> for SealedSecret {
    type Error = StoreError;

    fn try_from(row: SealedSecretRow) -> StoreResult<Self> {
        let factor_id = FactorId(parse_uuid(&row.factor_id, "sealed.factor_id")?);
        let owner = match row.table_name.as_str() {
            "factor" => SecretOwner::Factor(factor_id),
            "enrollment" => SecretOwner::Enrollment {
                id: EnrollmentId(parse_uuid(&row.id, "sealed.id")?),
                factor_id,
            },
            _ => return Err(corrupt("sealed.table_name")),
        };
        Ok(SealedSecret {
            user_id: UserId(parse_uuid(&row.user_id, "sealed.user_id")?),
            owner,
            sealed: row.sealed,
        })
    }
}

/// A TOTP step or other `u64` for a BIGINT column (saturating; steps are far below 2^63).
pub(crate) fn u64_to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A `one_time_codes` row.
#[derive(sqlx::FromRow)]
pub(crate) struct CodeRow {
    purpose: String,
    code_hash: Vec<u8>,
    created_at: i64,
    tries: i64,
    used_at: Option<i64>,
}

impl TryFrom<CodeRow> for IssuedCode {
    type Error = StoreError;

    fn try_from(row: CodeRow) -> StoreResult<Self> {
        let purpose = CodePurpose::parse(&row.purpose).ok_or_else(|| {
            StoreError::Other(format!(
                "one_time_codes.purpose {:?} is unknown",
                row.purpose
            ))
        })?;
        let hash = <[u8; 32]>::try_from(row.code_hash.as_slice())
            .map_err(|_| StoreError::Other("one_time_codes.code_hash is not 32 bytes".into()))?;
        Ok(IssuedCode {
            hash,
            purpose,
            created_at: from_unix_seconds(row.created_at),
            tries: count_to_u32(row.tries, "one_time_codes.tries")?,
            used_at: row.used_at.map(from_unix_seconds),
        })
    }
}

/// A `password_throttle` row.
#[derive(sqlx::FromRow)]
pub(crate) struct ThrottleRow {
    failures: i64,
    locked_until: Option<i64>,
}

impl TryFrom<ThrottleRow> for PasswordThrottle {
    type Error = StoreError;

    fn try_from(row: ThrottleRow) -> StoreResult<Self> {
        Ok(PasswordThrottle {
            failures: count_to_u32(row.failures, "password_throttle.failures")?,
            locked_until: row.locked_until.map(from_unix_seconds),
        })
    }
}

/// A `security_events` row.
#[derive(sqlx::FromRow)]
pub(crate) struct EventRow {
    id: i64,
    user_id: String,
    kind: String,
    at: i64,
    ip: Option<String>,
    user_agent: Option<String>,
    actor_id: Option<String>,
    details: String,
}

impl TryFrom<EventRow> for SecurityEvent {
    type Error = StoreError;

    fn try_from(row: EventRow) -> StoreResult<Self> {
        let actor_id = row
            .actor_id
            .as_deref()
            .map(|actor| parse_uuid(actor, "security_events.actor_id").map(UserId))
            .transpose()?;
        Ok(SecurityEvent {
            id: row.id,
            user_id: UserId(parse_uuid(&row.user_id, "security_events.user_id")?),
            kind: row.kind,
            at: from_unix_seconds(row.at),
            ip: row.ip,
            user_agent: row.user_agent,
            actor_id,
            details: serde_json::from_str(&row.details)
                .map_err(|_| corrupt("security_events.details"))?,
        })
    }
}

/// An `outbox` row as the claim returns it.
#[derive(sqlx::FromRow)]
pub(crate) struct OutboxRow {
    pub(crate) id: i64,
    channel: String,
    recipient: String,
    payload: String,
    created_at: i64,
    attempts: i64,
}

impl TryFrom<OutboxRow> for OutboxMessage {
    type Error = StoreError;

    fn try_from(row: OutboxRow) -> StoreResult<Self> {
        let notification: Notification =
            serde_json::from_str(&row.payload).map_err(|_| corrupt("outbox.payload"))?;
        Ok(OutboxMessage {
            id: row.id,
            channel: Channel::parse(&row.channel).ok_or_else(|| corrupt("outbox.channel"))?,
            recipient: row.recipient,
            notification,
            created_at: from_unix_seconds(row.created_at),
            attempts: count_to_u32(row.attempts, "outbox.attempts")?,
        })
    }
}

/// Serialises a session's `amr` for its TEXT column.
pub(crate) fn amr_json(amr: &[String]) -> StoreResult<String> {
    serde_json::to_string(amr).map_err(|_| StoreError::Other("cannot serialise amr".into()))
}

/// Serialises a JSON value (event details) for a TEXT column.
pub(crate) fn json_text(value: &serde_json::Value) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|_| StoreError::Other("cannot serialise details".into()))
}

/// Serialises a notification for the outbox `payload` column.
pub(crate) fn notification_json(notification: &Notification) -> StoreResult<String> {
    serde_json::to_string(notification)
        .map_err(|_| StoreError::Other("cannot serialise notification".into()))
}

/// A stored count (never negative) as `u32`, saturating at `u32::MAX`.
pub(crate) fn count_to_u32(value: i64, what: &str) -> StoreResult<u32> {
    if value < 0 {
        return Err(corrupt(what));
    }
    Ok(u32::try_from(value).unwrap_or(u32::MAX))
}

fn parse_uuid(value: &str, what: &str) -> StoreResult<Uuid> {
    Uuid::parse_str(value).map_err(|_| corrupt(what))
}

/// The columns of [`OrgRow`] (table alias `o`), for `SELECT` lists.
macro_rules! org_columns {
    () => {
        "o.id, o.name, o.created_at, o.mfa_required, o.policy_roles, o.policy_scope, \
         o.grace_period_hours, o.allowed_methods, o.allow_disable, o.app_mfa_max_age_seconds"
    };
}
pub(crate) use org_columns;

/// An `organizations` row.
#[derive(sqlx::FromRow)]
pub(crate) struct OrgRow {
    id: String,
    name: String,
    created_at: i64,
    mfa_required: i64,
    policy_roles: String,
    policy_scope: String,
    grace_period_hours: i64,
    allowed_methods: String,
    allow_disable: i64,
    app_mfa_max_age_seconds: Option<i64>,
}

impl TryFrom<OrgRow> for Organization {
    type Error = StoreError;

    fn try_from(row: OrgRow) -> StoreResult<Self> {
        let roles = row
            .policy_roles
            .split(',')
            .filter(|r| !r.is_empty())
            .map(|r| Role::parse(r).map_err(|_| corrupt("organizations.policy_roles")))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Organization {
            id: OrgId(parse_uuid(&row.id, "organizations.id")?),
            name: row.name,
            created_at: from_unix_seconds(row.created_at),
            policy: OrgPolicy {
                mfa_required: row.mfa_required != 0,
                roles,
                scope: PolicyScope::parse(&row.policy_scope)
                    .map_err(|_| corrupt("organizations.policy_scope"))?,
                grace_period_hours: u32::try_from(row.grace_period_hours)
                    .map_err(|_| corrupt("organizations.grace_period_hours"))?,
                allowed_methods: AllowedMethods::parse(row.allowed_methods.split(','))
                    .map_err(|_| corrupt("organizations.allowed_methods"))?,
                allow_disable: row.allow_disable != 0,
                app_mfa_max_age_seconds: row
                    .app_mfa_max_age_seconds
                    .map(|age| {
                        u32::try_from(age).map_err(|_| corrupt("organizations.app_mfa_max_age"))
                    })
                    .transpose()?,
            },
        })
    }
}

/// An organization row joined with a member's role.
#[derive(sqlx::FromRow)]
pub(crate) struct OrgRoleRow {
    #[sqlx(flatten)]
    pub(crate) org: OrgRow,
    pub(crate) role: String,
}

/// A member row joined with the user.
#[derive(sqlx::FromRow)]
pub(crate) struct MemberRow {
    #[sqlx(flatten)]
    pub(crate) user: UserRow,
    pub(crate) role: String,
    pub(crate) added_at: i64,
}

impl TryFrom<MemberRow> for OrgMember {
    type Error = StoreError;

    fn try_from(row: MemberRow) -> StoreResult<Self> {
        Ok(OrgMember {
            user: User::try_from(row.user)?,
            role: parse_role(&row.role)?,
            added_at: from_unix_seconds(row.added_at),
        })
    }
}

pub(crate) fn parse_role(role: &str) -> StoreResult<Role> {
    Role::parse(role).map_err(|_| corrupt("org_members.role"))
}

/// The stored form of a role list.
pub(crate) fn roles_text(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// The stored form of allowed methods.
pub(crate) fn methods_text(methods: AllowedMethods) -> String {
    methods
        .kinds()
        .into_iter()
        .map(FactorKind::as_str)
        .collect::<Vec<_>>()
        .join(",")
}

/// The columns of [`ResetRow`], for `SELECT` and `RETURNING` lists.
macro_rules! reset_columns {
    () => {
        "id, user_id, org_id, requested_by, token_hash, created_at, expires_at, opened_at"
    };
}
pub(crate) use reset_columns;

/// An `mfa_resets` row.
#[derive(sqlx::FromRow)]
pub(crate) struct ResetRow {
    id: String,
    user_id: String,
    org_id: Option<String>,
    requested_by: Option<String>,
    token_hash: Vec<u8>,
    created_at: i64,
    expires_at: i64,
    pub(crate) opened_at: Option<i64>,
}

impl TryFrom<ResetRow> for MfaResetRequest {
    type Error = StoreError;

    fn try_from(row: ResetRow) -> StoreResult<Self> {
        let hash: [u8; 32] = row
            .token_hash
            .as_slice()
            .try_into()
            .map_err(|_| corrupt("mfa_resets.token_hash"))?;
        Ok(MfaResetRequest {
            id: EnrollmentId(parse_uuid(&row.id, "mfa_resets.id")?),
            user_id: UserId(parse_uuid(&row.user_id, "mfa_resets.user_id")?),
            org_id: row
                .org_id
                .map(|id| parse_uuid(&id, "mfa_resets.org_id").map(OrgId))
                .transpose()?,
            requested_by: row
                .requested_by
                .map(|id| parse_uuid(&id, "mfa_resets.requested_by").map(UserId))
                .transpose()?,
            token_hash: TokenHash(hash),
            created_at: from_unix_seconds(row.created_at),
            expires_at: from_unix_seconds(row.expires_at),
        })
    }
}

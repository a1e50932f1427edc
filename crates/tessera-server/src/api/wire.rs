//! Wire types: what the API reads and writes, with conversions from the domain in one place.

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use tessera_core::event::SecurityEvent;
use tessera_core::factor::Factor;
use tessera_core::org::{OrgPolicy, Organization, Role};
use tessera_core::service::{CodeSent, MemberStatus, MfaChallenge, MfaState};
use tessera_core::session::Session;
use tessera_core::user::User;
use time::OffsetDateTime;
use utoipa::ToSchema;

/// An account.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserResponse {
    /// Opaque id.
    pub id: String,
    /// Sign-in email.
    pub email: String,
    /// Display name.
    pub display_name: String,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

impl From<&User> for UserResponse {
    fn from(user: &User) -> Self {
        Self {
            id: user.id.to_string(),
            email: user.email.to_string(),
            display_name: user.display_name.clone(),
            created_at: user.created_at,
        }
    }
}

/// `POST /api/v1/accounts`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAccountRequest {
    /// Email address (unique, case-insensitively).
    pub email: String,
    /// At least 8 characters, at most 1,024 bytes, not common or guessable.
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
    /// Optional display name.
    pub display_name: Option<String>,
}

/// The created account.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountResponse {
    /// The account.
    pub user: UserResponse,
}

/// `POST /api/v1/sessions`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignInRequest {
    /// Email address.
    pub email: String,
    /// Password.
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
}

/// A completed sign-in.
#[derive(Serialize, ToSchema)]
pub struct SignInResponse {
    /// `authenticated`, or `mfa_enrollment_required`: a restricted session that may only read
    /// `GET /api/v1/me`, enroll an allowed factor and sign out, until a factor is confirmed.
    pub status: &'static str,
    /// The bearer token; shown once.
    pub session_token: String,
    /// Absolute end of the session.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
    /// The account.
    pub user: UserResponse,
    /// RFC 8176 authentication methods.
    pub amr: Vec<String>,
    /// For `mfa_enrollment_required`: when the requirement was enforced.
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub deadline: Option<OffsetDateTime>,
}

/// One session in the list.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionResponse {
    /// Session id (not its token).
    pub id: String,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// Last use, to within a minute.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub last_seen_at: OffsetDateTime,
    /// Client address at creation.
    pub ip: Option<String>,
    /// User agent at creation.
    pub user_agent: Option<String>,
    /// Whether this is the session making the request.
    pub current: bool,
    /// RFC 8176 authentication methods.
    pub amr: Vec<String>,
}

impl SessionResponse {
    /// Converts a session, marking the current one.
    pub fn new(session: &Session, current: bool) -> Self {
        Self {
            id: session.id.to_string(),
            created_at: session.created_at,
            last_seen_at: session.last_seen_at,
            ip: session.ip.clone(),
            user_agent: session.user_agent.clone(),
            current,
            amr: session.amr.clone(),
        }
    }
}

/// `GET /api/v1/sessions`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionsResponse {
    /// Live sessions, newest first.
    pub sessions: Vec<SessionResponse>,
}

/// `POST /api/v1/reauth`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReauthRequest {
    /// The current password.
    #[schema(value_type = Option<String>, format = Password)]
    pub password: Option<SecretString>,
    /// Instead of the password: `sms` or `email`, with a `code` sent by
    /// `POST /api/v1/reauth/send`.
    pub method: Option<String>,
    /// The SMS or email factor the code was sent to (any of that kind when absent).
    pub factor_id: Option<String>,
    /// The code sent for re-authentication.
    #[schema(value_type = Option<String>, format = Password)]
    pub code: Option<CodeInput>,
}

/// `POST /api/v1/reauth/send`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReauthSendRequest {
    /// The SMS or email factor to send a re-authentication code to.
    pub factor_id: String,
}

/// The open re-auth window.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReauthResponse {
    /// Sensitive actions are allowed until then.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub reauth_until: OffsetDateTime,
}

/// `POST /api/v1/me/password`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    /// The current password.
    #[schema(value_type = String, format = Password)]
    pub current_password: SecretString,
    /// The new password.
    #[schema(value_type = String, format = Password)]
    pub new_password: SecretString,
}

/// An active second factor.
#[derive(Debug, Serialize, ToSchema)]
pub struct FactorSummary {
    /// Factor id.
    pub id: String,
    /// `totp`, `sms`, `email` or `webauthn`.
    pub kind: String,
    /// Label.
    pub label: String,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// When it last passed a second step.
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<OffsetDateTime>,
    /// Whether it is offered first.
    pub preferred: bool,
    /// Where an SMS or email factor's codes go, masked (`+1 ••• ••• 2671`,
    /// `j•••@example.com`); absent for the other kinds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
}

impl From<&Factor> for FactorSummary {
    fn from(factor: &Factor) -> Self {
        Self {
            id: factor.id.to_string(),
            kind: factor.kind.as_str().to_owned(),
            label: factor.label.clone(),
            created_at: factor.created_at,
            last_used_at: factor.last_used_at,
            preferred: factor.preferred,
            destination: factor.masked_destination(),
        }
    }
}

/// `PATCH /api/v1/me/factors/{id}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateFactorRequest {
    /// A new name, at most 64 characters (blank restores the default).
    pub label: Option<String>,
    /// `true` makes this the preferred factor (the one offered first at sign-in).
    pub preferred: Option<bool>,
}

/// A factor (`PATCH /api/v1/me/factors/{id}`).
#[derive(Serialize, ToSchema)]
pub struct FactorResponse {
    /// The factor as it is now.
    pub factor: FactorSummary,
}

/// `POST /api/v1/me/factors/sms`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartSmsRequest {
    /// The number: international with `+` and the country code (`+1 415 555 2671`), or the
    /// national number when `country_code` is given.
    pub phone: String,
    /// The country calling code (`1`, `+44`) of a national `phone`.
    pub country_code: Option<String>,
}

/// `POST /api/v1/me/factors/email`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartEmailRequest {
    /// The address to send codes to (default: the account's).
    pub email: Option<String>,
}

/// The message shown when a code may not arrive soon.
pub const DELIVERY_FAILING_MESSAGE: &str =
    "We could not send the code, try again shortly. It is queued and will be retried.";

/// A code was sent (or queued for a retry).
#[derive(Serialize, ToSchema)]
pub struct CodeSentResponse {
    /// Where it went, masked.
    pub destination: String,
    /// When the code stops working (10 minutes).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub code_expires_at: OffsetDateTime,
    /// `queued`, or `failing` when recent messages on this channel could not be delivered
    /// (the code stays queued and is retried).
    pub delivery: &'static str,
    /// What to tell the user when `delivery` is `failing`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<&'static str>,
}

impl From<&CodeSent> for CodeSentResponse {
    fn from(sent: &CodeSent) -> Self {
        Self {
            destination: sent.masked_destination.clone(),
            code_expires_at: sent.expires_at,
            delivery: if sent.delivery_failing {
                "failing"
            } else {
                "queued"
            },
            message: sent.delivery_failing.then_some(DELIVERY_FAILING_MESSAGE),
        }
    }
}

/// `POST /api/v1/me/factors/{sms,email}`: the code is on its way.
#[derive(Serialize, ToSchema)]
pub struct ContactEnrollmentResponse {
    /// Pass to the confirm endpoint.
    pub enrollment_id: String,
    /// The enrollment ends then (15 minutes); each code lasts 10.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
    /// The code that was sent.
    #[serde(flatten)]
    pub sent: CodeSentResponse,
}

/// `POST /api/v1/sessions/mfa/send`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendCodeRequest {
    /// From `POST /api/v1/sessions`.
    #[schema(value_type = String, format = Password)]
    pub challenge_token: SecretString,
    /// The SMS or email factor to send a code to.
    pub factor_id: String,
}

/// `POST /api/v1/sessions` when a second factor is owed.
#[derive(Serialize, ToSchema)]
pub struct MfaRequiredResponse {
    /// `mfa_required`.
    pub status: &'static str,
    /// Opens `POST /api/v1/sessions/mfa` (and nothing else) for 5 minutes.
    pub challenge_token: String,
    /// When the challenge ends.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
    /// The factor to offer first.
    pub preferred_factor_id: Option<String>,
    /// Every active factor, preferred first.
    pub factors: Vec<FactorSummary>,
    /// The methods the second step accepts: factor kinds, and `backup_code` while unused
    /// codes remain.
    pub methods: Vec<String>,
}

impl From<&MfaChallenge> for MfaRequiredResponse {
    fn from(challenge: &MfaChallenge) -> Self {
        let mut methods: Vec<String> = Vec::new();
        for factor in &challenge.factors {
            let kind = factor.kind.as_str().to_owned();
            if !methods.contains(&kind) {
                methods.push(kind);
            }
        }
        if challenge.backup_codes_remaining > 0 {
            methods.push("backup_code".into());
        }
        Self {
            status: "mfa_required",
            challenge_token: challenge.token.expose().to_owned(),
            expires_at: challenge.challenge.expires_at,
            preferred_factor_id: challenge
                .factors
                .iter()
                .find(|f| f.preferred)
                .or(challenge.factors.first())
                .map(|f| f.id.to_string()),
            factors: challenge.factors.iter().map(FactorSummary::from).collect(),
            methods,
        }
    }
}

/// `POST /api/v1/sessions/mfa`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecondStepRequest {
    /// From `POST /api/v1/sessions`.
    #[schema(value_type = String, format = Password)]
    pub challenge_token: SecretString,
    /// `totp`, `backup_code`, `sms` or `email` (`webauthn` arrives with security keys).
    pub method: String,
    /// The factor the code is for (any of the user's of that kind when absent).
    pub factor_id: Option<String>,
    /// The code as typed: 6 digits, or a backup code in any case with or without dashes.
    #[schema(value_type = Option<String>, format = Password)]
    pub code: Option<CodeInput>,
    /// A WebAuthn assertion (security keys, not yet available).
    #[schema(value_type = Option<Object>)]
    pub credential: Option<serde_json::Value>,
}

/// `POST /api/v1/me/factors/totp`.
#[derive(Serialize, ToSchema)]
pub struct TotpEnrollmentResponse {
    /// Pass to the confirm endpoint.
    pub enrollment_id: String,
    /// The secret for manual entry: RFC 4648 base32, no padding, 160 bits.
    pub secret: String,
    /// `otpauth://totp/…` (what the QR code holds).
    pub otpauth_uri: String,
    /// The QR code as an inline SVG document.
    pub qr_svg: String,
    /// The enrollment ends then (15 minutes).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
}

/// `POST /api/v1/me/factors/totp/{enrollment_id}/confirm`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmFactorRequest {
    /// The 6-digit code: from the app, or the one sent by SMS or email.
    #[schema(value_type = String, format = Password)]
    pub code: CodeInput,
    /// A name for the factor (default "Authenticator app", or the masked number or address),
    /// at most 64 characters.
    pub label: Option<String>,
    /// Reset to a new device, number or address: the factor of the same kind this one
    /// replaces, in the same transaction.
    pub replace_factor_id: Option<String>,
}

/// A confirmed factor.
#[derive(Serialize, ToSchema)]
pub struct ConfirmFactorResponse {
    /// The new factor.
    pub factor: FactorSummary,
    /// Backup codes at the first MFA (shown once), else `null`.
    pub backup_codes: Option<Vec<String>>,
    /// Other sessions signed out.
    pub sessions_revoked: u64,
}

/// `POST /api/v1/me/backup-codes`.
#[derive(Serialize, ToSchema)]
pub struct BackupCodesResponse {
    /// 10 new codes, `XXXX-XXXX-XXXX-XXXX`; earlier codes no longer work.
    pub codes: Vec<String>,
}

/// Backup-code status.
#[derive(Debug, Serialize, ToSchema)]
pub struct BackupCodeStatus {
    /// Unused codes.
    pub remaining: u32,
    /// When the current set was generated.
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub generated_at: Option<OffsetDateTime>,
}

impl From<&MfaState> for MfaStatus {
    fn from(state: &MfaState) -> Self {
        Self {
            enabled: state.enabled(),
            factors: state.factors.iter().map(FactorSummary::from).collect(),
            backup_codes: BackupCodeStatus {
                remaining: state.backup_codes.remaining,
                generated_at: state.backup_codes.generated_at,
            },
        }
    }
}

/// The user's MFA state.
#[derive(Debug, Serialize, ToSchema)]
pub struct MfaStatus {
    /// Whether any factor is active.
    pub enabled: bool,
    /// Active factors.
    pub factors: Vec<FactorSummary>,
    /// Backup codes.
    pub backup_codes: BackupCodeStatus,
}

/// The policy that applies to the user: the strictest combination of the instance defaults
/// and every organization's policy.
#[derive(Debug, Serialize, ToSchema)]
pub struct EffectivePolicy {
    /// Whether MFA is required (for the console or client apps).
    pub mfa_required: bool,
    /// When the requirement is (or was) enforced: the end of the shortest grace period.
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub deadline: Option<OffsetDateTime>,
    /// Factor kinds that may be enrolled and satisfy the requirement.
    pub allowed_methods: Vec<String>,
    /// Whether the user may disable MFA.
    pub allow_disable: bool,
    /// Whether the requirement covers Tessera's own pages and API.
    pub console_required: bool,
    /// Whether it covers client applications.
    pub apps_required: bool,
    /// The smallest MFA age client apps accept, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_mfa_max_age_seconds: Option<u32>,
    /// The organizations (or "this server") whose policy requires MFA.
    pub required_by: Vec<String>,
}

impl From<&tessera_core::org::EffectivePolicy> for EffectivePolicy {
    fn from(policy: &tessera_core::org::EffectivePolicy) -> Self {
        Self {
            mfa_required: policy.required(),
            deadline: policy.deadline.filter(|_| policy.required()),
            allowed_methods: policy
                .allowed_methods
                .iter()
                .map(|k| k.as_str().to_owned())
                .collect(),
            allow_disable: policy.allow_disable,
            console_required: policy.console_required,
            apps_required: policy.apps_required,
            app_mfa_max_age_seconds: policy.app_mfa_max_age_seconds,
            required_by: policy.required_by.clone(),
        }
    }
}

/// An organization as the caller sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrgResponse {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// The caller's role: `owner`, `admin` or `member`.
    pub role: &'static str,
}

impl OrgResponse {
    /// The organization with the caller's role.
    pub fn new(org: &Organization, role: Role) -> Self {
        Self {
            id: org.id.to_string(),
            name: org.name.clone(),
            created_at: org.created_at,
            role: role.as_str(),
        }
    }
}

/// `POST /api/v1/orgs`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrgRequest {
    /// 1 to 100 characters.
    pub name: String,
}

/// One organization.
#[derive(Serialize, ToSchema)]
pub struct OrgEnvelope {
    /// The organization.
    pub org: OrgResponse,
}

/// The caller's organizations.
#[derive(Serialize, ToSchema)]
pub struct OrgsResponse {
    /// Oldest first.
    pub orgs: Vec<OrgResponse>,
}

/// An organization's MFA policy (API.md `OrgPolicy`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrgPolicyBody {
    /// Whether MFA is required.
    pub mfa_required: bool,
    /// Whom the requirement applies to: `owner`, `admin`, `member`.
    pub roles: Vec<String>,
    /// `console`, `apps` or `all`.
    pub scope: String,
    /// Hours from when the requirement first applies to a member until it is enforced
    /// (0 = at the next sign-in; at most 2160 = 90 days).
    pub grace_period_hours: i64,
    /// Kinds members may enroll: `totp`, `webauthn`, `sms`, `email` (at least one).
    pub allowed_methods: Vec<String>,
    /// Whether members may turn MFA off.
    pub allow_disable: bool,
    /// How recent an MFA must be for client apps, in seconds (0 = every connection; null =
    /// any age).
    #[serde(default)]
    pub app_mfa_max_age_seconds: Option<i64>,
}

impl From<&OrgPolicy> for OrgPolicyBody {
    fn from(policy: &OrgPolicy) -> Self {
        Self {
            mfa_required: policy.mfa_required,
            roles: policy.roles.iter().map(|r| r.as_str().to_owned()).collect(),
            scope: policy.scope.as_str().to_owned(),
            grace_period_hours: i64::from(policy.grace_period_hours),
            allowed_methods: policy
                .allowed_methods
                .kinds()
                .into_iter()
                .map(|k| k.as_str().to_owned())
                .collect(),
            allow_disable: policy.allow_disable,
            app_mfa_max_age_seconds: policy.app_mfa_max_age_seconds.map(i64::from),
        }
    }
}

impl OrgPolicyBody {
    /// The domain policy; the error names the field and what to fix.
    pub fn to_policy(&self) -> tessera_core::Result<OrgPolicy> {
        use tessera_core::Error;
        use tessera_core::org::MAX_GRACE_PERIOD_HOURS;
        let mut roles = Vec::new();
        for name in &self.roles {
            let role = Role::parse(name)?;
            if !roles.contains(&role) {
                roles.push(role);
            }
        }
        let grace_period_hours = u32::try_from(self.grace_period_hours)
            .ok()
            .filter(|h| *h <= MAX_GRACE_PERIOD_HOURS)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "grace_period_hours: must be 0 to {MAX_GRACE_PERIOD_HOURS} (90 days)"
                ))
            })?;
        let app_mfa_max_age_seconds = self
            .app_mfa_max_age_seconds
            .map(|age| {
                u32::try_from(age).map_err(|_| {
                    Error::invalid(format!(
                        "app_mfa_max_age_seconds: must be 0 to {} (30 days), or null",
                        tessera_core::org::MAX_APP_MFA_AGE_SECONDS
                    ))
                })
            })
            .transpose()?;
        let allowed_methods = tessera_core::factor::AllowedMethods::parse(
            self.allowed_methods.iter().map(String::as_str),
        )
        .map_err(|why| Error::invalid(format!("allowed_methods: {why}")))?;
        Ok(OrgPolicy {
            mfa_required: self.mfa_required,
            roles,
            scope: tessera_core::org::PolicyScope::parse(&self.scope)?,
            grace_period_hours,
            allowed_methods,
            allow_disable: self.allow_disable,
            app_mfa_max_age_seconds,
        })
    }
}

/// `GET /api/v1/orgs/{id}`.
#[derive(Serialize, ToSchema)]
pub struct OrgDetailResponse {
    /// The organization.
    pub org: OrgResponse,
    /// Its MFA policy.
    pub policy: OrgPolicyBody,
}

/// `PUT /api/v1/orgs/{id}/policy`.
#[derive(Serialize, ToSchema)]
pub struct OrgPolicyResponse {
    /// The policy now in force.
    pub policy: OrgPolicyBody,
}

/// One member and their compliance.
#[derive(Serialize, ToSchema)]
pub struct MemberResponse {
    /// The account's id.
    pub user_id: String,
    /// Its email.
    pub email: String,
    /// Its name.
    pub display_name: String,
    /// `owner`, `admin` or `member`.
    pub role: &'static str,
    /// Whether they have any factor.
    pub mfa_enabled: bool,
    /// Kinds of their factors.
    pub factor_kinds: Vec<String>,
    /// Whether they satisfy the organization's policy.
    pub compliant: bool,
    /// When the requirement is (or was) enforced for them, while they do not comply.
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub deadline: Option<OffsetDateTime>,
}

impl From<&MemberStatus> for MemberResponse {
    fn from(status: &MemberStatus) -> Self {
        Self {
            user_id: status.member.user.id.to_string(),
            email: status.member.user.email.to_string(),
            display_name: status.member.user.display_name.clone(),
            role: status.member.role.as_str(),
            mfa_enabled: status.mfa_enabled,
            factor_kinds: status
                .factor_kinds
                .iter()
                .map(|k| k.as_str().to_owned())
                .collect(),
            compliant: status.compliant,
            deadline: status.deadline,
        }
    }
}

/// `GET /api/v1/orgs/{id}/members`.
#[derive(Serialize, ToSchema)]
pub struct MembersResponse {
    /// By email.
    pub members: Vec<MemberResponse>,
}

/// `GET /api/v1/orgs/{id}/members` filter.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MembersQuery {
    /// `noncompliant`: only members who do not satisfy the policy.
    pub filter: Option<String>,
}

/// `POST /api/v1/orgs/{id}/members`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMemberRequest {
    /// The email of an existing account.
    pub email: String,
    /// `owner`, `admin` or `member` (default `member`).
    #[serde(default = "default_role")]
    pub role: String,
}

fn default_role() -> String {
    "member".into()
}

/// `PATCH /api/v1/orgs/{id}/members/{user_id}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeRoleRequest {
    /// `owner`, `admin` or `member`.
    pub role: String,
}

/// A reset link was sent.
#[derive(Serialize, ToSchema)]
pub struct MfaResetResponse {
    /// When the link stops working (72 hours).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
}

/// `POST /api/v1/mfa-resets/{token}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenResetRequest {
    /// The member's password.
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
}

/// A member's new role.
#[derive(Serialize, ToSchema)]
pub struct RoleResponse {
    /// The account's id.
    pub user_id: String,
    /// The role now.
    pub role: &'static str,
}

/// `GET /api/v1/me`.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeResponse {
    /// The account.
    pub user: UserResponse,
    /// Send as `X-CSRF-Token` with cookie-authenticated changes.
    pub csrf_token: String,
    /// MFA state.
    pub mfa: MfaStatus,
    /// Effective policy.
    pub policy: EffectivePolicy,
    /// The current session's re-auth window, if open.
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub reauth_until: Option<OffsetDateTime>,
}

/// `GET /api/v1/me/events` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Page size, 1–200 (default 50).
    pub limit: Option<u32>,
    /// Only events older than this event id.
    pub before: Option<i64>,
}

/// One security event.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventResponse {
    /// Event id (pass as `before` to page).
    pub id: String,
    /// Event kind.
    pub kind: String,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
    /// Client address.
    pub ip: Option<String>,
    /// User agent.
    pub user_agent: Option<String>,
    /// Who did it, when not the user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor_id: Option<String>,
    /// Details.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

impl From<&SecurityEvent> for EventResponse {
    fn from(event: &SecurityEvent) -> Self {
        Self {
            id: event.id.to_string(),
            kind: event.kind.clone(),
            at: event.at,
            ip: event.ip.clone(),
            user_agent: event.user_agent.clone(),
            actor_id: event.actor_id.map(|id| id.to_string()),
            details: event.details.clone(),
        }
    }
}

/// `GET /api/v1/me/events`.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventsResponse {
    /// Newest first.
    pub events: Vec<EventResponse>,
}

/// A request that takes no fields (an empty body or `{}`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmptyRequest {}

/// A code as a client sent it. Codes are strings (a number would lose leading zeros); a JSON
/// number is still code-shaped, so it is refused as `invalid_code` like any wrong code rather
/// than as a malformed request. Other JSON types are malformed (`invalid_request`).
pub enum CodeInput {
    /// A string.
    Text(SecretString),
    /// A JSON number: never a valid code.
    Number,
}

impl CodeInput {
    /// The code to check; a number becomes the empty string, which no code matches.
    pub fn as_code(&self) -> &str {
        use secrecy::ExposeSecret as _;
        match self {
            CodeInput::Text(text) => text.expose_secret(),
            CodeInput::Number => "",
        }
    }
}

impl<'de> Deserialize<'de> for CodeInput {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = CodeInput;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a code as a string")
            }
            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<CodeInput, E> {
                Ok(CodeInput::Text(value.into()))
            }
            fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<CodeInput, E> {
                Ok(CodeInput::Number)
            }
            fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<CodeInput, E> {
                Ok(CodeInput::Number)
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<CodeInput, E> {
                Ok(CodeInput::Number)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

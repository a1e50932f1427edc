//! Multi-factor authentication: enrolling an authenticator app, the second step of sign-in,
//! backup codes, removing factors and disabling MFA, reports of unfinished sign-ins, operator
//! resets and re-sealing secrets after a key rotation.
//!
//! Threats and the rule that answers each:
//! - **Code replay** (RFC 6238 §5.2): a TOTP code is accepted at most once — the factor's last
//!   accepted step only moves forward, in the same transaction that issues the session, and the
//!   enrollment code counts. Window T−1..T+1 (`tessera_otp::verify_totp`).
//! - **Backup-code races**: a code is consumed by one conditional `UPDATE` in the transaction
//!   that issues the session, so concurrent uses give one session.
//! - **Online guessing of the second factor**: wrong codes count per account (not per
//!   challenge, so a new sign-in does not reset them); at the limit the second step locks and
//!   even the right code is refused. The count and the check share one statement, so parallel
//!   guesses cannot get more than the limit evaluated.
//! - **Telling failures apart**: wrong, used, expired and unknown codes, challenges and
//!   enrollments are all `invalid_code`; the reason goes to the audit log.
//! - **Fail open**: a secret that does not open fails the step closed (and is logged); it never
//!   reads as "no MFA".

use super::signin::SignedIn;
use super::{Authenticated, FullSession, Services};
use crate::crypto::{Token, random_bytes};
use crate::event::{ClientInfo, EventKind, NewEvent};
use crate::factor::{
    AllowedMethods, BACKUP_CODE_COUNT, BackupCodeStatus, CHALLENGE_PURPOSE_SIGNIN, CHALLENGE_TTL,
    Challenge, ENROLLMENT_TOTP, ENROLLMENT_TTL, Factor, FactorKind, MAX_ENROLLMENT_ATTEMPTS,
    MfaMethod, ReportState, TOTP_ISSUER, TotpEnrollment, UNFINISHED_SIGNIN_AFTER,
    UNFINISHED_SIGNIN_REPORT_INTERVAL, backup_code_hash, parse_label, totp_secret_aad,
};
use crate::ids::{ChallengeId, EnrollmentId, FactorId, UserId};
use crate::notification::{Channel, FactorChange, NewOutboxMessage, Notification};
use crate::session::{REAUTH_WINDOW, Session};
use crate::store::{
    PassedTotpStep, SealedSecret, SecondStepContext, SecretOwner, StoreTx, TotpStepOutcome,
};
use crate::throttle::{MAX_FAILED_SECOND_FACTOR_ATTEMPTS, SECOND_FACTOR_LOCK};
use crate::user::User;
use crate::{Error, Result};
use serde_json::json;
use tessera_otp::{BACKUP_CODE_BYTES, BackupCode, OtpCode, OtpauthUri, TOTP_SECRET_BYTES};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use zeroize::Zeroizing;

/// The longest challenge token or code looked at; longer input is refused unread.
const MAX_CODE_INPUT_BYTES: usize = 256;
/// Sealed secrets re-sealed per transaction by [`Services::reseal_secrets`].
const RESEAL_BATCH: u32 = 200;
/// Unfinished sign-ins looked at per housekeeping pass.
const REPORT_BATCH: u32 = 100;

/// Instance-wide MFA settings.
#[derive(Debug, Clone, Copy)]
pub struct MfaSettings {
    /// Whether users may remove their last factor or disable MFA (`mfa.allow_disable`).
    pub allow_disable: bool,
    /// Which kinds of factor may be enrolled (`mfa.allowed_methods`).
    pub allowed_methods: AllowedMethods,
    /// Whether every account must use MFA (`mfa.required`).
    pub required: bool,
    /// The grace period of `required`, in hours (`mfa.grace_period_hours`).
    pub grace_period_hours: u32,
}

impl Default for MfaSettings {
    fn default() -> Self {
        Self {
            allow_disable: true,
            allowed_methods: AllowedMethods::ALL,
            required: false,
            grace_period_hours: 0,
        }
    }
}

impl MfaSettings {
    /// The instance defaults as a policy that binds every account, for
    /// [`crate::org::EffectivePolicy::fold`].
    pub fn as_policy(&self) -> crate::org::OrgPolicy {
        crate::org::OrgPolicy {
            mfa_required: self.required,
            roles: crate::org::Role::ALL.to_vec(),
            scope: crate::org::PolicyScope::All,
            grace_period_hours: self.grace_period_hours,
            allowed_methods: self.allowed_methods,
            allow_disable: self.allow_disable,
            app_mfa_max_age_seconds: None,
        }
    }
}

/// What the password step of sign-in led to.
#[derive(Debug)]
pub enum PasswordOutcome {
    /// No second factor is owed: a full session.
    SignedIn(SignedIn),
    /// Policy requires MFA and the grace period is over: a restricted session that may only
    /// read the account, enroll an allowed factor and sign out.
    EnrollmentRequired {
        /// The restricted session.
        signed_in: SignedIn,
        /// When the requirement was enforced.
        deadline: Option<OffsetDateTime>,
    },
    /// The user has MFA: a challenge for the second step.
    MfaRequired(MfaChallenge),
}

/// A sign-in challenge handed to the client.
#[derive(Debug)]
pub struct MfaChallenge {
    /// The token that opens the second step (and nothing else); shown once.
    pub token: Token,
    /// The stored challenge.
    pub challenge: Challenge,
    /// The user's factors, preferred first.
    pub factors: Vec<Factor>,
    /// Unused backup codes.
    pub backup_codes_remaining: u32,
}

/// A started TOTP enrollment: what the user scans or types.
pub struct StartedTotpEnrollment {
    /// The stored enrollment.
    pub enrollment: TotpEnrollment,
    /// The secret, RFC 4648 base32 without padding.
    pub secret_base32: Zeroizing<String>,
    /// The `otpauth://` URI (the QR code's content).
    pub otpauth_uri: Zeroizing<String>,
}

impl std::fmt::Debug for StartedTotpEnrollment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartedTotpEnrollment")
            .field("enrollment", &self.enrollment)
            .finish_non_exhaustive()
    }
}

/// A confirmed factor.
#[derive(Debug)]
pub struct ConfirmedFactor {
    /// The new factor.
    pub factor: Factor,
    /// Backup codes, when this was the user's first MFA and they had none (shown once).
    pub backup_codes: Option<Vec<BackupCode>>,
    /// How many other sessions were signed out.
    pub sessions_revoked: u64,
}

/// The proof offered at the second step.
#[derive(Debug)]
pub enum SecondFactorProof<'a> {
    /// A code from an authenticator app, optionally for one named factor.
    Totp {
        /// The factor the client names (any TOTP factor of the user when `None`).
        factor_id: Option<&'a str>,
        /// The code as typed.
        code: &'a str,
    },
    /// A backup code as typed.
    BackupCode(&'a str),
    /// A code sent by SMS or email.
    Code {
        /// [`FactorKind::Sms`] or [`FactorKind::Email`].
        kind: FactorKind,
        /// The factor the code was sent to (any of that kind when `None`).
        factor_id: Option<&'a str>,
        /// The code as typed.
        code: &'a str,
    },
}

/// The user's MFA state.
#[derive(Debug, Clone)]
pub struct MfaState {
    /// Active factors, preferred first.
    pub factors: Vec<Factor>,
    /// Backup codes.
    pub backup_codes: BackupCodeStatus,
}

impl MfaState {
    /// Whether any factor is active.
    pub fn enabled(&self) -> bool {
        !self.factors.is_empty()
    }
}

/// What an operator reset removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MfaReset {
    /// Factors removed.
    pub factors: u64,
    /// Backup codes removed.
    pub backup_codes: u64,
}

/// How a factor is named in emails and pages: its label, with the masked destination of an
/// SMS or email factor when the label does not already show it.
pub fn factor_display_label(factor: &Factor) -> String {
    match factor.masked_destination() {
        Some(masked) if factor.label != masked => format!("{} ({masked})", factor.label),
        _ => factor.label.clone(),
    }
}

pub(super) fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

fn preferred_first(mut factors: Vec<Factor>) -> Vec<Factor> {
    // Stable: the oldest comes first among equals.
    factors.sort_by_key(|f| !f.preferred);
    factors
}

impl Services {
    /// The user's factors (preferred first) and backup-code status.
    pub async fn mfa_state(&self, user_id: UserId) -> Result<MfaState> {
        let factors = self.store.factors_of(user_id).await?;
        let backup_codes = self.store.backup_code_status(user_id).await?;
        Ok(MfaState {
            factors: preferred_first(factors),
            backup_codes,
        })
    }

    /// Refuses sensitive changes unless the session's re-auth window is open.
    pub(super) fn require_reauth(&self, auth: &Authenticated) -> Result<()> {
        if auth.session.reauth_open(self.clock.now()) {
            Ok(())
        } else {
            Err(Error::ReauthRequired)
        }
    }

    /// After a right password: a challenge if the user has a factor their policy allows; a
    /// restricted session that may only enroll if the policy requires MFA of them and its
    /// grace period is over; else a full session. The one place that decides what a sign-in
    /// still owes. Factors of kinds the policy no longer allows count as none.
    /// `mfa` and `policy` are read before `tx` began (reads never wait on the open
    /// transaction).
    pub(super) async fn after_password(
        &self,
        tx: &mut dyn StoreTx,
        user: &User,
        mut mfa: MfaState,
        policy: &crate::org::EffectivePolicy,
        client: &ClientInfo,
        now: OffsetDateTime,
    ) -> Result<AfterPassword> {
        let has_allowed = mfa.factors.iter().any(|f| policy.allows(f.kind));
        if !has_allowed && policy.required() && policy.console_enforced(now) {
            let (mut session, token, mut event) = self.new_session(
                user,
                vec!["pwd".into()],
                None,
                Some(now + REAUTH_WINDOW),
                client,
                now,
            )?;
            session.state = crate::session::SessionState::EnrollmentOnly;
            event.details["restricted"] = json!("mfa_enrollment_required");
            tx.insert_session(&session).await?;
            tx.insert_event(&event).await?;
            return Ok(AfterPassword::EnrollmentRequired(session, token));
        }
        mfa.factors = usable_factors(mfa.factors, &policy.allowed_methods);
        if !mfa.enabled() {
            let (session, token) = self
                .issue_session(
                    tx,
                    user,
                    vec!["pwd".into()],
                    None,
                    Some(now + REAUTH_WINDOW),
                    client,
                    now,
                )
                .await?;
            return Ok(AfterPassword::Session(session, token));
        }
        let token = Token::generate()?;
        let challenge = Challenge {
            id: ChallengeId::new(),
            token_hash: token.hash(),
            user_id: user.id,
            purpose: CHALLENGE_PURPOSE_SIGNIN.into(),
            created_at: now,
            expires_at: now + CHALLENGE_TTL,
            completed_at: None,
            ip: client.ip.clone(),
            user_agent: client.user_agent.clone(),
        };
        tx.insert_challenge(&challenge).await?;
        tx.insert_event(&NewEvent {
            user_id: user.id,
            kind: EventKind::SigninMfaPending,
            at: now,
            client: client.clone(),
            actor_id: None,
            details: json!({ "challenge_id": challenge.id.to_string() }),
        })
        .await?;
        Ok(AfterPassword::Challenge(MfaChallenge {
            token,
            challenge,
            factors: mfa.factors,
            backup_codes_remaining: mfa.backup_codes.remaining,
        }))
    }

    /// Whether `token` is a live sign-in challenge (so routes other than the second step can
    /// answer `mfa_required` rather than `unauthenticated`).
    pub(super) async fn is_open_challenge(&self, token: &Token) -> Result<bool> {
        let challenge = self.store.challenge_by_token_hash(&token.hash()).await?;
        Ok(challenge.is_some_and(|c| c.is_open(self.clock.now())))
    }

    /// The MFA state of the user whose open sign-in challenge `challenge_token` is (what the
    /// second-step page lists); `invalid_code` for anything else.
    pub async fn pending_second_step(&self, challenge_token: &str) -> Result<MfaState> {
        let token = Token::from_client(bounded(challenge_token)?);
        let Some(challenge) = self
            .store
            .challenge_by_token_hash(&token.hash())
            .await?
            .filter(|c| c.is_open(self.clock.now()))
        else {
            return Err(Error::InvalidCode);
        };
        let mut state = self.mfa_state(challenge.user_id).await?;
        let allowed = self.allowed_kinds(challenge.user_id).await?;
        state.factors = usable_factors(std::mem::take(&mut state.factors), &allowed);
        Ok(state)
    }

    /// "Skip for now" after enabling MFA: deletes the backup codes just shown, so the user has
    /// none until they generate a set from Settings.
    pub async fn discard_backup_codes(&self, auth: &FullSession, client: ClientInfo) -> Result<()> {
        self.require_reauth(auth)?;
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        tx.lock_user_mfa(auth.user.id).await?;
        let removed = tx.delete_backup_codes(auth.user.id).await?;
        tx.insert_event(&NewEvent {
            user_id: auth.user.id,
            kind: EventKind::BackupCodesRemoved,
            at: now,
            client,
            actor_id: None,
            details: json!({ "removed": removed }),
        })
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Starts a TOTP enrollment: a new 160-bit secret, sealed, stored for 15 minutes.
    pub async fn start_totp_enrollment(
        &self,
        auth: &Authenticated,
    ) -> Result<StartedTotpEnrollment> {
        self.require_method_allowed(auth.user.id, FactorKind::Totp)
            .await?;
        self.require_reauth(auth)?;
        let now = self.clock.now();
        let secret = Zeroizing::new(random_bytes::<TOTP_SECRET_BYTES>()?);
        let factor_id = FactorId::new();
        let ring = self.key_ring();
        let sealed = ring.seal(secret.as_slice(), &totp_secret_aad(auth.user.id, factor_id))?;
        let enrollment = TotpEnrollment {
            id: EnrollmentId::new(),
            user_id: auth.user.id,
            factor_id,
            secret_sealed: sealed,
            key_id: ring.primary_id(),
            attempts: 0,
            created_at: now,
            expires_at: now + ENROLLMENT_TTL,
        };
        let mut tx = self.store.begin().await?;
        tx.insert_totp_enrollment(&enrollment).await?;
        tx.commit().await?;
        Ok(self.started(auth, enrollment, secret.as_slice()))
    }

    /// `403 policy_forbids` unless the user's effective policy (the instance's
    /// `mfa.allowed_methods` and every organization's) allows enrolling `kind`.
    pub(super) async fn require_method_allowed(
        &self,
        user_id: UserId,
        kind: FactorKind,
    ) -> Result<()> {
        let policy = self.effective_policy(user_id).await?;
        if policy.allows(kind) {
            return Ok(());
        }
        let names: Vec<&str> = policy.allowed_methods.iter().map(|k| k.as_str()).collect();
        let by = if policy.allowed_methods.len() == crate::factor::ALL_FACTOR_KINDS.len() {
            "this server".to_owned()
        } else {
            "your organization's policy or this server".to_owned()
        };
        Err(Error::PolicyForbids(format!(
            "{by} does not allow {} factors; allowed: {}",
            kind.as_str(),
            if names.is_empty() {
                "none (your organizations' policies allow no common method: ask an admin)"
                    .to_owned()
            } else {
                names.join(", ")
            }
        )))
    }

    /// Shows an unfinished enrollment again (after a wrong code), while it lasts.
    pub async fn resume_totp_enrollment(
        &self,
        auth: &Authenticated,
        enrollment_id: &str,
    ) -> Result<StartedTotpEnrollment> {
        let id: EnrollmentId = enrollment_id.parse().map_err(|_| Error::InvalidCode)?;
        let now = self.clock.now();
        let Some(enrollment) = self
            .store
            .totp_enrollment(auth.user.id, id)
            .await?
            .filter(|e| now < e.expires_at && e.attempts < MAX_ENROLLMENT_ATTEMPTS)
        else {
            return Err(Error::InvalidCode);
        };
        let secret = self.open_secret(
            auth.user.id,
            enrollment.factor_id,
            &enrollment.secret_sealed,
        )?;
        Ok(self.started(auth, enrollment, &secret))
    }

    fn started(
        &self,
        auth: &Authenticated,
        enrollment: TotpEnrollment,
        secret: &[u8],
    ) -> StartedTotpEnrollment {
        let uri = OtpauthUri {
            issuer: TOTP_ISSUER.into(),
            account: auth.user.email.to_string(),
            secret: secret.to_vec(),
            params: ENROLLMENT_TOTP,
        };
        StartedTotpEnrollment {
            enrollment,
            secret_base32: Zeroizing::new(tessera_otp::encode_secret(secret)),
            otpauth_uri: Zeroizing::new(uri.to_uri()),
        }
    }

    /// Confirms a TOTP enrollment with a code from the app. On success the factor is active
    /// (its last step is the confirming code's, so that code cannot sign in), every other
    /// session is signed out, the user is emailed, and — at the first MFA — backup codes are
    /// made. With `replace` the named TOTP factor is removed in the same transaction.
    pub async fn confirm_totp_enrollment(
        &self,
        auth: &Authenticated,
        enrollment_id: &str,
        code: &str,
        label: Option<&str>,
        replace: Option<&str>,
        client: ClientInfo,
    ) -> Result<ConfirmedFactor> {
        // Checked again here: the setting may have changed since the enrollment started.
        self.require_method_allowed(auth.user.id, FactorKind::Totp)
            .await?;
        self.require_reauth(auth)?;
        let label = parse_label(label, "Authenticator app")?;
        let now = self.clock.now();
        let enrollment_id: EnrollmentId = enrollment_id.parse().map_err(|_| Error::InvalidCode)?;
        let replace: Option<FactorId> = replace
            .map(|id| id.parse().map_err(|_| Error::NotFound))
            .transpose()?;
        let code = OtpCode::parse(bounded(code)?, ENROLLMENT_TOTP.digits)
            .map_err(|_| Error::InvalidCode)?;
        let Some(enrollment) = self
            .store
            .totp_enrollment(auth.user.id, enrollment_id)
            .await?
            .filter(|e| now < e.expires_at && e.attempts < MAX_ENROLLMENT_ATTEMPTS)
        else {
            return Err(Error::InvalidCode);
        };
        let secret = self.open_secret(
            auth.user.id,
            enrollment.factor_id,
            &enrollment.secret_sealed,
        )?;
        let Some(step) = tessera_otp::verify_totp(
            secret.as_slice(),
            &code,
            now.unix_timestamp(),
            ENROLLMENT_TOTP,
        ) else {
            let mut tx = self.store.begin().await?;
            tx.count_enrollment_attempt(enrollment.id, MAX_ENROLLMENT_ATTEMPTS)
                .await?;
            tx.commit().await?;
            tracing::info!(user_id = %auth.user.id, "wrong enrollment code");
            return Err(Error::InvalidCode);
        };

        // Every decision below is made from reads inside the transaction, after the user's
        // MFA lock: concurrent confirmations (several tabs) see each other's result.
        let mut tx = self.store.begin().await?;
        tx.lock_user_mfa(auth.user.id).await?;
        if tx
            .take_totp_enrollment(auth.user.id, enrollment.id, now)
            .await?
            .is_none()
        {
            return Err(Error::InvalidCode);
        }
        let factor = Factor {
            id: enrollment.factor_id,
            user_id: auth.user.id,
            kind: FactorKind::Totp,
            label,
            secret_sealed: Some(enrollment.secret_sealed.clone()),
            key_id: Some(enrollment.key_id),
            last_step: Some(step),
            preferred: false,
            created_at: now,
            last_used_at: None,
            destination: None,
        };
        let confirmed = self
            .activate_factor(tx, auth, factor, replace, client, now)
            .await?;
        tracing::info!(user_id = %auth.user.id, factor_id = %confirmed.factor.id, "totp factor confirmed");
        Ok(confirmed)
    }

    /// Adds a verified `factor` in `tx` (which holds the user's MFA lock) and commits: with
    /// `replace`, the named factor of the same kind is removed in the same transaction; at the
    /// first MFA backup codes are made and the factor is preferred; every other session is
    /// signed out; the events are recorded and the user is emailed.
    pub(super) async fn activate_factor(
        &self,
        mut tx: Box<dyn StoreTx>,
        auth: &Authenticated,
        mut factor: Factor,
        replace: Option<FactorId>,
        client: ClientInfo,
        now: OffsetDateTime,
    ) -> Result<ConfirmedFactor> {
        // A restricted session opened by a reset link: the old factors and backup codes go
        // now, in this transaction, and the new factor is the first again.
        let completed_reset = auth.session.state == crate::session::SessionState::EnrollmentOnly
            && self
                .complete_reset_in(tx.as_mut(), &auth.user, auth.session.id, &client, now)
                .await?;
        let existing = tx.factors_of_user(auth.user.id).await?;
        let replaced = match replace {
            Some(id) => match existing
                .iter()
                .find(|f| f.id == id && f.kind == factor.kind)
            {
                Some(factor) => Some(factor),
                None => return Err(Error::NotFound),
            },
            None => None,
        };
        let first_mfa = existing.is_empty();
        let backup_codes = if first_mfa && tx.unused_backup_codes(auth.user.id).await? == 0 {
            Some(generate_backup_codes()?)
        } else {
            None
        };
        if let Some(replaced) = replaced
            && !tx.delete_factor(auth.user.id, replaced.id).await?
        {
            return Err(Error::NotFound);
        }
        factor.preferred = first_mfa || replaced.is_some_and(|f| f.preferred);
        tx.insert_factor(&factor).await?;
        tx.ensure_preferred_factor(auth.user.id).await?;
        if let Some(codes) = &backup_codes {
            self.store_backup_codes(tx.as_mut(), auth.user.id, codes, now)
                .await?;
        }
        // Setting up a factor in a session that signed in with a backup code lifts the
        // backup-code lock of that session; in a restricted session (policy required MFA) it
        // makes the same session a full one whose amr names the new factor.
        let method = MfaMethod::for_code_factor(factor.kind).unwrap_or(MfaMethod::Totp);
        if auth.session.state == crate::session::SessionState::EnrollmentOnly {
            tx.set_session_mfa(auth.session.id, method, &method.amr_with_password())
                .await?;
        } else if auth.session.mfa_method == Some(MfaMethod::BackupCode) {
            tx.set_session_mfa(auth.session.id, method, &auth.session.amr)
                .await?;
        }
        let sessions_revoked = tx
            .delete_sessions_except(auth.user.id, Some(auth.session.id))
            .await?;
        let (kind, change) = match (replace, first_mfa) {
            (Some(_), _) => (EventKind::FactorReplaced, FactorChange::Replaced),
            (None, true) => (EventKind::MfaEnabled, FactorChange::MfaEnabled),
            (None, false) => (EventKind::FactorAdded, FactorChange::Added),
        };
        let event = |kind, details| NewEvent {
            user_id: auth.user.id,
            kind,
            at: now,
            client: client.clone(),
            actor_id: None,
            details,
        };
        tx.insert_event(&event(
            kind,
            json!({
                "factor_id": factor.id.to_string(),
                "kind": factor.kind.as_str(),
                "replaced_factor_id": replace.map(|id| id.to_string()),
                "sessions_revoked": sessions_revoked,
                "after_mfa_reset": completed_reset,
            }),
        ))
        .await?;
        if kind == EventKind::MfaEnabled {
            tx.insert_event(&event(
                EventKind::FactorAdded,
                json!({ "factor_id": factor.id.to_string(), "kind": factor.kind.as_str() }),
            ))
            .await?;
        }
        if backup_codes.is_some() {
            tx.insert_event(&event(
                EventKind::BackupCodesGenerated,
                json!({ "count": BACKUP_CODE_COUNT }),
            ))
            .await?;
        }
        tx.enqueue(&self.email_to(
            &auth.user,
            Notification::FactorChanged {
                display_name: auth.user.display_name.clone(),
                change,
                label: factor_display_label(&factor),
                at: rfc3339(now),
                ip: client.ip.clone(),
                sessions_revoked,
                kind: Some(factor.kind.as_str().to_owned()),
            },
            now,
        ))
        .await?;
        tx.commit().await?;
        Ok(ConfirmedFactor {
            factor,
            backup_codes,
            sessions_revoked,
        })
    }

    /// The second step of sign-in (`POST /api/v1/sessions/mfa`): a right, fresh code for an
    /// open challenge gives a full session with a new token.
    pub async fn complete_second_step(
        &self,
        challenge_token: &str,
        proof: SecondFactorProof<'_>,
        client: ClientInfo,
    ) -> Result<SignedIn> {
        let token = Token::from_client(bounded(challenge_token)?);
        let now = self.clock.now();
        let Some(context) = self
            .store
            .second_step_context(&token.hash())
            .await?
            .filter(|c| c.challenge.is_open(now))
        else {
            return Err(Error::InvalidCode);
        };
        if let Some(retry_after_secs) = context.throttle.retry_after(now) {
            return Err(Error::RateLimited { retry_after_secs });
        }
        // Factors of kinds the policy no longer allows do not pass the second step (while the
        // user has an allowed one; see `usable_factors`).
        let allowed = self.allowed_kinds(context.user.id).await?;
        let mut context = context;
        context.factors = usable_factors(std::mem::take(&mut context.factors), &allowed);
        let user = &context.user;
        let outcome = match proof {
            SecondFactorProof::Totp { factor_id, code } => {
                self.second_step_totp(&context, factor_id, code, &client, now)
                    .await?
            }
            SecondFactorProof::BackupCode(code) => {
                self.second_step_backup_code(&context.challenge, user, code, &client, now)
                    .await?
            }
            SecondFactorProof::Code {
                kind,
                factor_id,
                code,
            } => {
                self.second_step_code(&context, kind, factor_id, code, &client, now)
                    .await?
            }
        };
        match outcome {
            Ok(signed_in) => Ok(signed_in),
            Err(reason) => Err(self
                .record_second_factor_failure(user.id, reason, &client, now)
                .await),
        }
    }

    /// The TOTP second step: the code is checked against the user's authenticator apps here,
    /// then the store commits the step advance, the challenge and the session in one call
    /// ([`Store::commit_totp_second_step`](crate::store::Store::commit_totp_second_step)).
    async fn second_step_totp(
        &self,
        context: &SecondStepContext,
        factor_id: Option<&str>,
        code: &str,
        client: &ClientInfo,
        now: OffsetDateTime,
    ) -> Result<Result<SignedIn, &'static str>> {
        let Ok(code) = OtpCode::parse(bounded(code)?, ENROLLMENT_TOTP.digits) else {
            return Err(Error::InvalidCode);
        };
        let wanted: Option<FactorId> = match factor_id {
            Some(id) => match id.parse() {
                Ok(id) => Some(id),
                Err(_) => return Ok(Err("unknown_factor")),
            },
            None => None,
        };
        let user = &context.user;
        let mut matched = None;
        for factor in context
            .factors
            .iter()
            .filter(|f| f.kind == FactorKind::Totp && wanted.is_none_or(|id| id == f.id))
        {
            let Some(sealed) = &factor.secret_sealed else {
                return Err(Error::Internal(format!(
                    "totp factor {} has no secret",
                    factor.id
                )));
            };
            let secret = self.open_secret(user.id, factor.id, sealed)?;
            if let Some(step) = tessera_otp::verify_totp(
                secret.as_slice(),
                &code,
                now.unix_timestamp(),
                ENROLLMENT_TOTP,
            ) {
                matched = Some((factor, step));
                break;
            }
        }
        let Some((factor, step)) = matched else {
            return Ok(Err("wrong_code"));
        };
        let method = MfaMethod::Totp;
        let (session, token, event) = self.new_session(
            user,
            method.amr_with_password(),
            Some(method),
            Some(context.challenge.created_at + REAUTH_WINDOW),
            client,
            now,
        )?;
        let passed = PassedTotpStep {
            challenge_id: context.challenge.id,
            factor_id: factor.id,
            step,
            session,
            event,
            now,
        };
        match self.store.commit_totp_second_step(&passed).await? {
            TotpStepOutcome::Committed => {}
            TotpStepOutcome::Locked { until } => {
                return Err(Error::RateLimited {
                    retry_after_secs: retry_after_secs(until, now),
                });
            }
            TotpStepOutcome::Replayed => return Ok(Err("replayed_code")),
            // Another request completed it first: no session, and not a guess to count.
            TotpStepOutcome::ChallengeClosed => return Err(Error::InvalidCode),
        }
        let session = passed.session;
        tracing::info!(user_id = %user.id, session_id = %session.id, method = method.as_str(), "second step passed");
        Ok(Ok(SignedIn {
            session,
            token,
            user: user.clone(),
        }))
    }

    async fn second_step_backup_code(
        &self,
        challenge: &Challenge,
        user: &User,
        code: &str,
        client: &ClientInfo,
        now: OffsetDateTime,
    ) -> Result<Result<SignedIn, &'static str>> {
        let Ok(code) = BackupCode::parse(bounded(code)?) else {
            return Err(Error::InvalidCode);
        };
        let hash = backup_code_hash(&self.pepper, user.id, &code);
        let mut tx = self.store.begin().await?;
        self.clear_failures_unless_locked(tx.as_mut(), user.id, now)
            .await?;
        let Some(remaining) = tx.consume_backup_code(user.id, &hash, now).await? else {
            return Ok(Err("wrong_backup_code"));
        };
        tx.insert_event(&NewEvent {
            user_id: user.id,
            kind: EventKind::BackupCodeUsed,
            at: now,
            client: client.clone(),
            actor_id: None,
            details: json!({ "remaining": remaining }),
        })
        .await?;
        tx.enqueue(&self.email_to(
            user,
            Notification::BackupCodeUsed {
                display_name: user.display_name.clone(),
                at: rfc3339(now),
                ip: client.ip.clone(),
                remaining,
            },
            now,
        ))
        .await?;
        self.finish_second_step(tx, challenge, user, MfaMethod::BackupCode, client, now)
            .await
    }

    /// Completes the challenge and issues the session in `tx`, then commits.
    pub(super) async fn finish_second_step(
        &self,
        mut tx: Box<dyn StoreTx>,
        challenge: &Challenge,
        user: &User,
        method: MfaMethod,
        client: &ClientInfo,
        now: OffsetDateTime,
    ) -> Result<Result<SignedIn, &'static str>> {
        if !tx.complete_challenge(challenge.id, now).await? {
            // Another request completed it first: no session, and not a guess to count.
            return Err(Error::InvalidCode);
        }
        let (session, token) = self
            .issue_session(
                tx.as_mut(),
                user,
                method.amr_with_password(),
                Some(method),
                Some(challenge.created_at + REAUTH_WINDOW),
                client,
                now,
            )
            .await?;
        tx.commit().await?;
        tracing::info!(user_id = %user.id, session_id = %session.id, method = method.as_str(), "second step passed");
        Ok(Ok(SignedIn {
            session,
            token,
            user: user.clone(),
        }))
    }

    /// Clears the account's wrong-code count in `tx`; if the second step is locked (a
    /// parallel request just locked it), refuses — the transaction is dropped, so nothing
    /// changes.
    pub(super) async fn clear_failures_unless_locked(
        &self,
        tx: &mut dyn StoreTx,
        user_id: UserId,
        now: OffsetDateTime,
    ) -> Result<()> {
        if let Some(until) = tx.clear_second_factor_failures(user_id).await?
            && now < until
        {
            return Err(Error::RateLimited {
                retry_after_secs: retry_after_secs(until, now),
            });
        }
        Ok(())
    }

    /// Counts a wrong second-factor code and returns the error to answer with: `invalid_code`,
    /// or `rate_limited` once the account's second step is locked.
    pub(super) async fn record_second_factor_failure(
        &self,
        user_id: UserId,
        reason: &'static str,
        client: &ClientInfo,
        now: OffsetDateTime,
    ) -> Error {
        match self
            .try_record_second_factor_failure(user_id, reason, client, now)
            .await
        {
            Ok(error) | Err(error) => error,
        }
    }

    async fn try_record_second_factor_failure(
        &self,
        user_id: UserId,
        reason: &'static str,
        client: &ClientInfo,
        now: OffsetDateTime,
    ) -> Result<Error> {
        let mut tx = self.store.begin().await?;
        let Some(in_a_row) = tx
            .record_second_factor_failure(
                user_id,
                now,
                MAX_FAILED_SECOND_FACTOR_ATTEMPTS,
                now + SECOND_FACTOR_LOCK,
            )
            .await?
        else {
            drop(tx);
            let throttle = self.store.second_factor_throttle(user_id).await?;
            return Ok(Error::RateLimited {
                retry_after_secs: throttle.retry_after(now).unwrap_or(1),
            });
        };
        let event = |kind, details| NewEvent {
            user_id,
            kind,
            at: now,
            client: client.clone(),
            actor_id: None,
            details,
        };
        tx.insert_event(&event(
            EventKind::SecondFactorFailed,
            json!({ "reason": reason, "failures_in_a_row": in_a_row }),
        ))
        .await?;
        if in_a_row >= MAX_FAILED_SECOND_FACTOR_ATTEMPTS {
            tx.insert_event(&event(
                EventKind::SecondFactorLocked,
                json!({ "locked_for_seconds": SECOND_FACTOR_LOCK.whole_seconds() }),
            ))
            .await?;
            tracing::warn!(%user_id, "second factor locked after {in_a_row} wrong codes");
        }
        tx.commit().await?;
        Ok(Error::InvalidCode)
    }

    /// Replaces every backup code of the user with 10 new ones (shown once) and emails them.
    /// Refused to a session that signed in with a backup code (`backup_codes_locked`).
    pub async fn regenerate_backup_codes(
        &self,
        auth: &FullSession,
        client: ClientInfo,
    ) -> Result<Vec<BackupCode>> {
        self.require_reauth(auth)?;
        if auth.session.mfa_method == Some(MfaMethod::BackupCode) {
            return Err(Error::BackupCodesLocked);
        }
        if self.store.factors_of(auth.user.id).await?.is_empty() {
            return Err(Error::invalid(
                "backup codes need multi-factor authentication: set up an authenticator app first",
            ));
        }
        let now = self.clock.now();
        let codes = generate_backup_codes()?;
        let mut tx = self.store.begin().await?;
        tx.lock_user_mfa(auth.user.id).await?;
        self.store_backup_codes(tx.as_mut(), auth.user.id, &codes, now)
            .await?;
        tx.insert_event(&NewEvent {
            user_id: auth.user.id,
            kind: EventKind::BackupCodesGenerated,
            at: now,
            client: client.clone(),
            actor_id: None,
            details: json!({ "count": codes.len(), "replaced_earlier": true }),
        })
        .await?;
        tx.enqueue(&self.email_to(
            &auth.user,
            Notification::BackupCodesRegenerated {
                display_name: auth.user.display_name.clone(),
                at: rfc3339(now),
                ip: client.ip,
            },
            now,
        ))
        .await?;
        tx.commit().await?;
        Ok(codes)
    }

    async fn store_backup_codes(
        &self,
        tx: &mut dyn StoreTx,
        user_id: UserId,
        codes: &[BackupCode],
        now: OffsetDateTime,
    ) -> Result<()> {
        let hashes: Vec<[u8; 32]> = codes
            .iter()
            .map(|code| backup_code_hash(&self.pepper, user_id, code))
            .collect();
        tx.replace_backup_codes(user_id, &hashes, now).await?;
        Ok(())
    }

    /// Removes one factor. Removing the last one turns MFA off (and removes the backup
    /// codes), which `mfa.allow_disable = false` forbids. Decided under the user's MFA lock,
    /// so concurrent removals cannot together remove every factor.
    pub async fn remove_factor(
        &self,
        auth: &FullSession,
        factor_id: &str,
        client: ClientInfo,
    ) -> Result<()> {
        self.require_reauth(auth)?;
        let factor_id: FactorId = factor_id.parse().map_err(|_| Error::NotFound)?;
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        tx.lock_user_mfa(auth.user.id).await?;
        let factors = tx.factors_of_user(auth.user.id).await?;
        let Some(factor) = factors.iter().find(|f| f.id == factor_id) else {
            return Err(Error::NotFound);
        };
        if factors.len() == 1 {
            return self.disable_mfa_in(tx, auth, client, now).await;
        }
        // Removing the last factor the policy allows leaves a user who must have MFA with none.
        let policy = self.effective_policy(auth.user.id).await?;
        let others_allowed = factors
            .iter()
            .any(|f| f.id != factor_id && policy.allows(f.kind));
        if !policy.allow_disable && policy.allows(factor.kind) && !others_allowed {
            return Err(disable_forbidden(&policy));
        }
        if !tx.delete_factor(auth.user.id, factor_id).await? {
            return Err(Error::NotFound);
        }
        tx.ensure_preferred_factor(auth.user.id).await?;
        tx.insert_event(&NewEvent {
            user_id: auth.user.id,
            kind: EventKind::FactorRemoved,
            at: now,
            client: client.clone(),
            actor_id: None,
            details: json!({ "factor_id": factor_id.to_string(), "kind": factor.kind.as_str() }),
        })
        .await?;
        tx.enqueue(&self.email_to(
            &auth.user,
            Notification::FactorChanged {
                display_name: auth.user.display_name.clone(),
                change: FactorChange::Removed,
                label: factor_display_label(factor),
                at: rfc3339(now),
                ip: client.ip,
                sessions_revoked: 0,
                kind: Some(factor.kind.as_str().to_owned()),
            },
            now,
        ))
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Turns MFA off: removes every factor and backup code, emails the user. Forbidden when
    /// `mfa.allow_disable` is false.
    pub async fn disable_mfa(&self, auth: &FullSession, client: ClientInfo) -> Result<()> {
        self.require_reauth(auth)?;
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        tx.lock_user_mfa(auth.user.id).await?;
        self.disable_mfa_in(tx, auth, client, now).await
    }

    /// Disables MFA in `tx` (which holds the user's MFA lock) and commits.
    async fn disable_mfa_in(
        &self,
        mut tx: Box<dyn StoreTx>,
        auth: &FullSession,
        client: ClientInfo,
        now: OffsetDateTime,
    ) -> Result<()> {
        let policy = self.effective_policy(auth.user.id).await?;
        if !policy.allow_disable {
            return Err(disable_forbidden(&policy));
        }
        let factors = tx.delete_factors(auth.user.id).await?;
        if factors == 0 {
            return Err(Error::invalid("multi-factor authentication is not on"));
        }
        let backup_codes = tx.delete_backup_codes(auth.user.id).await?;
        tx.insert_event(&NewEvent {
            user_id: auth.user.id,
            kind: EventKind::MfaDisabled,
            at: now,
            client: client.clone(),
            actor_id: None,
            details: json!({ "factors_removed": factors, "backup_codes_removed": backup_codes }),
        })
        .await?;
        tx.enqueue(&self.email_to(
            &auth.user,
            Notification::MfaDisabled {
                display_name: auth.user.display_name.clone(),
                at: rfc3339(now),
                ip: client.ip,
                by_operator: false,
            },
            now,
        ))
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// `tessera admin reset-mfa --email E`: removes every factor and backup code of the
    /// account, records the event and emails the user.
    pub async fn operator_reset_mfa(&self, email: &str) -> Result<MfaReset> {
        let email = crate::email::Email::parse(email)?;
        let Some(credentials) = self.store.credentials_by_email(&email.normalized()).await? else {
            return Err(Error::NotFound);
        };
        let user = credentials.user;
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        tx.lock_user_mfa(user.id).await?;
        let factors = tx.delete_factors(user.id).await?;
        let backup_codes = tx.delete_backup_codes(user.id).await?;
        tx.insert_event(&NewEvent {
            user_id: user.id,
            kind: EventKind::MfaResetCompleted,
            at: now,
            client: ClientInfo::default(),
            actor_id: None,
            details: json!({
                "by": "operator",
                "factors_removed": factors,
                "backup_codes_removed": backup_codes,
            }),
        })
        .await?;
        tx.enqueue(&self.email_to(
            &user,
            Notification::MfaDisabled {
                display_name: user.display_name.clone(),
                at: rfc3339(now),
                ip: None,
                by_operator: true,
            },
            now,
        ))
        .await?;
        tx.commit().await?;
        Ok(MfaReset {
            factors,
            backup_codes,
        })
    }

    /// Emails users whose password was accepted but whose second step did not follow within
    /// 10 minutes — one email per such sign-in, at most one an hour per user. Returns how many
    /// emails were queued. Run periodically by the server.
    pub async fn report_unfinished_signins(&self) -> Result<u32> {
        let now = self.clock.now();
        let pending = self
            .store
            .unreported_challenges(now - UNFINISHED_SIGNIN_AFTER, REPORT_BATCH)
            .await?;
        let mut sent = 0;
        for challenge in pending {
            let Some(user) = self.store.user_by_id(challenge.user_id).await? else {
                continue;
            };
            let mut tx = self.store.begin().await?;
            let recent = tx
                .last_unfinished_signin_report(user.id)
                .await?
                .is_some_and(|at| now < at + UNFINISHED_SIGNIN_REPORT_INTERVAL);
            let state = if recent {
                ReportState::Suppressed
            } else {
                ReportState::Sent
            };
            if !tx.mark_challenge_reported(challenge.id, state, now).await? {
                continue;
            }
            if state == ReportState::Sent {
                let client = ClientInfo {
                    ip: challenge.ip.clone(),
                    user_agent: challenge.user_agent.clone(),
                };
                tx.insert_event(&NewEvent {
                    user_id: user.id,
                    kind: EventKind::UnfinishedSigninReported,
                    at: now,
                    client,
                    actor_id: None,
                    details: json!({ "challenge_id": challenge.id.to_string() }),
                })
                .await?;
                tx.enqueue(&self.email_to(
                    &user,
                    Notification::UnfinishedSignin {
                        display_name: user.display_name.clone(),
                        at: rfc3339(challenge.created_at),
                        ip: challenge.ip.clone(),
                        user_agent: challenge.user_agent.clone(),
                    },
                    now,
                ))
                .await?;
                sent += 1;
            }
            tx.commit().await?;
        }
        Ok(sent)
    }

    /// Re-seals every TOTP secret not sealed under the primary key, in batches, calling
    /// `progress(done, total)` after each. A secret that does not open stops the run with an
    /// error (nothing is lost: the old key stays in the ring). Returns how many were re-sealed.
    pub async fn reseal_secrets(&self, mut progress: impl FnMut(u64, u64)) -> Result<u64> {
        let ring = self.key_ring();
        let primary = ring.primary_id();
        let total = self.store.count_secrets_not_under_key(primary).await?;
        let mut done = 0u64;
        progress(0, total);
        loop {
            let batch = self
                .store
                .secrets_not_under_key(primary, RESEAL_BATCH)
                .await?;
            if batch.is_empty() {
                return Ok(done);
            }
            let mut tx = self.store.begin().await?;
            let mut changed = 0u64;
            for secret in &batch {
                let resealed = self.reseal(secret)?;
                if tx
                    .reseal_secret(secret.owner, &secret.sealed, &resealed, primary)
                    .await?
                {
                    changed += 1;
                }
            }
            tx.commit().await?;
            if changed == 0 {
                // Every row changed under us (a concurrent rotation): look again, but never
                // spin on rows we cannot move.
                return Err(Error::Internal(
                    "key rotation made no progress; is another rotation running?".into(),
                ));
            }
            done += changed;
            progress(done.min(total.max(done)), total.max(done));
        }
    }

    fn reseal(&self, secret: &SealedSecret) -> Result<Vec<u8>> {
        let factor_id = match secret.owner {
            SecretOwner::Factor(id) => id,
            SecretOwner::Enrollment { factor_id, .. } => factor_id,
        };
        let plain = self.open_secret(secret.user_id, factor_id, &secret.sealed)?;
        self.key_ring().seal(
            plain.as_slice(),
            &totp_secret_aad(secret.user_id, factor_id),
        )
    }

    /// Opens a sealed TOTP secret; failure is an internal error (logged), never "no MFA".
    fn open_secret(
        &self,
        user_id: UserId,
        factor_id: FactorId,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        self.open_sealed(sealed, &totp_secret_aad(user_id, factor_id))
            .map(Zeroizing::new)
            .inspect_err(|_| {
                tracing::error!(%user_id, %factor_id, "a sealed TOTP secret does not open: refusing the step");
            })
    }

    fn email_to(
        &self,
        user: &User,
        notification: Notification,
        now: OffsetDateTime,
    ) -> NewOutboxMessage {
        NewOutboxMessage {
            channel: Channel::Email,
            recipient: user.email.to_string(),
            notification,
            created_at: now,
        }
    }
}

/// What [`Services::after_password`] decided.
pub(super) enum AfterPassword {
    /// A full session.
    Session(Session, Token),
    /// A restricted session that may only enroll a factor.
    EnrollmentRequired(Session, Token),
    /// A challenge for the second step.
    Challenge(MfaChallenge),
}

/// The factors that may pass a second step: those of allowed kinds — or, while the user has
/// none of those (a grace period is running, or nothing requires MFA), all of them, so that a
/// policy change never turns a second step off. Once a requirement is enforced, a user with no
/// allowed factor gets no challenge at all but a restricted session (`after_password`).
pub(super) fn usable_factors(factors: Vec<Factor>, allowed: &[FactorKind]) -> Vec<Factor> {
    if factors.iter().any(|f| allowed.contains(&f.kind)) {
        factors
            .into_iter()
            .filter(|f| allowed.contains(&f.kind))
            .collect()
    } else {
        factors
    }
}

/// `403 policy_forbids` saying who forbids turning MFA off.
fn disable_forbidden(policy: &crate::org::EffectivePolicy) -> Error {
    Error::PolicyForbids(policy.disable_refusal())
}

pub(super) fn bounded(input: &str) -> Result<&str> {
    if input.len() > MAX_CODE_INPUT_BYTES {
        Err(Error::InvalidCode)
    } else {
        Ok(input)
    }
}

pub(super) fn generate_backup_codes() -> Result<Vec<BackupCode>> {
    (0..BACKUP_CODE_COUNT)
        .map(|_| random_bytes::<BACKUP_CODE_BYTES>().map(BackupCode::from_bytes))
        .collect()
}

/// Whole seconds from `now` until a lock ends `until`, at least 1 (`Retry-After`).
pub(super) fn retry_after_secs(until: OffsetDateTime, now: OffsetDateTime) -> u64 {
    u64::try_from((until - now).whole_seconds().max(1)).unwrap_or(1)
}

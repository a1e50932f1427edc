//! SMS and email factors: verifying a phone number or address, sending one-time codes, the
//! second step of sign-in with such a code, and a factor's label and preferred flag.
//!
//! The code rules are in `otc.rs`; this is where they meet the store:
//! - a code is sent only after [`SendCounts::check`](crate::otc::SendCounts::check) passed on
//!   counts read under the user's MFA lock, and the code, the send and the sealed outbox
//!   message are written in that one transaction — a refused send writes nothing;
//! - a code is used by one conditional `UPDATE` in the transaction that completes the step, so
//!   parallel uses of one code give one session;
//! - a wrong code counts a try on the code (3 void it) and, at sign-in, a failure toward the
//!   account's second-factor lock; a guess when no usable code is out cannot succeed and is
//!   refused without counting.
//!
//! Threats: SMS pumping and mail bombing (the send limits, per destination across accounts
//! too), a code for one purpose or factor used for another (the hash binds them), an attacker
//! learning a user's number (only masked forms leave the server, except to the transport), and
//! a new number taking over an account (adding or replacing needs a full session and a
//! re-auth window, and the account address is told).

use super::mfa::{ConfirmedFactor, bounded, factor_display_label};
use super::signin::SignedIn;
use super::{Authenticated, FullSession, Services};
use crate::email::Email;
use crate::event::{ClientInfo, EventKind, NewEvent};
use crate::factor::{
    ContactEnrollment, ENROLLMENT_TTL, Factor, FactorKind, MfaMethod, mask_destination, parse_label,
};
use crate::ids::{EnrollmentId, FactorId, UserId};
use crate::notification::{Channel, NewOutboxMessage, Notification};
use crate::otc::{CodePurpose, OneTimeCode, code_hash, normalize_code, seal_for_outbox};
use crate::phone::Phone;
use crate::store::{CodeSend, NewCode, SecondStepContext, StoreTx};
use crate::{Error, Result};
use serde_json::json;
use time::{Duration, OffsetDateTime};

/// A message created this recently that is still unsent after a failed attempt means the
/// channel is failing, and the user is told so.
pub const DELIVERY_FAILING_WINDOW: Duration = Duration::minutes(15);

/// What [`Services::use_sent_code`] came to.
enum CodeUse {
    /// The code of this factor was used, in this (uncommitted) transaction.
    Used(FactorId, Box<dyn StoreTx>),
    /// A wrong try was counted on a live code.
    Wrong,
    /// No usable code was out.
    NothingOut,
}

/// What the user said to send codes to.
#[derive(Debug, Clone, Copy)]
pub enum ContactDestination<'a> {
    /// A phone number: international (`+1 415 555 2671`), or national with its country code.
    Phone {
        /// The country calling code (`1`, `+44`), when the number is national.
        country_code: Option<&'a str>,
        /// The number as typed.
        number: &'a str,
    },
    /// An address; the account's own when `None`.
    Email(Option<&'a str>),
}

/// Where a code went, for the response and the page.
#[derive(Debug, Clone)]
pub struct CodeSent {
    /// The factor or enrollment it was sent for.
    pub target: String,
    /// SMS or email.
    pub kind: FactorKind,
    /// The destination, masked.
    pub masked_destination: String,
    /// When the code stops working.
    pub expires_at: OffsetDateTime,
    /// Whether recent messages on this channel are failing: the code waits in the outbox for
    /// a retry, and the user should be told it may not arrive soon.
    pub delivery_failing: bool,
}

/// A started SMS or email enrollment.
#[derive(Debug, Clone)]
pub struct StartedContactEnrollment {
    /// The enrollment.
    pub enrollment: ContactEnrollment,
    /// The code sent to it.
    pub sent: CodeSent,
}

/// What a `PATCH` of a factor changes.
#[derive(Debug, Clone, Copy, Default)]
pub struct FactorUpdate<'a> {
    /// A new label (blank restores the default).
    pub label: Option<&'a str>,
    /// `Some(true)` makes the factor the preferred one.
    pub preferred: Option<bool>,
}

/// The destination of `kind` in the form the store keeps, and the default label (masked).
fn parse_destination(
    destination: ContactDestination<'_>,
    account_email: &Email,
) -> Result<(FactorKind, String)> {
    match destination {
        ContactDestination::Phone {
            country_code,
            number,
        } => {
            let phone = Phone::parse(country_code, number)?;
            Ok((FactorKind::Sms, phone.e164().to_owned()))
        }
        ContactDestination::Email(address) => {
            let email = match address.map(str::trim).filter(|a| !a.is_empty()) {
                Some(address) => Email::parse(address)?,
                None => account_email.clone(),
            };
            Ok((FactorKind::Email, email.normalized()))
        }
    }
}

fn channel_of(kind: FactorKind) -> Result<Channel> {
    match kind {
        FactorKind::Sms => Ok(Channel::Sms),
        FactorKind::Email => Ok(Channel::Email),
        FactorKind::Totp | FactorKind::Webauthn => Err(Error::invalid(
            "this factor does not receive codes: use the code from your authenticator app",
        )),
    }
}

impl Services {
    /// Starts verifying a phone number or address (`POST /api/v1/me/factors/{sms,email}`):
    /// the enrollment lasts 15 minutes, and a code (valid 10) is sent to the destination.
    pub async fn start_contact_enrollment(
        &self,
        auth: &Authenticated,
        destination: ContactDestination<'_>,
        client: ClientInfo,
    ) -> Result<StartedContactEnrollment> {
        let (kind, destination) = parse_destination(destination, &auth.user.email)?;
        self.require_method_allowed(auth.user.id, kind).await?;
        self.require_reauth(auth)?;
        let now = self.clock.now();
        let enrollment = ContactEnrollment {
            id: EnrollmentId::new(),
            user_id: auth.user.id,
            factor_id: FactorId::new(),
            kind,
            destination,
            created_at: now,
            expires_at: now + ENROLLMENT_TTL,
        };
        let mut tx = self.store.begin().await?;
        tx.lock_user_mfa(auth.user.id).await?;
        refuse_duplicate(
            tx.as_mut(),
            auth.user.id,
            kind,
            &enrollment.destination,
            None,
        )
        .await?;
        tx.insert_contact_enrollment(&enrollment).await?;
        let target = enrollment.id.to_string();
        let expires_at = self
            .send_code(
                tx.as_mut(),
                auth.user.id,
                &target,
                kind,
                &enrollment.destination,
                CodePurpose::Enrollment,
                &client,
                now,
            )
            .await?;
        tx.commit().await?;
        let sent = self
            .code_sent(target, kind, &enrollment.destination, expires_at, now)
            .await?;
        Ok(StartedContactEnrollment { enrollment, sent })
    }

    /// An unfinished SMS or email enrollment of the user (for the page that asks for its
    /// code); `invalid_code` once it ended or when it is not theirs.
    pub async fn pending_contact_enrollment(
        &self,
        auth: &Authenticated,
        enrollment_id: &str,
    ) -> Result<ContactEnrollment> {
        let id: EnrollmentId = bounded(enrollment_id)?
            .parse()
            .map_err(|_| Error::InvalidCode)?;
        let now = self.clock.now();
        self.store
            .contact_enrollment(auth.user.id, id)
            .await?
            .filter(|e| now < e.expires_at)
            .ok_or(Error::InvalidCode)
    }

    /// Sends a new code for an unfinished enrollment; the earlier code stops working.
    pub async fn resend_enrollment_code(
        &self,
        auth: &Authenticated,
        kind: FactorKind,
        enrollment_id: &str,
        client: ClientInfo,
    ) -> Result<CodeSent> {
        self.require_reauth(auth)?;
        let id: EnrollmentId = enrollment_id.parse().map_err(|_| Error::NotFound)?;
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        tx.lock_user_mfa(auth.user.id).await?;
        let Some(enrollment) = tx
            .open_contact_enrollment(auth.user.id, id, now)
            .await?
            .filter(|e| e.kind == kind)
        else {
            return Err(Error::NotFound);
        };
        let target = enrollment.id.to_string();
        let expires_at = self
            .send_code(
                tx.as_mut(),
                auth.user.id,
                &target,
                kind,
                &enrollment.destination,
                CodePurpose::Enrollment,
                &client,
                now,
            )
            .await?;
        tx.commit().await?;
        self.code_sent(target, kind, &enrollment.destination, expires_at, now)
            .await
    }

    /// Confirms an SMS or email enrollment with the code that was sent. On success the
    /// factor is active, as for an authenticator app (see
    /// [`Services::confirm_totp_enrollment`]); with `replace` the named factor of the same
    /// kind (the old number or address) is removed in the same transaction.
    #[allow(clippy::too_many_arguments)]
    pub async fn confirm_contact_enrollment(
        &self,
        auth: &Authenticated,
        kind: FactorKind,
        enrollment_id: &str,
        code: &str,
        label: Option<&str>,
        replace: Option<&str>,
        client: ClientInfo,
    ) -> Result<ConfirmedFactor> {
        // Checked again here: the setting may have changed since the enrollment started.
        self.require_method_allowed(auth.user.id, kind).await?;
        self.require_reauth(auth)?;
        let now = self.clock.now();
        let id: EnrollmentId = enrollment_id.parse().map_err(|_| Error::InvalidCode)?;
        let replace: Option<FactorId> = replace
            .map(|id| id.parse().map_err(|_| Error::NotFound))
            .transpose()?;
        let digits = normalize_code(bounded(code)?)?;
        let target = id.to_string();
        let purpose = CodePurpose::Enrollment;
        let hash = code_hash(
            &self.pepper,
            &auth.user.id.to_string(),
            &target,
            purpose,
            &digits,
        );

        let mut tx = self.store.begin().await?;
        tx.lock_user_mfa(auth.user.id).await?;
        let Some(enrollment) = tx
            .open_contact_enrollment(auth.user.id, id, now)
            .await?
            .filter(|e| e.kind == kind)
        else {
            return Err(Error::InvalidCode);
        };
        if !tx
            .use_code(auth.user.id, &target, purpose, &hash, now)
            .await?
        {
            let tries = tx
                .count_wrong_code_try(auth.user.id, &target, purpose, now)
                .await?;
            tx.commit().await?;
            tracing::info!(user_id = %auth.user.id, ?tries, "wrong enrollment code");
            return Err(Error::InvalidCode);
        }
        if tx
            .take_contact_enrollment(auth.user.id, id, now)
            .await?
            .is_none()
        {
            return Err(Error::InvalidCode);
        }
        refuse_duplicate(
            tx.as_mut(),
            auth.user.id,
            kind,
            &enrollment.destination,
            replace,
        )
        .await?;
        let masked = mask_destination(kind, &enrollment.destination);
        let factor = Factor {
            id: enrollment.factor_id,
            user_id: auth.user.id,
            kind,
            label: parse_label(label, &masked)?,
            secret_sealed: None,
            key_id: None,
            last_step: None,
            preferred: false,
            created_at: now,
            last_used_at: None,
            destination: Some(enrollment.destination),
        };
        let confirmed = self
            .activate_factor(tx, auth, factor, replace, client, now)
            .await?;
        tracing::info!(user_id = %auth.user.id, factor_id = %confirmed.factor.id, kind = kind.as_str(), "contact factor confirmed");
        Ok(confirmed)
    }

    /// Sends a sign-in code to an SMS or email factor (`POST /api/v1/sessions/mfa/send`).
    pub async fn send_signin_code(
        &self,
        challenge_token: &str,
        factor_id: &str,
        client: ClientInfo,
    ) -> Result<CodeSent> {
        let token = crate::crypto::Token::from_client(bounded(challenge_token)?);
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
        let factor_id: FactorId = bounded(factor_id)?.parse().map_err(|_| Error::NotFound)?;
        let Some(factor) = context.factors.iter().find(|f| f.id == factor_id) else {
            return Err(Error::NotFound);
        };
        channel_of(factor.kind)?;
        let allowed = self.allowed_kinds(context.user.id).await?;
        let usable = super::mfa::usable_factors(context.factors.clone(), &allowed);
        if !usable.iter().any(|f| f.id == factor.id) {
            return Err(Error::PolicyForbids(format!(
                "{} codes are no longer allowed for your account: use another method",
                factor.kind.as_str()
            )));
        }
        let Some(destination) = factor.destination.as_deref() else {
            return Err(Error::Internal(format!(
                "{} factor {} has no destination",
                factor.kind.as_str(),
                factor.id
            )));
        };
        let user_id = context.user.id;
        let target = factor.id.to_string();
        let mut tx = self.store.begin().await?;
        tx.lock_user_mfa(user_id).await?;
        let expires_at = self
            .send_code(
                tx.as_mut(),
                user_id,
                &target,
                factor.kind,
                destination,
                CodePurpose::Signin,
                &client,
                now,
            )
            .await?;
        tx.commit().await?;
        self.code_sent(target, factor.kind, destination, expires_at, now)
            .await
    }

    /// The second step with an SMS or email code: the code of the named factor (or of any
    /// factor of `kind` when none is named) is used in the transaction that issues the
    /// session. `Ok(Err(reason))` is a wrong code to count toward the account's lock.
    pub(super) async fn second_step_code(
        &self,
        context: &SecondStepContext,
        kind: FactorKind,
        factor_id: Option<&str>,
        code: &str,
        client: &ClientInfo,
        now: OffsetDateTime,
    ) -> Result<Result<SignedIn, &'static str>> {
        let method = MfaMethod::for_code_factor(kind).ok_or(Error::InvalidCode)?;
        let digits = normalize_code(bounded(code)?)?;
        let wanted: Option<FactorId> = match factor_id {
            Some(id) => match id.parse() {
                Ok(id) => Some(id),
                Err(_) => return Ok(Err("unknown_factor")),
            },
            None => None,
        };
        let user = &context.user;
        let candidates: Vec<FactorId> = context
            .factors
            .iter()
            .filter(|f| f.kind == kind && wanted.is_none_or(|id| id == f.id))
            .map(|f| f.id)
            .collect();
        if candidates.is_empty() {
            return Ok(Err("unknown_factor"));
        }
        let (factor_id, mut tx) = match self
            .use_sent_code(user.id, &candidates, CodePurpose::Signin, &digits, now)
            .await?
        {
            CodeUse::Used(factor_id, tx) => (factor_id, tx),
            CodeUse::Wrong => return Ok(Err("wrong_code")),
            CodeUse::NothingOut => return Err(Error::InvalidCode),
        };
        tx.mark_factor_used(factor_id, now).await?;
        self.finish_second_step(tx, &context.challenge, user, method, client, now)
            .await
    }

    /// Sends a re-authentication code to one of the user's SMS or email factors
    /// (`POST /api/v1/reauth/send`).
    pub async fn send_reauth_code(
        &self,
        auth: &FullSession,
        factor_id: &str,
        client: ClientInfo,
    ) -> Result<CodeSent> {
        let factor_id: FactorId = bounded(factor_id)?.parse().map_err(|_| Error::NotFound)?;
        let now = self.clock.now();
        if let Some(retry_after_secs) = self
            .store
            .second_factor_throttle(auth.user.id)
            .await?
            .retry_after(now)
        {
            return Err(Error::RateLimited { retry_after_secs });
        }
        let mut tx = self.store.begin().await?;
        tx.lock_user_mfa(auth.user.id).await?;
        let factors = tx.factors_of_user(auth.user.id).await?;
        let Some(factor) = factors.iter().find(|f| f.id == factor_id) else {
            return Err(Error::NotFound);
        };
        channel_of(factor.kind)?;
        let destination = factor
            .destination
            .clone()
            .ok_or_else(|| Error::Internal(format!("factor {} has no destination", factor.id)))?;
        let target = factor.id.to_string();
        let expires_at = self
            .send_code(
                tx.as_mut(),
                auth.user.id,
                &target,
                factor.kind,
                &destination,
                CodePurpose::Reauth,
                &client,
                now,
            )
            .await?;
        tx.commit().await?;
        self.code_sent(target, factor.kind, &destination, expires_at, now)
            .await
    }

    /// Opens the re-auth window with a code sent for re-authentication (never a sign-in or
    /// enrollment code). Wrong codes count toward the account's second-factor lock, as at
    /// sign-in.
    pub async fn reauthenticate_with_code(
        &self,
        auth: &FullSession,
        kind: FactorKind,
        factor_id: Option<&str>,
        code: &str,
        client: ClientInfo,
    ) -> Result<OffsetDateTime> {
        let digits = normalize_code(bounded(code)?)?;
        let wanted: Option<FactorId> = factor_id
            .map(|id| bounded(id)?.parse().map_err(|_| Error::NotFound))
            .transpose()?;
        let now = self.clock.now();
        let user_id = auth.user.id;
        let candidates: Vec<FactorId> = self
            .store
            .factors_of(user_id)
            .await?
            .into_iter()
            .filter(|f| f.kind == kind && wanted.is_none_or(|id| id == f.id))
            .map(|f| f.id)
            .collect();
        if candidates.is_empty() {
            return Err(Error::NotFound);
        }
        let mut tx = match self
            .use_sent_code(user_id, &candidates, CodePurpose::Reauth, &digits, now)
            .await?
        {
            CodeUse::Used(_, tx) => tx,
            CodeUse::Wrong => {
                return Err(self
                    .record_second_factor_failure(user_id, "wrong_reauth_code", &client, now)
                    .await);
            }
            CodeUse::NothingOut => return Err(Error::InvalidCode),
        };
        let until = now + crate::session::REAUTH_WINDOW;
        tx.set_reauth_until(auth.session.id, until).await?;
        tx.insert_event(&NewEvent {
            user_id,
            kind: EventKind::Reauth,
            at: now,
            client,
            actor_id: None,
            details: json!({
                "session_id": auth.session.id.to_string(),
                "method": kind.as_str(),
            }),
        })
        .await?;
        tx.commit().await?;
        Ok(until)
    }

    /// Uses a typed code if it is the live `purpose` code of one of `factors` (all the user's):
    /// in a new transaction that first refuses while the second step is locked and clears the
    /// wrong-code count, one conditional `UPDATE` per factor. `Used` hands back that
    /// transaction, uncommitted, for the caller's writes. Otherwise the transaction is dropped
    /// (the cleared count must not be committed) and a new one counts a wrong try on every
    /// code that could still have matched: `Wrong` when one was counted, `NothingOut` when no
    /// usable code was out (none sent, expired, void, or a parallel request used it) — nothing
    /// could be guessed then, so nothing is counted.
    async fn use_sent_code(
        &self,
        user_id: UserId,
        factors: &[FactorId],
        purpose: CodePurpose,
        digits: &str,
        now: OffsetDateTime,
    ) -> Result<CodeUse> {
        let user_key = user_id.to_string();
        let mut tx = self.store.begin().await?;
        self.clear_failures_unless_locked(tx.as_mut(), user_id, now)
            .await?;
        for factor_id in factors {
            let target = factor_id.to_string();
            let hash = code_hash(&self.pepper, &user_key, &target, purpose, digits);
            if tx.use_code(user_id, &target, purpose, &hash, now).await? {
                return Ok(CodeUse::Used(*factor_id, tx));
            }
        }
        drop(tx);
        let mut tx = self.store.begin().await?;
        let mut counted = false;
        for factor_id in factors {
            counted |= tx
                .count_wrong_code_try(user_id, &factor_id.to_string(), purpose, now)
                .await?
                .is_some();
        }
        tx.commit().await?;
        Ok(if counted {
            CodeUse::Wrong
        } else {
            CodeUse::NothingOut
        })
    }

    /// Renames a factor or makes it the preferred one (`PATCH /api/v1/me/factors/{id}`).
    pub async fn update_factor(
        &self,
        auth: &FullSession,
        factor_id: &str,
        update: FactorUpdate<'_>,
        client: ClientInfo,
    ) -> Result<Factor> {
        if update.label.is_none() && update.preferred.is_none() {
            return Err(Error::invalid(
                "nothing to change: give a label or \"preferred\": true",
            ));
        }
        if update.preferred == Some(false) {
            return Err(Error::invalid(
                "preferred: only true is accepted; to change the preferred method, make another factor preferred",
            ));
        }
        // API.md: every factor endpoint needs the re-auth window, renaming included.
        self.require_reauth(auth)?;
        let factor_id: FactorId = bounded(factor_id)?.parse().map_err(|_| Error::NotFound)?;
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        tx.lock_user_mfa(auth.user.id).await?;
        let factors = tx.factors_of_user(auth.user.id).await?;
        let Some(factor) = factors.iter().find(|f| f.id == factor_id) else {
            return Err(Error::NotFound);
        };
        let mut updated = factor.clone();
        if let Some(label) = update.label {
            let default = factor
                .masked_destination()
                .unwrap_or_else(|| "Authenticator app".to_owned());
            updated.label = parse_label(Some(label), &default)?;
            tx.set_factor_label(auth.user.id, factor_id, &updated.label)
                .await?;
        }
        if update.preferred == Some(true) {
            tx.set_preferred_factor(auth.user.id, factor_id).await?;
            updated.preferred = true;
        }
        tx.insert_event(&NewEvent {
            user_id: auth.user.id,
            kind: EventKind::FactorUpdated,
            at: now,
            client,
            actor_id: None,
            details: json!({
                "factor_id": factor_id.to_string(),
                "kind": factor.kind.as_str(),
                "label": update.label.map(|_| updated.label.clone()),
                "preferred": update.preferred,
            }),
        })
        .await?;
        tx.commit().await?;
        Ok(updated)
    }

    /// Checks the send limits in `tx` (which holds the user's MFA lock), then stores a new
    /// code for `target` and `purpose` (voiding the earlier one), records the send and the
    /// event, and queues the sealed code for delivery. Returns when the code expires. Past a
    /// limit it writes nothing and answers `rate_limited`.
    #[allow(clippy::too_many_arguments)]
    async fn send_code(
        &self,
        tx: &mut dyn StoreTx,
        user_id: UserId,
        target: &str,
        kind: FactorKind,
        destination: &str,
        purpose: CodePurpose,
        client: &ClientInfo,
        now: OffsetDateTime,
    ) -> Result<OffsetDateTime> {
        let channel = channel_of(kind)?;
        let destination_hash = self
            .pepper
            .keyed_hash("code-destination", destination.as_bytes());
        tx.send_counts(user_id, target, &destination_hash, now)
            .await?
            .check(now)?;
        let code = OneTimeCode::generate()?;
        let issued = NewCode {
            user_id,
            target: target.to_owned(),
            purpose,
            hash: code.hash(&self.pepper, &user_id.to_string(), target, purpose),
            created_at: now,
        };
        tx.put_code(&issued).await?;
        tx.record_code_send(&CodeSend {
            user_id,
            target: target.to_owned(),
            destination_hash,
            sent_at: now,
        })
        .await?;
        let sealed_code = seal_for_outbox(&self.key_ring(), &code, destination, purpose)?;
        tx.enqueue(&NewOutboxMessage {
            channel,
            recipient: destination.to_owned(),
            notification: Notification::OneTimeCode {
                purpose: purpose.as_str().to_owned(),
                sealed_code,
            },
            created_at: now,
        })
        .await?;
        tx.insert_event(&NewEvent {
            user_id,
            kind: EventKind::CodeSent,
            at: now,
            client: client.clone(),
            actor_id: None,
            details: json!({
                "channel": channel.as_str(),
                "purpose": purpose.as_str(),
                "to": mask_destination(kind, destination),
            }),
        })
        .await?;
        Ok(issued.created_at + crate::otc::CODE_TTL)
    }

    async fn code_sent(
        &self,
        target: String,
        kind: FactorKind,
        destination: &str,
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<CodeSent> {
        let delivery_failing = self
            .store
            .delivery_failing(channel_of(kind)?, now - DELIVERY_FAILING_WINDOW)
            .await?;
        Ok(CodeSent {
            target,
            kind,
            masked_destination: mask_destination(kind, destination),
            expires_at,
            delivery_failing,
        })
    }
}

/// `409 conflict` when the user already has a factor of `kind` with this destination (other
/// than the one being replaced).
async fn refuse_duplicate(
    tx: &mut dyn StoreTx,
    user_id: UserId,
    kind: FactorKind,
    destination: &str,
    replacing: Option<FactorId>,
) -> Result<()> {
    let factors = tx.factors_of_user(user_id).await?;
    if let Some(existing) = factors.iter().find(|f| {
        f.kind == kind && f.destination.as_deref() == Some(destination) && Some(f.id) != replacing
    }) {
        let what = match kind {
            FactorKind::Sms => "phone number",
            _ => "address",
        };
        return Err(Error::Conflict(format!(
            "this {what} is already set up as \"{}\"",
            factor_display_label(existing)
        )));
    }
    Ok(())
}

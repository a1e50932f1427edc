//! Signing in: the password step, its per-account throttle, and the one gate through which
//! every session is issued.
//!
//! Threats: online password guessing (per-account lock with exponential backoff, held in the
//! store so every instance sees it), account enumeration (unknown emails cost one dummy Argon2id
//! verification and get the same answer), session fixation (a new token every time).

use super::mfa::{AfterPassword, PasswordOutcome};
use super::{Authenticated, Services};
use crate::crypto::Token;
use crate::email::Email;
use crate::event::{ClientInfo, EventKind, NewEvent};
use crate::factor::MfaMethod;
use crate::ids::{SessionId, UserId};
use crate::password::MAX_PASSWORD_BYTES;
use crate::session::{Session, SessionState};
use crate::store::StoreTx;
use crate::throttle::{ThrottleKey, lock_after};
use crate::user::User;
use crate::{Error, Result};
use serde_json::json;
use time::{Duration, OffsetDateTime};

/// A new session and the token that opens it (shown to the client once).
#[derive(Debug)]
pub struct SignedIn {
    /// The stored session.
    pub session: Session,
    /// Its bearer token.
    pub token: Token,
    /// Its user.
    pub user: User,
}

/// A reserved password attempt: how many attempts in a row it makes, and the lock it set.
#[derive(Debug, Clone, Copy)]
pub(super) struct PasswordAttempt {
    pub(super) key: ThrottleKey,
    in_a_row: u32,
    lock: Option<Duration>,
}

impl Services {
    /// The password step of sign-in (`POST /api/v1/sessions`). `replacing` is a session the
    /// same client held before (the pages' cookie): it ends in the same transaction.
    pub async fn sign_in_with_password(
        &self,
        email: &str,
        password: &str,
        client: ClientInfo,
        replacing: Option<&Authenticated>,
    ) -> Result<PasswordOutcome> {
        let email = Email::parse(email)?;
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(Error::invalid(format!(
                "password: must be at most {MAX_PASSWORD_BYTES} bytes"
            )));
        }
        // Unknown emails go through exactly the same steps: the attempt is counted (and can
        // lock), and a dummy hash is verified, so neither 429s nor timing reveal accounts.
        let attempt = self.reserve_password_attempt(&email.normalized()).await?;
        let credentials = self.store.credentials_by_email(&email.normalized()).await?;
        let hash = credentials.as_ref().map(|c| c.password_hash.clone());
        let matched = self.hasher.verify(password, hash).await?;
        let user = match credentials {
            Some(credentials) if matched => credentials.user,
            other => {
                self.record_wrong_password(attempt, other.map(|c| c.user.id), "signin", &client)
                    .await?;
                return Err(Error::InvalidCredentials);
            }
        };

        let mfa = self.mfa_state(user.id).await?;
        let policy = self.effective_policy(user.id).await?;
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        tx.reset_password_failures(&attempt.key).await?;
        if let Some(previous) = replacing {
            tx.delete_session(previous.user.id, previous.session.id)
                .await?;
        }
        match self
            .after_password(tx.as_mut(), &user, mfa, &policy, &client, now)
            .await?
        {
            AfterPassword::EnrollmentRequired(session, token) => {
                tx.commit().await?;
                tracing::info!(user_id = %user.id, session_id = %session.id, "signed in: MFA enrollment required");
                Ok(PasswordOutcome::EnrollmentRequired {
                    signed_in: SignedIn {
                        session,
                        token,
                        user,
                    },
                    deadline: policy.deadline,
                })
            }
            AfterPassword::Session(session, token) => {
                tx.commit().await?;
                tracing::info!(user_id = %user.id, session_id = %session.id, "signed in");
                Ok(PasswordOutcome::SignedIn(SignedIn {
                    session,
                    token,
                    user,
                }))
            }
            AfterPassword::Challenge(challenge) => {
                tx.commit().await?;
                tracing::info!(user_id = %user.id, "password accepted, second factor owed");
                Ok(PasswordOutcome::MfaRequired(challenge))
            }
        }
    }

    /// Counts one password attempt for `email_normalized` before the password is checked, and
    /// sets the lock at once when this attempt reaches the limit (a right password then clears
    /// it). Refuses with `rate_limited` while locked.
    pub(super) async fn reserve_password_attempt(
        &self,
        email_normalized: &str,
    ) -> Result<PasswordAttempt> {
        let key = ThrottleKey::for_email(&self.pepper, email_normalized);
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        let Some(in_a_row) = tx.reserve_password_attempt(&key, now).await? else {
            drop(tx);
            let throttle = self.store.password_throttle(&key).await?;
            let retry_after_secs = throttle.retry_after(now).unwrap_or(1);
            return Err(Error::RateLimited { retry_after_secs });
        };
        let lock = lock_after(in_a_row);
        if let Some(lock) = lock {
            tx.lock_password(&key, now + lock).await?;
        }
        tx.commit().await?;
        Ok(PasswordAttempt {
            key,
            in_a_row,
            lock,
        })
    }

    /// Records a wrong password of a known account as a security event (sign-in, re-auth,
    /// password change); the attempt was already counted by [`Self::reserve_password_attempt`].
    pub(super) async fn record_wrong_password(
        &self,
        attempt: PasswordAttempt,
        user_id: Option<UserId>,
        step: &str,
        client: &ClientInfo,
    ) -> Result<()> {
        if let Some(lock) = attempt.lock {
            tracing::warn!(
                failures = attempt.in_a_row,
                seconds = lock.whole_seconds(),
                "password attempts locked"
            );
        }
        let Some(user_id) = user_id else {
            return Ok(());
        };
        let mut tx = self.store.begin().await?;
        tx.insert_event(&NewEvent {
            user_id,
            kind: EventKind::SigninFailed,
            at: self.clock.now(),
            client: client.clone(),
            actor_id: None,
            details: json!({
                "reason": "wrong_password",
                "step": step,
                "failures_in_a_row": attempt.in_a_row,
                "locked_for_seconds": attempt.lock.map(|d| d.whole_seconds()),
            }),
        })
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

impl Services {
    /// The one gate: every path that creates a session (password, second factors; admin reset
    /// links and OpenID Connect later) goes through here, inside the caller's transaction —
    /// after [`Services::after_password`] decided nothing more is owed. It issues a fresh
    /// token, records the sign-in, and returns the session with its token. The TOTP second
    /// step, which the store commits in one call, builds the same rows with
    /// [`Services::new_session`].
    #[expect(
        clippy::too_many_arguments,
        reason = "every field of a new session is chosen by the caller"
    )]
    pub(super) async fn issue_session(
        &self,
        tx: &mut dyn StoreTx,
        user: &User,
        amr: Vec<String>,
        mfa_method: Option<MfaMethod>,
        reauth_until: Option<OffsetDateTime>,
        client: &ClientInfo,
        now: OffsetDateTime,
    ) -> Result<(Session, Token)> {
        let (session, token, event) =
            self.new_session(user, amr, mfa_method, reauth_until, client, now)?;
        tx.insert_session(&session).await?;
        tx.insert_event(&event).await?;
        Ok((session, token))
    }

    /// A new full session for `user` with its token and its `signin_succeeded` event, not yet
    /// stored: what [`Services::issue_session`] inserts.
    pub(super) fn new_session(
        &self,
        user: &User,
        amr: Vec<String>,
        mfa_method: Option<MfaMethod>,
        reauth_until: Option<OffsetDateTime>,
        client: &ClientInfo,
        now: OffsetDateTime,
    ) -> Result<(Session, Token, NewEvent)> {
        let token = Token::generate()?;
        let session = Session {
            id: SessionId::new(),
            user_id: user.id,
            token_hash: token.hash(),
            state: SessionState::Full,
            amr,
            created_at: now,
            last_seen_at: now,
            expires_at: now + self.settings.sessions.lifetime,
            reauth_until,
            ip: client.ip.clone(),
            user_agent: client.user_agent.clone(),
            mfa_method,
        };
        let event = NewEvent {
            user_id: user.id,
            kind: EventKind::SigninSucceeded,
            at: now,
            client: client.clone(),
            actor_id: None,
            details: json!({
                "session_id": session.id.to_string(),
                "amr": session.amr,
                "method": mfa_method.map(MfaMethod::as_str),
            }),
        };
        Ok((session, token, event))
    }
}

//! Signing in: the password step, its per-account throttle, and the one gate through which
//! every session is issued.
//!
//! Threats: online password guessing (per-account lock with exponential backoff, held in the
//! store so every instance sees it), account enumeration (unknown emails cost one dummy Argon2id
//! verification and get the same answer), session fixation (a new token every time).

use super::Services;
use crate::crypto::Token;
use crate::email::Email;
use crate::event::{ClientInfo, EventKind, NewEvent};
use crate::ids::{SessionId, UserId};
use crate::password::MAX_PASSWORD_BYTES;
use crate::session::{REAUTH_WINDOW, Session, SessionState};
use crate::store::StoreTx;
use crate::throttle::lock_after;
use crate::user::User;
use crate::{Error, Result};
use serde_json::json;
use time::OffsetDateTime;

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

impl Services {
    /// The password step of sign-in (`POST /api/v1/sessions`).
    pub async fn sign_in_with_password(
        &self,
        email: &str,
        password: &str,
        client: ClientInfo,
    ) -> Result<SignedIn> {
        let email = Email::parse(email)?;
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(Error::invalid(format!(
                "password: must be at most {MAX_PASSWORD_BYTES} bytes"
            )));
        }
        let credentials = self.store.credentials_by_email(&email.normalized()).await?;
        let Some(credentials) = credentials else {
            // Same cost as a known account, same answer.
            self.hasher.verify(password, None).await?;
            return Err(Error::InvalidCredentials);
        };
        let user = credentials.user;
        self.refuse_if_password_locked(user.id).await?;
        if !self
            .hasher
            .verify(password, Some(credentials.password_hash))
            .await?
        {
            self.record_wrong_password(user.id, "signin", &client)
                .await?;
            return Err(Error::InvalidCredentials);
        }

        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        tx.reset_password_failures(user.id).await?;
        let (session, token) = self
            .issue_session(
                tx.as_mut(),
                &user,
                vec!["pwd".into()],
                Some(now + REAUTH_WINDOW),
                &client,
                now,
            )
            .await?;
        tx.commit().await?;
        tracing::info!(user_id = %user.id, session_id = %session.id, "signed in");
        Ok(SignedIn {
            session,
            token,
            user,
        })
    }

    /// Refuses with `rate_limited` while the account's password sign-in is locked.
    pub(super) async fn refuse_if_password_locked(&self, user_id: UserId) -> Result<()> {
        let throttle = self.store.password_throttle(user_id).await?;
        match throttle.retry_after(self.clock.now()) {
            Some(retry_after_secs) => Err(Error::RateLimited { retry_after_secs }),
            None => Ok(()),
        }
    }

    /// Counts a wrong password against the account (sign-in, re-auth, password change) and locks
    /// it when the count calls for it, with the event, in one transaction.
    pub(super) async fn record_wrong_password(
        &self,
        user_id: UserId,
        step: &str,
        client: &ClientInfo,
    ) -> Result<()> {
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        let failures = tx.record_password_failure(user_id).await?;
        let lock = lock_after(failures);
        if let Some(lock) = lock {
            tx.lock_password(user_id, now + lock).await?;
        }
        tx.insert_event(&NewEvent {
            user_id,
            kind: EventKind::SigninFailed,
            at: now,
            client: client.clone(),
            actor_id: None,
            details: json!({
                "reason": "wrong_password",
                "step": step,
                "failures_in_a_row": failures,
                "locked_for_seconds": lock.map(|d| d.whole_seconds()),
            }),
        })
        .await?;
        tx.commit().await?;
        if lock.is_some() {
            tracing::warn!(user_id = %user_id, failures, "password sign-in locked");
        }
        Ok(())
    }
}

impl Services {
    /// The one gate: every path that creates a session (password today; second factors, admin
    /// reset links and OpenID Connect later) goes through here, inside the caller's transaction.
    /// It issues a fresh token, records the sign-in, and returns the session with its token.
    async fn issue_session(
        &self,
        tx: &mut dyn StoreTx,
        user: &User,
        amr: Vec<String>,
        reauth_until: Option<OffsetDateTime>,
        client: &ClientInfo,
        now: OffsetDateTime,
    ) -> Result<(Session, Token)> {
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
        };
        tx.insert_session(&session).await?;
        tx.insert_event(&NewEvent {
            user_id: user.id,
            kind: EventKind::SigninSucceeded,
            at: now,
            client: client.clone(),
            actor_id: None,
            details: json!({ "session_id": session.id.to_string(), "amr": session.amr }),
        })
        .await?;
        Ok((session, token))
    }
}

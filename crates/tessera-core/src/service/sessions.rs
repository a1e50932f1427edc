//! Using, listing and ending sessions; the re-auth window.

use super::{Authenticated, FullSession, Services};
use crate::crypto::Token;
use crate::event::{ClientInfo, EventKind, NewEvent, SecurityEvent};
use crate::ids::SessionId;
use crate::session::{LAST_SEEN_RESOLUTION, REAUTH_WINDOW, Session, SessionState};
use crate::{Error, Result};
use serde_json::json;
use time::OffsetDateTime;

/// Events returned per page when the client does not say.
pub const DEFAULT_EVENTS_PAGE: u32 = 50;
/// How long an ended sign-in challenge is kept (for the unfinished-sign-in report).
pub const CHALLENGE_RETENTION: time::Duration = time::Duration::days(1);
/// The largest page of events.
pub const MAX_EVENTS_PAGE: u32 = 200;

impl Services {
    /// Resolves a bearer token or cookie to a live session and its user. Expired, idle, revoked
    /// and unknown tokens are all `unauthenticated`.
    pub async fn authenticate(&self, token: &str) -> Result<Authenticated> {
        if token.is_empty() || token.len() > 256 {
            return Err(Error::Unauthenticated);
        }
        let token = Token::from_client(token);
        let Some(session) = self.store.session_by_token_hash(&token.hash()).await? else {
            // A challenge token is not a session: it opens the second step only.
            if self.is_open_challenge(&token).await? {
                return Err(Error::MfaRequired);
            }
            return Err(Error::Unauthenticated);
        };
        let now = self.clock.now();
        if !session.is_live(now, &self.settings.sessions) {
            return Err(Error::Unauthenticated);
        }
        let Some(user) = self.store.user_by_id(session.user_id).await? else {
            return Err(Error::Unauthenticated);
        };
        if session.last_seen_at <= now - LAST_SEEN_RESOLUTION {
            self.store
                .touch_session(session.id, now, now - LAST_SEEN_RESOLUTION)
                .await?;
        }
        let mut session = session;
        if session.state == SessionState::EnrollmentOnly
            && !self.restriction_holds(&user, &session, now).await?
        {
            let mut tx = self.store.begin().await?;
            tx.set_session_full(session.id).await?;
            tx.commit().await?;
            session.state = SessionState::Full;
        }
        Ok(Authenticated { session, user })
    }

    /// Whether a restricted session must stay restricted at `now`: it opened an MFA reset not
    /// completed yet, or a policy still requires MFA past its deadline of a user with no
    /// allowed factor. A requirement lowered or removed lifts it at the next request.
    async fn restriction_holds(
        &self,
        user: &crate::user::User,
        session: &Session,
        now: OffsetDateTime,
    ) -> Result<bool> {
        if self.store.session_has_open_reset(session.id).await? {
            return Ok(true);
        }
        let policy = self.effective_policy(user.id).await?;
        if !policy.console_enforced(now) {
            return Ok(false);
        }
        let factors = self.store.factors_of(user.id).await?;
        Ok(!policy.satisfied_by(factors.iter().map(|f| f.kind)))
    }

    /// The user's live sessions, newest first.
    pub async fn list_sessions(&self, auth: &FullSession) -> Result<Vec<Session>> {
        let now = self.clock.now();
        let sessions = self.store.sessions_of(auth.user.id, now).await?;
        Ok(sessions
            .into_iter()
            .filter(|s| s.is_live(now, &self.settings.sessions))
            .collect())
    }

    /// Ends another (or this) session of the user.
    pub async fn revoke_session(
        &self,
        auth: &FullSession,
        id: SessionId,
        client: ClientInfo,
    ) -> Result<()> {
        if id == auth.session.id {
            return self.sign_out(auth, client).await;
        }
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        if !tx.delete_session(auth.user.id, id).await? {
            return Err(Error::NotFound);
        }
        tx.insert_event(&NewEvent {
            user_id: auth.user.id,
            kind: EventKind::SessionRevoked,
            at: now,
            client,
            actor_id: None,
            details: json!({ "session_id": id.to_string() }),
        })
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Ends the current session. Restricted sessions may sign out too.
    pub async fn sign_out(&self, auth: &Authenticated, client: ClientInfo) -> Result<()> {
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        tx.delete_session(auth.user.id, auth.session.id).await?;
        tx.insert_event(&NewEvent {
            user_id: auth.user.id,
            kind: EventKind::Signout,
            at: now,
            client,
            actor_id: None,
            details: json!({ "session_id": auth.session.id.to_string() }),
        })
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Opens the re-auth window for 10 minutes after checking the password. Wrong passwords
    /// count toward the account's password throttle.
    pub async fn reauthenticate(
        &self,
        auth: &FullSession,
        password: &str,
        client: ClientInfo,
    ) -> Result<OffsetDateTime> {
        let attempt = self
            .check_current_password(auth, password, "reauth", &client)
            .await?;
        let now = self.clock.now();
        let until = now + REAUTH_WINDOW;
        let mut tx = self.store.begin().await?;
        tx.reset_password_failures(&attempt.key).await?;
        tx.set_reauth_until(auth.session.id, until).await?;
        tx.insert_event(&NewEvent {
            user_id: auth.user.id,
            kind: EventKind::Reauth,
            at: now,
            client,
            actor_id: None,
            details: json!({ "session_id": auth.session.id.to_string() }),
        })
        .await?;
        tx.commit().await?;
        Ok(until)
    }

    /// Deletes sessions past their absolute lifetime, ended enrollments, and sign-in
    /// challenges a day after they ended (kept that long for the unfinished-sign-in report)
    /// — housekeeping; returns how many rows went.
    pub async fn delete_expired_sessions(&self) -> Result<u64> {
        let now = self.clock.now();
        let sessions = self.store.delete_expired_sessions(now).await?;
        let mfa = self
            .store
            .delete_expired_mfa_state(now, now - CHALLENGE_RETENTION)
            .await?;
        Ok(sessions + mfa)
    }

    /// A page of the user's security events, newest first.
    pub async fn security_events(
        &self,
        auth: &FullSession,
        before: Option<i64>,
        limit: Option<u32>,
    ) -> Result<Vec<SecurityEvent>> {
        let limit = limit.unwrap_or(DEFAULT_EVENTS_PAGE);
        if limit == 0 || limit > MAX_EVENTS_PAGE {
            return Err(Error::invalid(format!(
                "limit: must be between 1 and {MAX_EVENTS_PAGE}"
            )));
        }
        if before.is_some_and(|b| b <= 0) {
            return Err(Error::invalid("before: must be a positive event id"));
        }
        Ok(self.store.events_of(auth.user.id, before, limit).await?)
    }
}

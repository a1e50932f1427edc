//! Changing the password.

use super::signin::PasswordAttempt;
use super::{FullSession, Services};
use crate::event::{ClientInfo, EventKind, NewEvent};
use crate::notification::{Channel, NewOutboxMessage, Notification};
use crate::password::{MAX_PASSWORD_BYTES, check_new_password};
use crate::{Error, Result};
use serde_json::json;
use time::format_description::well_known::Rfc3339;

impl Services {
    /// Checks the session user's current password; the attempt counts toward the throttle
    /// like a sign-in. Returns the attempt, whose count the caller clears in its transaction.
    pub(super) async fn check_current_password(
        &self,
        auth: &FullSession,
        password: &str,
        step: &str,
        client: &ClientInfo,
    ) -> Result<PasswordAttempt> {
        self.check_password_of(&auth.user, password, step, client)
            .await
    }

    /// Checks `user`'s password, counted by the password throttle like a sign-in.
    pub(super) async fn check_password_of(
        &self,
        user: &crate::user::User,
        password: &str,
        step: &str,
        client: &ClientInfo,
    ) -> Result<PasswordAttempt> {
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(Error::invalid(format!(
                "password: must be at most {MAX_PASSWORD_BYTES} bytes"
            )));
        }
        let attempt = self
            .reserve_password_attempt(&user.email.normalized())
            .await?;
        let hash = self.store.password_hash(user.id).await?;
        if hash.is_none() {
            return Err(Error::Unauthenticated);
        }
        if !self.hasher.verify(password, hash).await? {
            self.record_wrong_password(attempt, Some(user.id), step, client)
                .await?;
            return Err(Error::InvalidCredentials);
        }
        Ok(attempt)
    }

    /// Changes the password (`POST /api/v1/me/password`): checks the current one, applies the
    /// policy to the new one, signs out every other session and emails the user. Returns how many
    /// sessions were signed out.
    pub async fn change_password(
        &self,
        auth: &FullSession,
        current_password: &str,
        new_password: &str,
        client: ClientInfo,
    ) -> Result<u64> {
        let new_password = check_new_password(
            new_password,
            &[auth.user.email.as_str(), &auth.user.display_name],
        )?;
        let attempt = self
            .check_current_password(auth, current_password, "password_change", &client)
            .await?;
        let hash = self.hasher.hash(new_password).await?;
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        tx.set_password_hash(auth.user.id, &hash).await?;
        tx.reset_password_failures(&attempt.key).await?;
        let revoked = tx
            .delete_sessions_except(auth.user.id, Some(auth.session.id))
            .await?;
        tx.insert_event(&NewEvent {
            user_id: auth.user.id,
            kind: EventKind::PasswordChanged,
            at: now,
            client: client.clone(),
            actor_id: None,
            details: json!({ "sessions_revoked": revoked }),
        })
        .await?;
        tx.enqueue(&NewOutboxMessage {
            channel: Channel::Email,
            recipient: auth.user.email.to_string(),
            notification: Notification::PasswordChanged {
                display_name: auth.user.display_name.clone(),
                at: now.format(&Rfc3339).unwrap_or_default(),
                ip: client.ip.clone(),
                sessions_revoked: revoked,
            },
            created_at: now,
        })
        .await?;
        tx.commit().await?;
        Ok(revoked)
    }
}

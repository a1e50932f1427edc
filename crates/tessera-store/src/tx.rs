//! The changes of one use case: [`StoreTx`] over a sqlx transaction. Dropping a [`SqlTx`]
//! without committing rolls it back (sqlx issues the `ROLLBACK` when the connection returns to
//! the pool).

use crate::error::{map_conflict, map_error};
use crate::rows::{amr_json, count_to_u32, json_text, notification_json};
use async_trait::async_trait;
use sqlx::Any;
use tessera_core::clock::unix_seconds;
use tessera_core::event::NewEvent;
use tessera_core::ids::{SessionId, UserId};
use tessera_core::notification::NewOutboxMessage;
use tessera_core::session::Session;
use tessera_core::store::{NewUser, StoreResult, StoreTx};
use tessera_core::throttle::ThrottleKey;
use time::OffsetDateTime;

/// A transaction on the writer connection (SQLite) or a pooled connection (PostgreSQL).
pub(crate) struct SqlTx {
    tx: sqlx::Transaction<'static, Any>,
}

impl SqlTx {
    pub(crate) fn new(tx: sqlx::Transaction<'static, Any>) -> Self {
        Self { tx }
    }
}

#[async_trait]
impl StoreTx for SqlTx {
    async fn insert_user(&mut self, user: &NewUser) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO users (id, email, email_normalized, display_name, password_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(user.user.id.to_string())
        .bind(user.user.email.as_str())
        .bind(user.user.email.normalized())
        .bind(user.user.display_name.as_str())
        .bind(user.password_hash.as_str())
        .bind(unix_seconds(user.user.created_at))
        .execute(&mut *self.tx)
        .await
        .map_err(map_conflict("email already registered"))?;
        Ok(())
    }

    async fn set_password_hash(&mut self, user_id: UserId, password_hash: &str) -> StoreResult<()> {
        sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
            .bind(user_id.to_string())
            .bind(password_hash)
            .execute(&mut *self.tx)
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn insert_session(&mut self, session: &Session) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO sessions (id, user_id, token_hash, state, amr, created_at, last_seen_at, \
             expires_at, reauth_until, ip, user_agent) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(session.id.to_string())
        .bind(session.user_id.to_string())
        .bind(&session.token_hash.0[..])
        .bind(session.state.as_str())
        .bind(amr_json(&session.amr)?)
        .bind(unix_seconds(session.created_at))
        .bind(unix_seconds(session.last_seen_at))
        .bind(unix_seconds(session.expires_at))
        .bind(session.reauth_until.map(unix_seconds))
        .bind(session.ip.as_deref())
        .bind(session.user_agent.as_deref())
        .execute(&mut *self.tx)
        .await
        .map_err(map_conflict("session already exists"))?;
        Ok(())
    }

    async fn delete_session(&mut self, user_id: UserId, id: SessionId) -> StoreResult<bool> {
        let result = sqlx::query("DELETE FROM sessions WHERE id = $1 AND user_id = $2")
            .bind(id.to_string())
            .bind(user_id.to_string())
            .execute(&mut *self.tx)
            .await
            .map_err(map_error)?;
        Ok(result.rows_affected() > 0)
    }

    async fn delete_sessions_except(
        &mut self,
        user_id: UserId,
        keep: Option<SessionId>,
    ) -> StoreResult<u64> {
        let result = match keep {
            Some(keep) => sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND id <> $2")
                .bind(user_id.to_string())
                .bind(keep.to_string()),
            None => {
                sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(user_id.to_string())
            }
        }
        .execute(&mut *self.tx)
        .await
        .map_err(map_error)?;
        Ok(result.rows_affected())
    }

    async fn set_reauth_until(&mut self, id: SessionId, until: OffsetDateTime) -> StoreResult<()> {
        sqlx::query("UPDATE sessions SET reauth_until = $2 WHERE id = $1")
            .bind(id.to_string())
            .bind(unix_seconds(until))
            .execute(&mut *self.tx)
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn reserve_password_attempt(
        &mut self,
        key: &ThrottleKey,
        now: OffsetDateTime,
    ) -> StoreResult<Option<u32>> {
        // One conditional upsert: the `WHERE` of `DO UPDATE` refuses a locked key, and then
        // `RETURNING` yields no row (on both backends), so `None` means "locked". On
        // PostgreSQL a concurrent reservation waits for the row lock and re-checks the `WHERE`
        // against the committed row, so a lock set in the same transaction as the reservation
        // that reached the limit stops every reservation queued behind it.
        let failures = sqlx::query_scalar::<_, i64>(
            "INSERT INTO password_throttle (throttle_key, failures, locked_until) \
             VALUES ($1, 1, NULL) \
             ON CONFLICT (throttle_key) DO UPDATE SET failures = password_throttle.failures + 1 \
             WHERE password_throttle.locked_until IS NULL OR password_throttle.locked_until <= $2 \
             RETURNING failures",
        )
        .bind(&key.0[..])
        .bind(unix_seconds(now))
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(map_error)?;
        failures
            .map(|failures| count_to_u32(failures, "password_throttle.failures"))
            .transpose()
    }

    async fn lock_password(&mut self, key: &ThrottleKey, until: OffsetDateTime) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO password_throttle (throttle_key, failures, locked_until) \
             VALUES ($1, 0, $2) \
             ON CONFLICT (throttle_key) DO UPDATE SET locked_until = excluded.locked_until",
        )
        .bind(&key.0[..])
        .bind(unix_seconds(until))
        .execute(&mut *self.tx)
        .await
        .map_err(map_error)?;
        Ok(())
    }

    async fn reset_password_failures(&mut self, key: &ThrottleKey) -> StoreResult<()> {
        sqlx::query("DELETE FROM password_throttle WHERE throttle_key = $1")
            .bind(&key.0[..])
            .execute(&mut *self.tx)
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn insert_event(&mut self, event: &NewEvent) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO security_events (user_id, kind, at, ip, user_agent, actor_id, details) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(event.user_id.to_string())
        .bind(event.kind.as_str())
        .bind(unix_seconds(event.at))
        .bind(event.client.ip.as_deref())
        .bind(event.client.user_agent.as_deref())
        .bind(event.actor_id.map(|actor| actor.to_string()))
        .bind(json_text(&event.details)?)
        .execute(&mut *self.tx)
        .await
        .map_err(map_error)?;
        Ok(())
    }

    async fn enqueue(&mut self, message: &NewOutboxMessage) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO outbox (channel, recipient, payload, status, attempts, created_at, \
             next_attempt_at) VALUES ($1, $2, $3, 'pending', 0, $4, $4)",
        )
        .bind(message.channel.as_str())
        .bind(message.recipient.as_str())
        .bind(notification_json(&message.notification)?)
        .bind(unix_seconds(message.created_at))
        .execute(&mut *self.tx)
        .await
        .map_err(map_error)?;
        Ok(())
    }

    async fn commit(self: Box<Self>) -> StoreResult<()> {
        self.tx.commit().await.map_err(map_error)
    }
}

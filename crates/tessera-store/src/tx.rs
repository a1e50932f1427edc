//! The changes of one use case: [`StoreTx`] over a sqlx transaction. Dropping a [`SqlTx`]
//! without committing rolls it back (sqlx issues the `ROLLBACK` when the connection returns to
//! the pool).

use crate::error::{map_conflict, map_error};
use crate::rows::{
    ContactEnrollmentRow, EnrollmentRow, FactorRow, ResetRow, amr_json, contact_enrollment_columns,
    count_to_u32, enrollment_columns, factor_columns, json_text, methods_text, notification_json,
    parse_role, reset_columns, roles_text, u64_to_i64,
};
use async_trait::async_trait;
use sqlx::Any;
use tessera_core::clock::from_unix_seconds;
use tessera_core::clock::unix_seconds;
use tessera_core::crypto::TokenHash;
use tessera_core::event::NewEvent;
use tessera_core::factor::{
    Challenge, ContactEnrollment, Factor, MfaMethod, ReportState, TotpEnrollment,
};
use tessera_core::ids::{ChallengeId, EnrollmentId, FactorId, OrgId, SessionId, UserId};
use tessera_core::notification::NewOutboxMessage;
use tessera_core::org::{MfaResetRequest, OrgPolicy, Organization, Role};
use tessera_core::otc::{CODE_TTL, CodePurpose, MAX_CODE_TRIES, SendCounts};
use tessera_core::session::Session;
use tessera_core::store::{CodeSend, NewCode, NewUser, SecretOwner, StoreResult, StoreTx};
use tessera_core::throttle::ThrottleKey;
use time::{Duration, OffsetDateTime};

/// A transaction on the writer connection (SQLite) or a pooled connection (PostgreSQL).
pub(crate) struct SqlTx {
    tx: sqlx::Transaction<'static, Any>,
}

impl SqlTx {
    pub(crate) fn new(tx: sqlx::Transaction<'static, Any>) -> Self {
        Self { tx }
    }

    /// Appends an event, also the organization's when `org_id` is given.
    async fn insert_event_of(
        &mut self,
        event: &NewEvent,
        org_id: Option<OrgId>,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO security_events (user_id, kind, at, ip, user_agent, actor_id, details, \
             org_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(event.user_id.to_string())
        .bind(event.kind.as_str())
        .bind(unix_seconds(event.at))
        .bind(event.client.ip.as_deref())
        .bind(event.client.user_agent.as_deref())
        .bind(event.actor_id.map(|actor| actor.to_string()))
        .bind(json_text(&event.details)?)
        .bind(org_id.map(|id| id.to_string()))
        .execute(&mut *self.tx)
        .await
        .map_err(map_error)?;
        Ok(())
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
             expires_at, reauth_until, ip, user_agent, mfa_method) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
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
        .bind(session.mfa_method.map(MfaMethod::as_str))
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
        self.insert_event_of(event, None).await
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

    async fn put_code(&mut self, code: &NewCode) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO one_time_codes (target, purpose, user_id, code_hash, created_at, \
             expires_at, tries, used_at) VALUES ($1, $2, $3, $4, $5, $6, 0, NULL) \
             ON CONFLICT (target, purpose) DO UPDATE SET user_id = excluded.user_id, \
             code_hash = excluded.code_hash, created_at = excluded.created_at, \
             expires_at = excluded.expires_at, tries = 0, used_at = NULL",
        )
        .bind(code.target.as_str())
        .bind(code.purpose.as_str())
        .bind(code.user_id.to_string())
        .bind(&code.hash[..])
        .bind(unix_seconds(code.created_at))
        .bind(unix_seconds(code.created_at + CODE_TTL))
        .execute(&mut *self.tx)
        .await
        .map_err(map_error)?;
        Ok(())
    }

    async fn record_code_send(&mut self, send: &CodeSend) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO code_sends (user_id, target, destination_hash, sent_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(send.user_id.to_string())
        .bind(send.target.as_str())
        .bind(&send.destination_hash[..])
        .bind(unix_seconds(send.sent_at))
        .execute(&mut *self.tx)
        .await
        .map_err(map_error)?;
        Ok(())
    }

    async fn send_counts(
        &mut self,
        user_id: UserId,
        target: &str,
        destination_hash: &[u8; 32],
        now: OffsetDateTime,
    ) -> StoreResult<SendCounts> {
        let (last_to_target, account, account_oldest, destination, destination_oldest) =
            sqlx::query_as::<_, (Option<i64>, i64, Option<i64>, i64, Option<i64>)>(
                "SELECT \
                 (SELECT MAX(sent_at) FROM code_sends WHERE target = $1), \
                 (SELECT COUNT(*) FROM code_sends WHERE user_id = $2 AND sent_at > $4), \
                 (SELECT MIN(sent_at) FROM code_sends WHERE user_id = $2 AND sent_at > $4), \
                 (SELECT COUNT(*) FROM code_sends WHERE destination_hash = $3 AND sent_at > $5), \
                 (SELECT MIN(sent_at) FROM code_sends WHERE destination_hash = $3 AND sent_at > $5)",
            )
            .bind(target)
            .bind(user_id.to_string())
            .bind(&destination_hash[..])
            .bind(unix_seconds(now - Duration::HOUR))
            .bind(unix_seconds(now - Duration::DAY))
            .fetch_one(&mut *self.tx)
            .await
            .map_err(map_error)?;
        Ok(SendCounts {
            last_to_target: last_to_target.map(from_unix_seconds),
            account_last_hour: count_to_u32(account, "code_sends per account")?,
            account_oldest: account_oldest.map(from_unix_seconds),
            destination_last_day: count_to_u32(destination, "code_sends per destination")?,
            destination_oldest: destination_oldest.map(from_unix_seconds),
        })
    }

    async fn use_code(
        &mut self,
        user_id: UserId,
        target: &str,
        purpose: CodePurpose,
        hash: &[u8; 32],
        now: OffsetDateTime,
    ) -> StoreResult<bool> {
        let result = sqlx::query(
            "UPDATE one_time_codes SET used_at = $5 \
             WHERE target = $1 AND purpose = $2 AND user_id = $3 AND code_hash = $4 \
             AND used_at IS NULL AND tries < $6 AND expires_at > $5",
        )
        .bind(target)
        .bind(purpose.as_str())
        .bind(user_id.to_string())
        .bind(&hash[..])
        .bind(unix_seconds(now))
        .bind(i64::from(MAX_CODE_TRIES))
        .execute(&mut *self.tx)
        .await
        .map_err(map_error)?;
        Ok(result.rows_affected() == 1)
    }

    async fn count_wrong_code_try(
        &mut self,
        user_id: UserId,
        target: &str,
        purpose: CodePurpose,
        now: OffsetDateTime,
    ) -> StoreResult<Option<u32>> {
        let tries = sqlx::query_scalar::<_, i64>(
            "UPDATE one_time_codes SET tries = tries + 1 \
             WHERE target = $1 AND purpose = $2 AND user_id = $3 \
             AND used_at IS NULL AND tries < $5 AND expires_at > $4 RETURNING tries",
        )
        .bind(target)
        .bind(purpose.as_str())
        .bind(user_id.to_string())
        .bind(unix_seconds(now))
        .bind(i64::from(MAX_CODE_TRIES))
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(map_error)?;
        tries
            .map(|tries| count_to_u32(tries, "one_time_codes.tries"))
            .transpose()
    }

    async fn lock_user_mfa(&mut self, user_id: UserId) -> StoreResult<()> {
        // A no-op write to a non-key column: on PostgreSQL it takes the row lock without
        // blocking inserts that reference the user (sessions, events); on SQLite the first
        // write of a transaction takes the database's write lock.
        sqlx::query("UPDATE users SET display_name = display_name WHERE id = $1")
            .bind(user_id.to_string())
            .execute(&mut *self.tx)
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn void_mfa_resets(&mut self, user_id: UserId, now: OffsetDateTime) -> StoreResult<()> {
        sqlx::query(
            "UPDATE mfa_resets SET expires_at = $2 \
             WHERE user_id = $1 AND opened_at IS NULL AND expires_at > $2",
        )
        .bind(user_id.to_string())
        .bind(unix_seconds(now))
        .execute(&mut *self.tx)
        .await
        .map_err(map_error)?;
        Ok(())
    }

    async fn insert_mfa_reset(&mut self, reset: &MfaResetRequest) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO mfa_resets (id, user_id, org_id, requested_by, token_hash, created_at, \
             expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(reset.id.to_string())
        .bind(reset.user_id.to_string())
        .bind(reset.org_id.map(|id| id.to_string()))
        .bind(reset.requested_by.map(|id| id.to_string()))
        .bind(&reset.token_hash.0[..])
        .bind(unix_seconds(reset.created_at))
        .bind(unix_seconds(reset.expires_at))
        .execute(&mut *self.tx)
        .await
        .map_err(map_conflict("reset already exists"))?;
        Ok(())
    }

    async fn open_mfa_reset(
        &mut self,
        token_hash: &TokenHash,
        session_id: SessionId,
        now: OffsetDateTime,
    ) -> StoreResult<Option<MfaResetRequest>> {
        sqlx::query_as::<_, ResetRow>(concat!(
            "UPDATE mfa_resets SET opened_at = $3, session_id = $2 \
             WHERE token_hash = $1 AND opened_at IS NULL AND expires_at > $3 RETURNING ",
            reset_columns!()
        ))
        .bind(&token_hash.0[..])
        .bind(session_id.to_string())
        .bind(unix_seconds(now))
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(map_error)?
        .map(MfaResetRequest::try_from)
        .transpose()
    }

    async fn complete_mfa_reset(
        &mut self,
        session_id: SessionId,
        now: OffsetDateTime,
    ) -> StoreResult<Option<MfaResetRequest>> {
        sqlx::query_as::<_, ResetRow>(concat!(
            "UPDATE mfa_resets SET completed_at = $2 \
             WHERE session_id = $1 AND completed_at IS NULL RETURNING ",
            reset_columns!()
        ))
        .bind(session_id.to_string())
        .bind(unix_seconds(now))
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(map_error)?
        .map(MfaResetRequest::try_from)
        .transpose()
    }

    async fn set_session_full(&mut self, id: SessionId) -> StoreResult<()> {
        sqlx::query("UPDATE sessions SET state = 'full' WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *self.tx)
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn insert_org(&mut self, org: &Organization) -> StoreResult<()> {
        sqlx::query("INSERT INTO organizations (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(org.id.to_string())
            .bind(org.name.as_str())
            .bind(unix_seconds(org.created_at))
            .execute(&mut *self.tx)
            .await
            .map_err(map_conflict("organization already exists"))?;
        self.set_org_policy(org.id, &org.policy, org.created_at)
            .await
    }

    async fn lock_org(&mut self, id: OrgId) -> StoreResult<bool> {
        let result = sqlx::query("UPDATE organizations SET name = name WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *self.tx)
            .await
            .map_err(map_error)?;
        Ok(result.rows_affected() == 1)
    }

    async fn member_role(&mut self, org_id: OrgId, user_id: UserId) -> StoreResult<Option<Role>> {
        sqlx::query_scalar::<_, String>(
            "SELECT role FROM org_members WHERE org_id = $1 AND user_id = $2",
        )
        .bind(org_id.to_string())
        .bind(user_id.to_string())
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(map_error)?
        .map(|role| parse_role(&role))
        .transpose()
    }

    async fn count_members_with_role(&mut self, org_id: OrgId, role: Role) -> StoreResult<u32> {
        let count = sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM org_members WHERE org_id = $1 AND role = $2",
        )
        .bind(org_id.to_string())
        .bind(role.as_str())
        .fetch_one(&mut *self.tx)
        .await
        .map_err(map_error)?;
        count_to_u32(count, "org_members.count")
    }

    async fn insert_member(
        &mut self,
        org_id: OrgId,
        user_id: UserId,
        role: Role,
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO org_members (org_id, user_id, role, added_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(org_id.to_string())
        .bind(user_id.to_string())
        .bind(role.as_str())
        .bind(unix_seconds(now))
        .execute(&mut *self.tx)
        .await
        .map_err(map_conflict("already a member of this organization"))?;
        Ok(())
    }

    async fn set_member_role(
        &mut self,
        org_id: OrgId,
        user_id: UserId,
        role: Role,
    ) -> StoreResult<bool> {
        let result =
            sqlx::query("UPDATE org_members SET role = $3 WHERE org_id = $1 AND user_id = $2")
                .bind(org_id.to_string())
                .bind(user_id.to_string())
                .bind(role.as_str())
                .execute(&mut *self.tx)
                .await
                .map_err(map_error)?;
        Ok(result.rows_affected() == 1)
    }

    async fn delete_member(&mut self, org_id: OrgId, user_id: UserId) -> StoreResult<bool> {
        let result = sqlx::query("DELETE FROM org_members WHERE org_id = $1 AND user_id = $2")
            .bind(org_id.to_string())
            .bind(user_id.to_string())
            .execute(&mut *self.tx)
            .await
            .map_err(map_error)?;
        Ok(result.rows_affected() == 1)
    }

    async fn set_org_policy(
        &mut self,
        org_id: OrgId,
        policy: &OrgPolicy,
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE organizations SET mfa_required = $2, policy_roles = $3, policy_scope = $4, \
             grace_period_hours = $5, allowed_methods = $6, allow_disable = $7, \
             app_mfa_max_age_seconds = $8, policy_updated_at = $9 WHERE id = $1",
        )
        .bind(org_id.to_string())
        .bind(i64::from(policy.mfa_required))
        .bind(roles_text(&policy.roles))
        .bind(policy.scope.as_str())
        .bind(i64::from(policy.grace_period_hours))
        .bind(methods_text(policy.allowed_methods))
        .bind(i64::from(policy.allow_disable))
        .bind(policy.app_mfa_max_age_seconds.map(i64::from))
        .bind(unix_seconds(now))
        .execute(&mut *self.tx)
        .await
        .map_err(map_error)?;
        Ok(())
    }

    async fn insert_org_event(&mut self, org_id: OrgId, event: &NewEvent) -> StoreResult<()> {
        self.insert_event_of(event, Some(org_id)).await
    }

    async fn record_mfa_requirement(
        &mut self,
        user_id: UserId,
        source: &str,
        since: OffsetDateTime,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO mfa_requirements (user_id, source, since) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id, source) DO NOTHING",
        )
        .bind(user_id.to_string())
        .bind(source)
        .bind(unix_seconds(since))
        .execute(&mut *self.tx)
        .await
        .map_err(map_error)?;
        Ok(())
    }

    async fn clear_mfa_requirements(
        &mut self,
        user_id: UserId,
        keep: &[String],
    ) -> StoreResult<()> {
        let sources = sqlx::query_scalar::<_, String>(
            "SELECT source FROM mfa_requirements WHERE user_id = $1",
        )
        .bind(user_id.to_string())
        .fetch_all(&mut *self.tx)
        .await
        .map_err(map_error)?;
        for source in sources.iter().filter(|s| !keep.contains(s)) {
            sqlx::query("DELETE FROM mfa_requirements WHERE user_id = $1 AND source = $2")
                .bind(user_id.to_string())
                .bind(source.as_str())
                .execute(&mut *self.tx)
                .await
                .map_err(map_error)?;
        }
        Ok(())
    }

    async fn insert_contact_enrollment(
        &mut self,
        enrollment: &ContactEnrollment,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO contact_enrollments (id, user_id, factor_id, kind, destination, \
             created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(enrollment.id.to_string())
        .bind(enrollment.user_id.to_string())
        .bind(enrollment.factor_id.to_string())
        .bind(enrollment.kind.as_str())
        .bind(enrollment.destination.as_str())
        .bind(unix_seconds(enrollment.created_at))
        .bind(unix_seconds(enrollment.expires_at))
        .execute(&mut *self.tx)
        .await
        .map_err(map_conflict("enrollment already exists"))?;
        Ok(())
    }

    async fn open_contact_enrollment(
        &mut self,
        user_id: UserId,
        id: EnrollmentId,
        now: OffsetDateTime,
    ) -> StoreResult<Option<ContactEnrollment>> {
        sqlx::query_as::<_, ContactEnrollmentRow>(concat!(
            "SELECT ",
            contact_enrollment_columns!(),
            " FROM contact_enrollments WHERE id = $1 AND user_id = $2 AND expires_at > $3"
        ))
        .bind(id.to_string())
        .bind(user_id.to_string())
        .bind(unix_seconds(now))
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(map_error)?
        .map(ContactEnrollment::try_from)
        .transpose()
    }

    async fn take_contact_enrollment(
        &mut self,
        user_id: UserId,
        id: EnrollmentId,
        now: OffsetDateTime,
    ) -> StoreResult<Option<ContactEnrollment>> {
        sqlx::query_as::<_, ContactEnrollmentRow>(concat!(
            "DELETE FROM contact_enrollments WHERE id = $1 AND user_id = $2 AND expires_at > $3 \
             RETURNING ",
            contact_enrollment_columns!()
        ))
        .bind(id.to_string())
        .bind(user_id.to_string())
        .bind(unix_seconds(now))
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(map_error)?
        .map(ContactEnrollment::try_from)
        .transpose()
    }

    async fn mark_factor_used(
        &mut self,
        factor_id: FactorId,
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        sqlx::query("UPDATE factors SET last_used_at = $2 WHERE id = $1")
            .bind(factor_id.to_string())
            .bind(unix_seconds(now))
            .execute(&mut *self.tx)
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn set_factor_label(
        &mut self,
        user_id: UserId,
        id: FactorId,
        label: &str,
    ) -> StoreResult<bool> {
        let result = sqlx::query("UPDATE factors SET label = $3 WHERE id = $1 AND user_id = $2")
            .bind(id.to_string())
            .bind(user_id.to_string())
            .bind(label)
            .execute(&mut *self.tx)
            .await
            .map_err(map_error)?;
        Ok(result.rows_affected() == 1)
    }

    async fn set_preferred_factor(&mut self, user_id: UserId, id: FactorId) -> StoreResult<bool> {
        // One statement: the named factor becomes preferred and every other one stops being,
        // and nothing changes when the user has no such factor.
        let result = sqlx::query(
            "UPDATE factors SET preferred = CASE WHEN id = $2 THEN 1 ELSE 0 END \
             WHERE user_id = $1 AND EXISTS (SELECT 1 FROM factors WHERE id = $2 AND user_id = $1)",
        )
        .bind(user_id.to_string())
        .bind(id.to_string())
        .execute(&mut *self.tx)
        .await
        .map_err(map_error)?;
        Ok(result.rows_affected() > 0)
    }

    async fn factors_of_user(&mut self, user_id: UserId) -> StoreResult<Vec<Factor>> {
        sqlx::query_as::<_, FactorRow>(concat!(
            "SELECT ",
            factor_columns!(),
            " FROM factors WHERE user_id = $1 ORDER BY created_at, id"
        ))
        .bind(user_id.to_string())
        .fetch_all(&mut *self.tx)
        .await
        .map_err(map_error)?
        .into_iter()
        .map(Factor::try_from)
        .collect()
    }

    async fn unused_backup_codes(&mut self, user_id: UserId) -> StoreResult<u32> {
        let count = sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM backup_codes WHERE user_id = $1 AND used_at IS NULL",
        )
        .bind(user_id.to_string())
        .fetch_one(&mut *self.tx)
        .await
        .map_err(map_error)?;
        count_to_u32(count, "backup_codes.count")
    }

    async fn insert_totp_enrollment(&mut self, enrollment: &TotpEnrollment) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO totp_enrollments (id, user_id, factor_id, secret_sealed, key_id, \
             attempts, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(enrollment.id.to_string())
        .bind(enrollment.user_id.to_string())
        .bind(enrollment.factor_id.to_string())
        .bind(enrollment.secret_sealed.as_slice())
        .bind(i64::from(enrollment.key_id))
        .bind(i64::from(enrollment.attempts))
        .bind(unix_seconds(enrollment.created_at))
        .bind(unix_seconds(enrollment.expires_at))
        .execute(&mut *self.tx)
        .await
        .map_err(map_conflict("enrollment already exists"))?;
        Ok(())
    }

    async fn count_enrollment_attempt(&mut self, id: EnrollmentId, max: u32) -> StoreResult<bool> {
        let result = sqlx::query(
            "UPDATE totp_enrollments SET attempts = attempts + 1 WHERE id = $1 AND attempts < $2",
        )
        .bind(id.to_string())
        .bind(i64::from(max))
        .execute(&mut *self.tx)
        .await
        .map_err(map_error)?;
        Ok(result.rows_affected() > 0)
    }

    async fn take_totp_enrollment(
        &mut self,
        user_id: UserId,
        id: EnrollmentId,
        now: OffsetDateTime,
    ) -> StoreResult<Option<TotpEnrollment>> {
        sqlx::query_as::<_, EnrollmentRow>(concat!(
            "DELETE FROM totp_enrollments WHERE id = $1 AND user_id = $2 AND expires_at > $3 \
             RETURNING ",
            enrollment_columns!()
        ))
        .bind(id.to_string())
        .bind(user_id.to_string())
        .bind(unix_seconds(now))
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(map_error)?
        .map(TotpEnrollment::try_from)
        .transpose()
    }

    async fn insert_factor(&mut self, factor: &Factor) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO factors (id, user_id, kind, label, secret_sealed, key_id, last_step, \
             preferred, created_at, last_used_at, destination) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(factor.id.to_string())
        .bind(factor.user_id.to_string())
        .bind(factor.kind.as_str())
        .bind(factor.label.as_str())
        .bind(factor.secret_sealed.as_deref())
        .bind(factor.key_id.map(i64::from))
        .bind(factor.last_step.map(u64_to_i64))
        .bind(i64::from(factor.preferred))
        .bind(unix_seconds(factor.created_at))
        .bind(factor.last_used_at.map(unix_seconds))
        .bind(factor.destination.as_deref())
        .execute(&mut *self.tx)
        .await
        .map_err(map_conflict("factor already exists"))?;
        Ok(())
    }

    async fn delete_factor(&mut self, user_id: UserId, id: FactorId) -> StoreResult<bool> {
        let result = sqlx::query("DELETE FROM factors WHERE id = $1 AND user_id = $2")
            .bind(id.to_string())
            .bind(user_id.to_string())
            .execute(&mut *self.tx)
            .await
            .map_err(map_error)?;
        Ok(result.rows_affected() > 0)
    }

    async fn delete_factors(&mut self, user_id: UserId) -> StoreResult<u64> {
        let result = sqlx::query("DELETE FROM factors WHERE user_id = $1")
            .bind(user_id.to_string())
            .execute(&mut *self.tx)
            .await
            .map_err(map_error)?;
        Ok(result.rows_affected())
    }

    async fn ensure_preferred_factor(&mut self, user_id: UserId) -> StoreResult<()> {
        sqlx::query(
            "UPDATE factors SET preferred = 1 WHERE id = \
             (SELECT id FROM factors WHERE user_id = $1 ORDER BY created_at, id LIMIT 1) \
             AND NOT EXISTS (SELECT 1 FROM factors WHERE user_id = $1 AND preferred = 1)",
        )
        .bind(user_id.to_string())
        .execute(&mut *self.tx)
        .await
        .map_err(map_error)?;
        Ok(())
    }

    async fn advance_totp_step(
        &mut self,
        factor_id: FactorId,
        step: u64,
        now: OffsetDateTime,
    ) -> StoreResult<bool> {
        let result = sqlx::query(
            "UPDATE factors SET last_step = $2, last_used_at = $3 \
             WHERE id = $1 AND (last_step IS NULL OR last_step < $2)",
        )
        .bind(factor_id.to_string())
        .bind(u64_to_i64(step))
        .bind(unix_seconds(now))
        .execute(&mut *self.tx)
        .await
        .map_err(map_error)?;
        Ok(result.rows_affected() == 1)
    }

    async fn replace_backup_codes(
        &mut self,
        user_id: UserId,
        hashes: &[[u8; 32]],
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        self.delete_backup_codes(user_id).await?;
        if hashes.is_empty() {
            return Ok(());
        }
        // One multi-row INSERT; the statement text depends only on the number of codes, and
        // every value is bound.
        let values: Vec<String> = (0..hashes.len())
            .map(|i| format!("($1, $2, ${})", i + 3))
            .collect();
        let sql = format!(
            "INSERT INTO backup_codes (user_id, created_at, code_hash) VALUES {}",
            values.join(", ")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(user_id.to_string())
            .bind(unix_seconds(now));
        for hash in hashes {
            query = query.bind(&hash[..]);
        }
        query
            .execute(&mut *self.tx)
            .await
            .map_err(map_conflict("duplicate backup code"))?;
        Ok(())
    }

    async fn delete_backup_codes(&mut self, user_id: UserId) -> StoreResult<u64> {
        let result = sqlx::query("DELETE FROM backup_codes WHERE user_id = $1")
            .bind(user_id.to_string())
            .execute(&mut *self.tx)
            .await
            .map_err(map_error)?;
        Ok(result.rows_affected())
    }

    async fn consume_backup_code(
        &mut self,
        user_id: UserId,
        hash: &[u8; 32],
        now: OffsetDateTime,
    ) -> StoreResult<Option<u32>> {
        let result = sqlx::query(
            "UPDATE backup_codes SET used_at = $3 \
             WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL",
        )
        .bind(user_id.to_string())
        .bind(&hash[..])
        .bind(unix_seconds(now))
        .execute(&mut *self.tx)
        .await
        .map_err(map_error)?;
        if result.rows_affected() != 1 {
            return Ok(None);
        }
        let remaining = sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM backup_codes WHERE user_id = $1 AND used_at IS NULL",
        )
        .bind(user_id.to_string())
        .fetch_one(&mut *self.tx)
        .await
        .map_err(map_error)?;
        count_to_u32(remaining, "backup_codes.count").map(Some)
    }

    async fn insert_challenge(&mut self, challenge: &Challenge) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO mfa_challenges (id, token_hash, user_id, purpose, created_at, \
             expires_at, completed_at, ip, user_agent) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(challenge.id.to_string())
        .bind(&challenge.token_hash.0[..])
        .bind(challenge.user_id.to_string())
        .bind(challenge.purpose.as_str())
        .bind(unix_seconds(challenge.created_at))
        .bind(unix_seconds(challenge.expires_at))
        .bind(challenge.completed_at.map(unix_seconds))
        .bind(challenge.ip.as_deref())
        .bind(challenge.user_agent.as_deref())
        .execute(&mut *self.tx)
        .await
        .map_err(map_conflict("challenge already exists"))?;
        Ok(())
    }

    async fn complete_challenge(
        &mut self,
        id: ChallengeId,
        now: OffsetDateTime,
    ) -> StoreResult<bool> {
        let result = sqlx::query(
            "UPDATE mfa_challenges SET completed_at = $2 \
             WHERE id = $1 AND completed_at IS NULL AND expires_at > $2",
        )
        .bind(id.to_string())
        .bind(unix_seconds(now))
        .execute(&mut *self.tx)
        .await
        .map_err(map_error)?;
        Ok(result.rows_affected() == 1)
    }

    async fn record_second_factor_failure(
        &mut self,
        user_id: UserId,
        now: OffsetDateTime,
        limit: u32,
        lock_until: OffsetDateTime,
    ) -> StoreResult<Option<u32>> {
        // One conditional upsert, like the password reservation: a running lock refuses the
        // update (no row returned: `None`); an ended lock starts a new count; reaching the
        // limit sets the lock in the same statement, so a parallel guess queued behind this
        // one finds it.
        let failures = sqlx::query_scalar::<_, i64>(
            "INSERT INTO second_factor_throttle AS t (user_id, failures, locked_until) \
             VALUES ($1, 1, CASE WHEN 1 >= $3 THEN $4 ELSE NULL END) \
             ON CONFLICT (user_id) DO UPDATE SET \
               failures = CASE WHEN t.locked_until IS NOT NULL THEN 1 ELSE t.failures + 1 END, \
               locked_until = CASE \
                 WHEN (CASE WHEN t.locked_until IS NOT NULL THEN 1 ELSE t.failures + 1 END) >= $3 \
                 THEN $4 ELSE NULL END \
             WHERE t.locked_until IS NULL OR t.locked_until <= $2 \
             RETURNING failures",
        )
        .bind(user_id.to_string())
        .bind(unix_seconds(now))
        .bind(i64::from(limit))
        .bind(unix_seconds(lock_until))
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(map_error)?;
        failures
            .map(|failures| count_to_u32(failures, "second_factor_throttle.failures"))
            .transpose()
    }

    async fn clear_second_factor_failures(
        &mut self,
        user_id: UserId,
    ) -> StoreResult<Option<OffsetDateTime>> {
        let locked_until = sqlx::query_scalar::<_, Option<i64>>(
            "DELETE FROM second_factor_throttle WHERE user_id = $1 RETURNING locked_until",
        )
        .bind(user_id.to_string())
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(map_error)?;
        Ok(locked_until.flatten().map(from_unix_seconds))
    }

    async fn set_session_mfa(
        &mut self,
        id: SessionId,
        method: MfaMethod,
        amr: &[String],
    ) -> StoreResult<()> {
        sqlx::query("UPDATE sessions SET mfa_method = $2, amr = $3, state = 'full' WHERE id = $1")
            .bind(id.to_string())
            .bind(method.as_str())
            .bind(amr_json(amr)?)
            .execute(&mut *self.tx)
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn mark_challenge_reported(
        &mut self,
        id: ChallengeId,
        state: ReportState,
        now: OffsetDateTime,
    ) -> StoreResult<bool> {
        let result = sqlx::query(
            "UPDATE mfa_challenges SET report_state = $2, reported_at = $3 \
             WHERE id = $1 AND report_state IS NULL AND completed_at IS NULL",
        )
        .bind(id.to_string())
        .bind(state.as_str())
        .bind(unix_seconds(now))
        .execute(&mut *self.tx)
        .await
        .map_err(map_error)?;
        Ok(result.rows_affected() == 1)
    }

    async fn last_unfinished_signin_report(
        &mut self,
        user_id: UserId,
    ) -> StoreResult<Option<OffsetDateTime>> {
        let at = sqlx::query_scalar::<_, Option<i64>>(
            "SELECT MAX(reported_at) FROM mfa_challenges WHERE user_id = $1 AND report_state = 'sent'",
        )
        .bind(user_id.to_string())
        .fetch_one(&mut *self.tx)
        .await
        .map_err(map_error)?;
        Ok(at.map(from_unix_seconds))
    }

    async fn reseal_secret(
        &mut self,
        owner: SecretOwner,
        previous: &[u8],
        sealed: &[u8],
        key_id: u32,
    ) -> StoreResult<bool> {
        let (sql, id) = match owner {
            SecretOwner::Factor(id) => (
                "UPDATE factors SET secret_sealed = $2, key_id = $3 WHERE id = $1 AND secret_sealed = $4",
                id.to_string(),
            ),
            SecretOwner::Enrollment { id, .. } => (
                "UPDATE totp_enrollments SET secret_sealed = $2, key_id = $3 WHERE id = $1 AND secret_sealed = $4",
                id.to_string(),
            ),
        };
        let result = sqlx::query(sql)
            .bind(id)
            .bind(sealed)
            .bind(i64::from(key_id))
            .bind(previous)
            .execute(&mut *self.tx)
            .await
            .map_err(map_error)?;
        Ok(result.rows_affected() == 1)
    }

    async fn commit(self: Box<Self>) -> StoreResult<()> {
        self.tx.commit().await.map_err(map_error)
    }
}

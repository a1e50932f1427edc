//! Reads, single-statement writes and the entry to transactions: [`Store`] for [`SqlStore`].

use crate::error::map_error;
use crate::rows::{
    ChallengeRow, CodeRow, ContactEnrollmentRow, ContextFactorRow, CredentialsRow, EnrollmentRow,
    EventRow, FactorRow, MemberRow, OrgRoleRow, OrgRow, OutboxRow, ResetRow, SealedSecretRow,
    SessionRow, ThrottleRow, UserRow, challenge_columns, contact_enrollment_columns,
    enrollment_columns, event_columns, factor_columns, org_columns, parse_role, reset_columns,
    session_columns, user_columns,
};
use crate::tx::SqlTx;
use crate::{SqlStore, dialect};
use async_trait::async_trait;
use tessera_core::clock::from_unix_seconds;
use tessera_core::clock::unix_seconds;
use tessera_core::crypto::TokenHash;
use tessera_core::event::SecurityEvent;
use tessera_core::factor::{
    BackupCodeStatus, Challenge, ContactEnrollment, Factor, TotpEnrollment,
};
use tessera_core::ids::{EnrollmentId, OrgId, SessionId, UserId};
use tessera_core::notification::{Channel, OutboxMessage};
use tessera_core::org::{MfaResetRequest, OrgMember, Organization, Role};
use tessera_core::otc::{CodePurpose, IssuedCode};
use tessera_core::session::Session;
use tessera_core::store::{
    PassedTotpStep, SealedSecret, SecondStepContext, Store, StoreResult, StoreTx, TotpStepOutcome,
};
use tessera_core::throttle::{PasswordThrottle, SecondFactorThrottle, ThrottleKey};
use tessera_core::user::{User, UserCredentials};
use time::OffsetDateTime;

/// The longest delivery error kept in the outbox, in characters.
const MAX_OUTBOX_ERROR_CHARS: usize = 1000;

#[async_trait]
impl Store for SqlStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.reader)
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn begin(&self) -> StoreResult<Box<dyn StoreTx>> {
        let tx = self.writer.begin().await.map_err(map_error)?;
        Ok(Box::new(SqlTx::new(tx)))
    }

    async fn user_by_id(&self, id: UserId) -> StoreResult<Option<User>> {
        sqlx::query_as::<_, UserRow>(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.reader)
        .await
        .map_err(map_error)?
        .map(User::try_from)
        .transpose()
    }

    async fn credentials_by_email(
        &self,
        email_normalized: &str,
    ) -> StoreResult<Option<UserCredentials>> {
        sqlx::query_as::<_, CredentialsRow>(concat!(
            "SELECT ",
            user_columns!(),
            ", password_hash FROM users WHERE email_normalized = $1"
        ))
        .bind(email_normalized)
        .fetch_optional(&self.reader)
        .await
        .map_err(map_error)?
        .map(UserCredentials::try_from)
        .transpose()
    }

    async fn password_hash(&self, id: UserId) -> StoreResult<Option<String>> {
        sqlx::query_scalar::<_, String>("SELECT password_hash FROM users WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await
            .map_err(map_error)
    }

    async fn list_users(&self) -> StoreResult<Vec<User>> {
        sqlx::query_as::<_, UserRow>(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users ORDER BY created_at, id"
        ))
        .fetch_all(&self.reader)
        .await
        .map_err(map_error)?
        .into_iter()
        .map(User::try_from)
        .collect()
    }

    async fn session_by_token_hash(&self, token_hash: &TokenHash) -> StoreResult<Option<Session>> {
        sqlx::query_as::<_, SessionRow>(concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE token_hash = $1"
        ))
        .bind(&token_hash.0[..])
        .fetch_optional(&self.reader)
        .await
        .map_err(map_error)?
        .map(Session::try_from)
        .transpose()
    }

    async fn sessions_of(&self, user_id: UserId, now: OffsetDateTime) -> StoreResult<Vec<Session>> {
        sqlx::query_as::<_, SessionRow>(concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE user_id = $1 AND expires_at > $2 \
             ORDER BY created_at DESC, id DESC"
        ))
        .bind(user_id.to_string())
        .bind(unix_seconds(now))
        .fetch_all(&self.reader)
        .await
        .map_err(map_error)?
        .into_iter()
        .map(Session::try_from)
        .collect()
    }

    async fn touch_session(
        &self,
        id: SessionId,
        now: OffsetDateTime,
        stale_before: OffsetDateTime,
    ) -> StoreResult<()> {
        sqlx::query("UPDATE sessions SET last_seen_at = $2 WHERE id = $1 AND last_seen_at < $3")
            .bind(id.to_string())
            .bind(unix_seconds(now))
            .bind(unix_seconds(stale_before))
            .execute(&self.writer)
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn password_throttle(&self, key: &ThrottleKey) -> StoreResult<PasswordThrottle> {
        sqlx::query_as::<_, ThrottleRow>(
            "SELECT failures, locked_until FROM password_throttle WHERE throttle_key = $1",
        )
        .bind(&key.0[..])
        .fetch_optional(&self.reader)
        .await
        .map_err(map_error)?
        .map_or(Ok(PasswordThrottle::default()), PasswordThrottle::try_from)
    }

    async fn ensure_key_check(&self, check: &[u8], now: OffsetDateTime) -> StoreResult<bool> {
        // The first caller's value wins: a concurrent insert waits for the winner (the primary
        // key) and then does nothing. Both statements run on the writer so the read sees the
        // row whichever instance wrote it. `created_at` is informational only, so it is read
        // from the system clock rather than passed in.
        sqlx::query(
            "INSERT INTO instance_keys (id, pepper_check, created_at) VALUES (1, $1, $2) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(check)
        .bind(unix_seconds(now))
        .execute(&self.writer)
        .await
        .map_err(map_error)?;
        let recorded =
            sqlx::query_scalar::<_, Vec<u8>>("SELECT pepper_check FROM instance_keys WHERE id = 1")
                .fetch_one(&self.writer)
                .await
                .map_err(map_error)?;
        Ok(recorded == check)
    }

    async fn events_of(
        &self,
        user_id: UserId,
        before: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<SecurityEvent>> {
        sqlx::query_as::<_, EventRow>(concat!(
            "SELECT ",
            event_columns!(),
            " FROM security_events WHERE user_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
        ))
        .bind(user_id.to_string())
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(map_error)?
        .into_iter()
        .map(SecurityEvent::try_from)
        .collect()
    }

    async fn claim_outbox_message(
        &self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
    ) -> StoreResult<Option<OutboxMessage>> {
        let claimed = sqlx::query_as::<_, OutboxRow>(dialect::claim_outbox_sql(self.backend))
            .bind(unix_seconds(now))
            .bind(unix_seconds(lease_until))
            .fetch_optional(&self.writer)
            .await
            .map_err(map_error)?;
        let Some(row) = claimed else {
            return Ok(None);
        };
        let id = row.id;
        match OutboxMessage::try_from(row) {
            Ok(message) => Ok(Some(message)),
            Err(error) => {
                // A message no worker can read would be claimed again after every lease; park
                // it as failed so it stops blocking the queue, and report the corruption.
                tracing::warn!(
                    outbox_id = id,
                    "parking an undecodable outbox message as failed"
                );
                self.mark_outbox_failed(id, "undecodable message").await?;
                Err(error)
            }
        }
    }

    async fn mark_outbox_sent(&self, id: i64, now: OffsetDateTime) -> StoreResult<()> {
        sqlx::query(
            "UPDATE outbox SET status = 'sent', sent_at = $2, attempts = attempts + 1, \
             locked_until = NULL, last_error = NULL WHERE id = $1",
        )
        .bind(id)
        .bind(unix_seconds(now))
        .execute(&self.writer)
        .await
        .map_err(map_error)?;
        Ok(())
    }

    async fn mark_outbox_retry(
        &self,
        id: i64,
        next_attempt_at: OffsetDateTime,
        error: &str,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $2, \
             locked_until = NULL, last_error = $3 WHERE id = $1 AND status = 'pending'",
        )
        .bind(id)
        .bind(unix_seconds(next_attempt_at))
        .bind(truncate(error))
        .execute(&self.writer)
        .await
        .map_err(map_error)?;
        Ok(())
    }

    async fn mark_outbox_failed(&self, id: i64, error: &str) -> StoreResult<()> {
        sqlx::query(
            "UPDATE outbox SET status = 'failed', attempts = attempts + 1, \
             locked_until = NULL, last_error = $2 WHERE id = $1 AND status = 'pending'",
        )
        .bind(id)
        .bind(truncate(error))
        .execute(&self.writer)
        .await
        .map_err(map_error)?;
        Ok(())
    }

    async fn outbox_backlog(&self) -> StoreResult<i64> {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM outbox WHERE status = 'pending'")
            .fetch_one(&self.reader)
            .await
            .map_err(map_error)
    }

    async fn delete_expired_sessions(&self, before: OffsetDateTime) -> StoreResult<u64> {
        let result = sqlx::query("DELETE FROM sessions WHERE expires_at < $1")
            .bind(unix_seconds(before))
            .execute(&self.writer)
            .await
            .map_err(map_error)?;
        Ok(result.rows_affected())
    }

    async fn delete_expired_mfa_state(
        &self,
        before: OffsetDateTime,
        challenges_before: OffsetDateTime,
    ) -> StoreResult<u64> {
        let enrollments = sqlx::query("DELETE FROM totp_enrollments WHERE expires_at < $1")
            .bind(unix_seconds(before))
            .execute(&self.writer)
            .await
            .map_err(map_error)?;
        let challenges = sqlx::query("DELETE FROM mfa_challenges WHERE expires_at < $1")
            .bind(unix_seconds(challenges_before))
            .execute(&self.writer)
            .await
            .map_err(map_error)?;
        let contact = sqlx::query("DELETE FROM contact_enrollments WHERE expires_at < $1")
            .bind(unix_seconds(before))
            .execute(&self.writer)
            .await
            .map_err(map_error)?;
        let codes = sqlx::query("DELETE FROM one_time_codes WHERE expires_at < $1")
            .bind(unix_seconds(before))
            .execute(&self.writer)
            .await
            .map_err(map_error)?;
        // The send limits look back a day at most.
        let sends = sqlx::query("DELETE FROM code_sends WHERE sent_at < $1")
            .bind(unix_seconds(before - time::Duration::DAY))
            .execute(&self.writer)
            .await
            .map_err(map_error)?;
        Ok(enrollments.rows_affected()
            + challenges.rows_affected()
            + contact.rows_affected()
            + codes.rows_affected()
            + sends.rows_affected())
    }

    async fn contact_enrollment(
        &self,
        user_id: UserId,
        id: EnrollmentId,
    ) -> StoreResult<Option<ContactEnrollment>> {
        sqlx::query_as::<_, ContactEnrollmentRow>(concat!(
            "SELECT ",
            contact_enrollment_columns!(),
            " FROM contact_enrollments WHERE id = $1 AND user_id = $2"
        ))
        .bind(id.to_string())
        .bind(user_id.to_string())
        .fetch_optional(&self.reader)
        .await
        .map_err(map_error)?
        .map(ContactEnrollment::try_from)
        .transpose()
    }

    async fn delivery_failing(&self, channel: Channel, since: OffsetDateTime) -> StoreResult<bool> {
        let failing = sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM outbox WHERE channel = $1 AND created_at >= $2 \
             AND status <> 'sent' AND last_error IS NOT NULL",
        )
        .bind(channel.as_str())
        .bind(unix_seconds(since))
        .fetch_one(&self.reader)
        .await
        .map_err(map_error)?;
        Ok(failing > 0)
    }

    async fn mfa_reset_by_token(
        &self,
        token_hash: &TokenHash,
    ) -> StoreResult<Option<(MfaResetRequest, bool)>> {
        let row = sqlx::query_as::<_, ResetRow>(concat!(
            "SELECT ",
            reset_columns!(),
            " FROM mfa_resets WHERE token_hash = $1"
        ))
        .bind(&token_hash.0[..])
        .fetch_optional(&self.reader)
        .await
        .map_err(map_error)?;
        row.map(|row| {
            let opened = row.opened_at.is_some();
            MfaResetRequest::try_from(row).map(|reset| (reset, opened))
        })
        .transpose()
    }

    async fn session_has_open_reset(&self, session_id: SessionId) -> StoreResult<bool> {
        let open = sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM mfa_resets WHERE session_id = $1 AND completed_at IS NULL",
        )
        .bind(session_id.to_string())
        .fetch_one(&self.reader)
        .await
        .map_err(map_error)?;
        Ok(open > 0)
    }

    async fn orgs_of_user(&self, user_id: UserId) -> StoreResult<Vec<(Organization, Role)>> {
        sqlx::query_as::<_, OrgRoleRow>(concat!(
            "SELECT ",
            org_columns!(),
            ", m.role FROM org_members m JOIN organizations o ON o.id = m.org_id \
             WHERE m.user_id = $1 ORDER BY o.created_at, o.id"
        ))
        .bind(user_id.to_string())
        .fetch_all(&self.reader)
        .await
        .map_err(map_error)?
        .into_iter()
        .map(|row| Ok((Organization::try_from(row.org)?, parse_role(&row.role)?)))
        .collect()
    }

    async fn org(&self, id: OrgId) -> StoreResult<Option<Organization>> {
        sqlx::query_as::<_, OrgRow>(concat!(
            "SELECT ",
            org_columns!(),
            " FROM organizations o WHERE o.id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.reader)
        .await
        .map_err(map_error)?
        .map(Organization::try_from)
        .transpose()
    }

    async fn org_members(&self, id: OrgId) -> StoreResult<Vec<OrgMember>> {
        sqlx::query_as::<_, MemberRow>(
            "SELECT u.id, u.email, u.display_name, u.created_at, m.role, m.added_at \
             FROM org_members m JOIN users u ON u.id = m.user_id \
             WHERE m.org_id = $1 ORDER BY u.email_normalized",
        )
        .bind(id.to_string())
        .fetch_all(&self.reader)
        .await
        .map_err(map_error)?
        .into_iter()
        .map(OrgMember::try_from)
        .collect()
    }

    async fn org_events(
        &self,
        id: OrgId,
        before: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<SecurityEvent>> {
        sqlx::query_as::<_, EventRow>(concat!(
            "SELECT ",
            event_columns!(),
            " FROM security_events WHERE org_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
        ))
        .bind(id.to_string())
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(map_error)?
        .into_iter()
        .map(SecurityEvent::try_from)
        .collect()
    }

    async fn mfa_requirements(
        &self,
        user_id: UserId,
    ) -> StoreResult<Vec<(String, OffsetDateTime)>> {
        let rows = sqlx::query_as::<_, (String, i64)>(
            "SELECT source, since FROM mfa_requirements WHERE user_id = $1",
        )
        .bind(user_id.to_string())
        .fetch_all(&self.reader)
        .await
        .map_err(map_error)?;
        Ok(rows
            .into_iter()
            .map(|(source, since)| (source, from_unix_seconds(since)))
            .collect())
    }

    async fn factors_of(&self, user_id: UserId) -> StoreResult<Vec<Factor>> {
        sqlx::query_as::<_, FactorRow>(concat!(
            "SELECT ",
            factor_columns!(),
            " FROM factors WHERE user_id = $1 ORDER BY created_at, id"
        ))
        .bind(user_id.to_string())
        .fetch_all(&self.reader)
        .await
        .map_err(map_error)?
        .into_iter()
        .map(Factor::try_from)
        .collect()
    }

    async fn backup_code_status(&self, user_id: UserId) -> StoreResult<BackupCodeStatus> {
        let (remaining, generated_at) = sqlx::query_as::<_, (i64, Option<i64>)>(
            "SELECT COUNT(*) - COUNT(used_at), MAX(created_at) FROM backup_codes WHERE user_id = $1",
        )
        .bind(user_id.to_string())
        .fetch_one(&self.reader)
        .await
        .map_err(map_error)?;
        Ok(BackupCodeStatus {
            remaining: crate::rows::count_to_u32(remaining, "backup_codes.count")?,
            generated_at: generated_at.map(from_unix_seconds),
        })
    }

    async fn totp_enrollment(
        &self,
        user_id: UserId,
        id: EnrollmentId,
    ) -> StoreResult<Option<TotpEnrollment>> {
        sqlx::query_as::<_, EnrollmentRow>(concat!(
            "SELECT ",
            enrollment_columns!(),
            " FROM totp_enrollments WHERE id = $1 AND user_id = $2"
        ))
        .bind(id.to_string())
        .bind(user_id.to_string())
        .fetch_optional(&self.reader)
        .await
        .map_err(map_error)?
        .map(TotpEnrollment::try_from)
        .transpose()
    }

    async fn challenge_by_token_hash(
        &self,
        token_hash: &TokenHash,
    ) -> StoreResult<Option<Challenge>> {
        sqlx::query_as::<_, ChallengeRow>(concat!(
            "SELECT ",
            challenge_columns!(),
            " FROM mfa_challenges WHERE token_hash = $1"
        ))
        .bind(&token_hash.0[..])
        .fetch_optional(&self.reader)
        .await
        .map_err(map_error)?
        .map(Challenge::try_from)
        .transpose()
    }

    async fn second_factor_throttle(&self, user_id: UserId) -> StoreResult<SecondFactorThrottle> {
        sqlx::query_as::<_, ThrottleRow>(
            "SELECT failures, locked_until FROM second_factor_throttle WHERE user_id = $1",
        )
        .bind(user_id.to_string())
        .fetch_optional(&self.reader)
        .await
        .map_err(map_error)?
        .map_or(
            Ok(SecondFactorThrottle::default()),
            SecondFactorThrottle::try_from,
        )
    }

    async fn second_step_context(
        &self,
        token_hash: &TokenHash,
    ) -> StoreResult<Option<SecondStepContext>> {
        if let Some(hot) = &self.hot {
            return hot.second_step_context(token_hash);
        }
        // One round trip: a row per factor (one row with null factor columns when none).
        let rows = sqlx::query_as::<_, ContextFactorRow>(
            "SELECT c.id, c.token_hash, c.user_id, c.purpose, c.created_at, c.expires_at, \
             c.completed_at, c.ip, c.user_agent, u.email, u.display_name, \
             u.created_at AS user_created_at, t.failures, t.locked_until, \
             f.id AS f_id, f.kind AS f_kind, f.label AS f_label, \
             f.secret_sealed AS f_secret_sealed, f.key_id AS f_key_id, \
             f.last_step AS f_last_step, f.preferred AS f_preferred, \
             f.created_at AS f_created_at, f.last_used_at AS f_last_used_at, \
             f.destination AS f_destination \
             FROM mfa_challenges c JOIN users u ON u.id = c.user_id \
             LEFT JOIN second_factor_throttle t ON t.user_id = c.user_id \
             LEFT JOIN factors f ON f.user_id = c.user_id \
             WHERE c.token_hash = $1 ORDER BY f.created_at, f.id",
        )
        .bind(&token_hash.0[..])
        .fetch_all(&self.reader)
        .await
        .map_err(map_error)?;
        let mut factors = Vec::with_capacity(rows.len());
        for row in &rows {
            factors.extend(row.factor()?);
        }
        let Some(first) = rows.into_iter().next() else {
            return Ok(None);
        };
        let (challenge, user, throttle) = first.context.into_parts()?;
        Ok(Some(SecondStepContext {
            challenge,
            user,
            throttle,
            factors,
        }))
    }

    async fn commit_totp_second_step(&self, step: &PassedTotpStep) -> StoreResult<TotpStepOutcome> {
        if let Some(hot) = &self.hot {
            return hot.commit_totp_second_step(step).await;
        }
        if let Some(group) = &self.pg_commit {
            return group.commit(step).await;
        }
        let mut tx = SqlTx::new(self.writer.begin().await.map_err(map_error)?);
        // Dropping `tx` on a refusal rolls everything back.
        if let Some(until) = tx
            .clear_second_factor_failures(step.session.user_id)
            .await?
            && step.now < until
        {
            return Ok(TotpStepOutcome::Locked { until });
        }
        if !tx
            .advance_totp_step(step.factor_id, step.step, step.now)
            .await?
        {
            return Ok(TotpStepOutcome::Replayed);
        }
        if !tx.complete_challenge(step.challenge_id, step.now).await? {
            return Ok(TotpStepOutcome::ChallengeClosed);
        }
        tx.insert_session(&step.session).await?;
        tx.insert_event(&step.event).await?;
        Box::new(tx).commit().await?;
        Ok(TotpStepOutcome::Committed)
    }

    async fn code_for(
        &self,
        user_id: UserId,
        target: &str,
        purpose: CodePurpose,
    ) -> StoreResult<Option<IssuedCode>> {
        sqlx::query_as::<_, CodeRow>(
            "SELECT purpose, code_hash, created_at, tries, used_at FROM one_time_codes \
             WHERE target = $1 AND purpose = $2 AND user_id = $3",
        )
        .bind(target)
        .bind(purpose.as_str())
        .bind(user_id.to_string())
        .fetch_optional(&self.reader)
        .await
        .map_err(map_error)?
        .map(IssuedCode::try_from)
        .transpose()
    }

    async fn unreported_challenges(
        &self,
        created_before: OffsetDateTime,
        limit: u32,
    ) -> StoreResult<Vec<Challenge>> {
        sqlx::query_as::<_, ChallengeRow>(concat!(
            "SELECT ",
            challenge_columns!(),
            " FROM mfa_challenges WHERE completed_at IS NULL AND report_state IS NULL \
             AND created_at < $1 ORDER BY created_at, id LIMIT $2"
        ))
        .bind(unix_seconds(created_before))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(map_error)?
        .into_iter()
        .map(Challenge::try_from)
        .collect()
    }

    async fn secrets_not_under_key(
        &self,
        key_id: u32,
        limit: u32,
    ) -> StoreResult<Vec<SealedSecret>> {
        sqlx::query_as::<_, SealedSecretRow>(
            "SELECT 'factor' AS table_name, id, user_id, id AS factor_id, secret_sealed AS sealed \
             FROM factors WHERE secret_sealed IS NOT NULL AND (key_id IS NULL OR key_id <> $1) \
             UNION ALL \
             SELECT 'enrollment' AS table_name, id, user_id, factor_id, secret_sealed AS sealed \
             FROM totp_enrollments WHERE key_id <> $1 \
             LIMIT $2",
        )
        .bind(i64::from(key_id))
        .bind(i64::from(limit))
        .fetch_all(&self.writer)
        .await
        .map_err(map_error)?
        .into_iter()
        .map(SealedSecret::try_from)
        .collect()
    }

    async fn count_secrets_not_under_key(&self, key_id: u32) -> StoreResult<u64> {
        let count = sqlx::query_scalar::<_, i64>(
            "SELECT (SELECT COUNT(*) FROM factors WHERE secret_sealed IS NOT NULL AND (key_id IS NULL OR key_id <> $1)) \
             + (SELECT COUNT(*) FROM totp_enrollments WHERE key_id <> $1)",
        )
        .bind(i64::from(key_id))
        .fetch_one(&self.reader)
        .await
        .map_err(map_error)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }
}

/// Caps a delivery error's length (SMTP transcripts can be long).
fn truncate(error: &str) -> String {
    error.chars().take(MAX_OUTBOX_ERROR_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_errors_are_truncated_on_a_char_boundary() {
        let long = "é".repeat(MAX_OUTBOX_ERROR_CHARS + 5);
        assert_eq!(truncate(&long).chars().count(), MAX_OUTBOX_ERROR_CHARS);
        assert_eq!(truncate("short"), "short");
    }
}

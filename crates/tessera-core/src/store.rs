//! The storage port. One implementation (`tessera-store`) serves SQLite and PostgreSQL.
//!
//! Reads that need no transaction go through [`Store`] (on SQLite they use the reader pool);
//! changes go through a [`StoreTx`] from [`Store::begin`], committed by the service that owns
//! the use case. Never hold a transaction across slow work (password hashing): on SQLite there is
//! one writer connection.
//!
//! Every "use once" or "count and check" operation is a single conditional statement whose
//! affected row count or returned value decides the outcome.

use crate::crypto::TokenHash;
use crate::event::{NewEvent, SecurityEvent};
use crate::factor::{
    BackupCodeStatus, Challenge, ContactEnrollment, Factor, MfaMethod, ReportState, TotpEnrollment,
};
use crate::ids::{ChallengeId, EnrollmentId, FactorId, OrgId, SessionId, UserId};
use crate::notification::{Channel, NewOutboxMessage, OutboxMessage};
use crate::org::{MfaResetRequest, OrgMember, OrgPolicy, Organization, Role};
use crate::otc::{CodePurpose, IssuedCode, SendCounts};
use crate::session::Session;
use crate::throttle::{PasswordThrottle, SecondFactorThrottle, ThrottleKey};
use crate::user::{User, UserCredentials};
use async_trait::async_trait;
use time::OffsetDateTime;

/// Why a store call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness constraint refused the change (e.g. the email is taken).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database cannot be reached (connection refused, pool timed out).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Anything else (a bug, a corrupt row).
    #[error("database error: {0}")]
    Other(String),
}

impl From<StoreError> for crate::Error {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict(what) => crate::Error::Conflict(what),
            StoreError::Unavailable(detail) => crate::Error::Unavailable(detail),
            StoreError::Other(detail) => crate::Error::Internal(detail),
        }
    }
}

/// The result type of the store.
pub type StoreResult<T> = Result<T, StoreError>;

/// A new account to insert.
#[derive(Clone)]
pub struct NewUser {
    /// The account.
    pub user: User,
    /// Its Argon2id PHC string.
    pub password_hash: String,
}

impl std::fmt::Debug for NewUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUser")
            .field("user", &self.user)
            .field("password_hash", &"[REDACTED]")
            .finish()
    }
}

/// Reads, and the entry to transactions.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Checks that the database answers (`/readyz`).
    async fn ping(&self) -> StoreResult<()>;

    /// Starts a transaction for one use case.
    async fn begin(&self) -> StoreResult<Box<dyn StoreTx>>;

    /// An account by id.
    async fn user_by_id(&self, id: UserId) -> StoreResult<Option<User>>;

    /// An account and its password hash by normalized (lower-case) email.
    async fn credentials_by_email(
        &self,
        email_normalized: &str,
    ) -> StoreResult<Option<UserCredentials>>;

    /// The password hash of an account.
    async fn password_hash(&self, id: UserId) -> StoreResult<Option<String>>;

    /// Every account, oldest first (the admin CLI).
    async fn list_users(&self) -> StoreResult<Vec<User>>;

    /// The session whose token hashes to `token_hash`, whatever its expiry.
    async fn session_by_token_hash(&self, token_hash: &TokenHash) -> StoreResult<Option<Session>>;

    /// A user's sessions that have not reached `expires_at` at `now`, newest first.
    async fn sessions_of(&self, user_id: UserId, now: OffsetDateTime) -> StoreResult<Vec<Session>>;

    /// Sets `last_seen_at = now` if it is older than `stale_before`; one conditional update, so
    /// busy sessions cost one write a minute at most.
    async fn touch_session(
        &self,
        id: SessionId,
        now: OffsetDateTime,
        stale_before: OffsetDateTime,
    ) -> StoreResult<()>;

    /// The password throttle of `key` (zero when never failed).
    async fn password_throttle(&self, key: &ThrottleKey) -> StoreResult<PasswordThrottle>;

    /// Records `check` (a keyed hash made with the instance pepper) the first time it is called
    /// on a database, and says whether the recorded value equals `check` — so an instance whose
    /// keys differ from those the database was set up with refuses to start.
    async fn ensure_key_check(&self, check: &[u8], now: OffsetDateTime) -> StoreResult<bool>;

    /// A page of a user's events, newest first, with ids below `before` when given.
    async fn events_of(
        &self,
        user_id: UserId,
        before: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<SecurityEvent>>;

    /// Claims the oldest message due at `now` for `lease_until`, atomically, so two workers
    /// (or instances) never deliver the same message at once.
    async fn claim_outbox_message(
        &self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
    ) -> StoreResult<Option<OutboxMessage>>;

    /// Marks a message delivered.
    async fn mark_outbox_sent(&self, id: i64, now: OffsetDateTime) -> StoreResult<()>;

    /// Records a failed attempt and when to try again.
    async fn mark_outbox_retry(
        &self,
        id: i64,
        next_attempt_at: OffsetDateTime,
        error: &str,
    ) -> StoreResult<()>;

    /// Gives up on a message.
    async fn mark_outbox_failed(&self, id: i64, error: &str) -> StoreResult<()>;

    /// Messages still waiting for delivery (for `/metrics`).
    async fn outbox_backlog(&self) -> StoreResult<i64>;

    /// Deletes sessions that ended before `before` (housekeeping); returns how many.
    async fn delete_expired_sessions(&self, before: OffsetDateTime) -> StoreResult<u64>;

    /// Deletes enrollments that ended before `before` and challenges that ended before
    /// `challenges_before` (housekeeping); returns how many rows went.
    async fn delete_expired_mfa_state(
        &self,
        before: OffsetDateTime,
        challenges_before: OffsetDateTime,
    ) -> StoreResult<u64>;

    /// A user's active factors, oldest first.
    async fn factors_of(&self, user_id: UserId) -> StoreResult<Vec<Factor>>;

    /// How many of a user's backup codes are unused, and when the set was made.
    async fn backup_code_status(&self, user_id: UserId) -> StoreResult<BackupCodeStatus>;

    /// An unfinished TOTP enrollment of `user_id`, whatever its expiry.
    async fn totp_enrollment(
        &self,
        user_id: UserId,
        id: EnrollmentId,
    ) -> StoreResult<Option<TotpEnrollment>>;

    /// The live one-time code of `user_id` for `target` (a factor or enrollment id) and
    /// `purpose`, whatever its state; `None` when none was sent (or it belongs to another user).
    async fn code_for(
        &self,
        user_id: UserId,
        target: &str,
        purpose: CodePurpose,
    ) -> StoreResult<Option<IssuedCode>>;

    /// An unfinished SMS or email enrollment of `user_id`, whatever its expiry.
    async fn contact_enrollment(
        &self,
        user_id: UserId,
        id: EnrollmentId,
    ) -> StoreResult<Option<ContactEnrollment>>;

    /// Whether messages on `channel` are known to be failing: a message created at or after
    /// `since` is still unsent after a failed delivery attempt.
    async fn delivery_failing(&self, channel: Channel, since: OffsetDateTime) -> StoreResult<bool>;

    /// The MFA reset link whose token hashes to `token_hash`, whatever its state, with
    /// whether it was opened.
    async fn mfa_reset_by_token(
        &self,
        token_hash: &TokenHash,
    ) -> StoreResult<Option<(MfaResetRequest, bool)>>;

    /// Whether `session_id` is the restricted session of an opened, uncompleted MFA reset.
    async fn session_has_open_reset(&self, session_id: SessionId) -> StoreResult<bool>;

    /// The organizations `user_id` belongs to, with their role, oldest first.
    async fn orgs_of_user(&self, user_id: UserId) -> StoreResult<Vec<(Organization, Role)>>;

    /// An organization.
    async fn org(&self, id: OrgId) -> StoreResult<Option<Organization>>;

    /// The members of an organization, by email.
    async fn org_members(&self, id: OrgId) -> StoreResult<Vec<OrgMember>>;

    /// A page of an organization's security events, newest first.
    async fn org_events(
        &self,
        id: OrgId,
        before: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<SecurityEvent>>;

    /// When each MFA requirement binding `user_id` first applied (source → since).
    async fn mfa_requirements(&self, user_id: UserId)
    -> StoreResult<Vec<(String, OffsetDateTime)>>;

    /// The challenge whose token hashes to `token_hash`, whatever its state.
    async fn challenge_by_token_hash(
        &self,
        token_hash: &TokenHash,
    ) -> StoreResult<Option<Challenge>>;

    /// The second-factor throttle of a user (zero when never failed).
    async fn second_factor_throttle(&self, user_id: UserId) -> StoreResult<SecondFactorThrottle>;

    /// Everything the second step of sign-in reads, in one consistent read: the challenge
    /// whose token hashes to `token_hash` (whatever its state), its user, the user's
    /// second-factor throttle and factors. `None` when no challenge has that hash (or its user
    /// is gone).
    async fn second_step_context(
        &self,
        token_hash: &TokenHash,
    ) -> StoreResult<Option<SecondStepContext>>;

    /// Commits a TOTP second step whose code was checked, all or nothing, in this order: the
    /// account's second step must not be locked (its wrong-code count is cleared), the factor's
    /// last accepted step must move forward to `step.step` (one conditional `UPDATE`), the
    /// challenge must still be open (completed here), then the session and its event are
    /// inserted. The first condition that fails decides the outcome and nothing is written.
    ///
    /// The hot path of sign-in: on SQLite, passed steps from many requests share one write
    /// transaction (group commit), each in its own savepoint.
    async fn commit_totp_second_step(&self, step: &PassedTotpStep) -> StoreResult<TotpStepOutcome>;

    /// Up to `limit` challenges created before `created_before` that were never completed nor
    /// reported, oldest first.
    async fn unreported_challenges(
        &self,
        created_before: OffsetDateTime,
        limit: u32,
    ) -> StoreResult<Vec<Challenge>>;

    /// Up to `limit` sealed secrets (of factors and enrollments) not sealed under `key_id`.
    async fn secrets_not_under_key(
        &self,
        key_id: u32,
        limit: u32,
    ) -> StoreResult<Vec<SealedSecret>>;

    /// How many sealed secrets are not sealed under `key_id`.
    async fn count_secrets_not_under_key(&self, key_id: u32) -> StoreResult<u64>;
}

/// A one-time code to store ([`StoreTx::put_code`]).
#[derive(Debug, Clone)]
pub struct NewCode {
    /// Whose code it is.
    pub user_id: UserId,
    /// The factor or enrollment id it was sent for.
    pub target: String,
    /// What it was sent for.
    pub purpose: CodePurpose,
    /// Its keyed hash ([`crate::otc::code_hash`]).
    pub hash: [u8; 32],
    /// When it was sent; it expires [`crate::otc::CODE_TTL`] later.
    pub created_at: OffsetDateTime,
}

/// A code sent, as the send limits count it ([`StoreTx::record_code_send`]).
#[derive(Debug, Clone)]
pub struct CodeSend {
    /// The account it was sent for.
    pub user_id: UserId,
    /// The factor or enrollment id.
    pub target: String,
    /// A keyed hash of the destination (E.164 number or normalized address).
    pub destination_hash: [u8; 32],
    /// When.
    pub sent_at: OffsetDateTime,
}

/// What the second step of sign-in reads ([`Store::second_step_context`]).
#[derive(Debug, Clone)]
pub struct SecondStepContext {
    /// The sign-in challenge, whatever its state.
    pub challenge: Challenge,
    /// Its user.
    pub user: User,
    /// The user's second-factor throttle.
    pub throttle: SecondFactorThrottle,
    /// The user's factors, oldest first.
    pub factors: Vec<Factor>,
}

/// A TOTP second step whose code was right, to commit ([`Store::commit_totp_second_step`]).
#[derive(Debug, Clone)]
pub struct PassedTotpStep {
    /// The challenge to complete.
    pub challenge_id: ChallengeId,
    /// The factor whose code matched.
    pub factor_id: FactorId,
    /// The time step the code matched.
    pub step: u64,
    /// The session to create.
    pub session: Session,
    /// The sign-in event to record.
    pub event: NewEvent,
    /// Now.
    pub now: OffsetDateTime,
}

/// How [`Store::commit_totp_second_step`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotpStepOutcome {
    /// Everything was written.
    Committed,
    /// The account's second step is locked until then; nothing was written.
    Locked {
        /// When the lock ends.
        until: OffsetDateTime,
    },
    /// The factor already accepted this step or a later one; nothing was written.
    Replayed,
    /// The challenge was completed by another request or expired; nothing was written.
    ChallengeClosed,
}

/// Where a sealed secret lives, for key rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretOwner {
    /// An active factor.
    Factor(FactorId),
    /// An unfinished enrollment (which will become factor `factor_id`).
    Enrollment {
        /// The enrollment.
        id: EnrollmentId,
        /// The factor it will become (the associated data names it).
        factor_id: FactorId,
    },
}

/// A sealed secret to re-seal under a new key.
#[derive(Clone)]
pub struct SealedSecret {
    /// Whose.
    pub user_id: UserId,
    /// Which row.
    pub owner: SecretOwner,
    /// The sealed value now stored.
    pub sealed: Vec<u8>,
}

impl std::fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedSecret")
            .field("user_id", &self.user_id)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

/// The changes of one use case, applied atomically at [`StoreTx::commit`]; dropping the
/// transaction rolls it back.
#[async_trait]
pub trait StoreTx: Send {
    /// Inserts an account; [`StoreError::Conflict`] when the email (case-insensitively) is taken.
    async fn insert_user(&mut self, user: &NewUser) -> StoreResult<()>;

    /// Replaces an account's password hash.
    async fn set_password_hash(&mut self, user_id: UserId, password_hash: &str) -> StoreResult<()>;

    /// Inserts a session.
    async fn insert_session(&mut self, session: &Session) -> StoreResult<()>;

    /// Deletes one of a user's sessions; returns whether it existed.
    async fn delete_session(&mut self, user_id: UserId, id: SessionId) -> StoreResult<bool>;

    /// Deletes every session of a user except `keep`; returns how many.
    async fn delete_sessions_except(
        &mut self,
        user_id: UserId,
        keep: Option<SessionId>,
    ) -> StoreResult<u64>;

    /// Opens the re-auth window of a session until `until`.
    async fn set_reauth_until(&mut self, id: SessionId, until: OffsetDateTime) -> StoreResult<()>;

    /// Reserves one password attempt for `key` before the password is checked: unless `key`
    /// is locked at `now`, adds one to its count of attempts in a row — atomically, one
    /// conditional upsert — and returns the new count; returns `None` while locked. The count
    /// is cleared by [`StoreTx::reset_password_failures`] when the password was right.
    async fn reserve_password_attempt(
        &mut self,
        key: &ThrottleKey,
        now: OffsetDateTime,
    ) -> StoreResult<Option<u32>>;

    /// Locks password attempts for `key` until `until`.
    async fn lock_password(&mut self, key: &ThrottleKey, until: OffsetDateTime) -> StoreResult<()>;

    /// Clears the count and lock of `key`.
    async fn reset_password_failures(&mut self, key: &ThrottleKey) -> StoreResult<()>;

    /// Appends a security event.
    async fn insert_event(&mut self, event: &NewEvent) -> StoreResult<()>;

    /// Writes a message to the outbox, delivered after commit.
    async fn enqueue(&mut self, message: &NewOutboxMessage) -> StoreResult<()>;

    /// Stores the live code for `code.target` and `code.purpose`, replacing (and so voiding)
    /// any earlier one: new hash, no tries, unused.
    async fn put_code(&mut self, code: &NewCode) -> StoreResult<()>;

    /// Records a code sent, for the send limits.
    async fn record_code_send(&mut self, send: &CodeSend) -> StoreResult<()>;

    /// What the send limits count at `now`, read in this transaction: call
    /// [`StoreTx::lock_user_mfa`] first, so two sends for one account count each other.
    async fn send_counts(
        &mut self,
        user_id: UserId,
        target: &str,
        destination_hash: &[u8; 32],
        now: OffsetDateTime,
    ) -> StoreResult<SendCounts>;

    /// Uses the live code if its hash is `hash` and it is unused, under the try limit and
    /// unexpired at `now`: one conditional `UPDATE`. `false` (nothing changed) otherwise.
    async fn use_code(
        &mut self,
        user_id: UserId,
        target: &str,
        purpose: CodePurpose,
        hash: &[u8; 32],
        now: OffsetDateTime,
    ) -> StoreResult<bool>;

    /// Counts a wrong try on the live code unless it is already used, void or expired (one
    /// conditional `UPDATE`). Returns the tries after this one, or `None` when no usable code
    /// was there.
    async fn count_wrong_code_try(
        &mut self,
        user_id: UserId,
        target: &str,
        purpose: CodePurpose,
        now: OffsetDateTime,
    ) -> StoreResult<Option<u32>>;

    /// Serialises changes to one user's factors and backup codes: takes the user's row lock
    /// (PostgreSQL) or the write lock (SQLite) before anything is read, so two concurrent
    /// changes see each other's result instead of deciding from the same stale reads.
    async fn lock_user_mfa(&mut self, user_id: UserId) -> StoreResult<()>;

    /// Ends every unopened MFA reset link of `user_id` (a newer request voids older links).
    async fn void_mfa_resets(&mut self, user_id: UserId, now: OffsetDateTime) -> StoreResult<()>;

    /// Stores a new MFA reset link.
    async fn insert_mfa_reset(&mut self, reset: &MfaResetRequest) -> StoreResult<()>;

    /// Uses the link whose token hashes to `token_hash` if it is unopened and unexpired at
    /// `now`, tying it to the restricted session `session_id` (one conditional `UPDATE`);
    /// `None` when it was used, expired or never existed.
    async fn open_mfa_reset(
        &mut self,
        token_hash: &TokenHash,
        session_id: SessionId,
        now: OffsetDateTime,
    ) -> StoreResult<Option<MfaResetRequest>>;

    /// Completes the opened, uncompleted reset of the restricted session `session_id`;
    /// `None` when the session is not a reset's.
    async fn complete_mfa_reset(
        &mut self,
        session_id: SessionId,
        now: OffsetDateTime,
    ) -> StoreResult<Option<MfaResetRequest>>;

    /// Makes a restricted session a full one (its policy no longer holds it).
    async fn set_session_full(&mut self, id: SessionId) -> StoreResult<()>;

    /// Stores a new organization.
    async fn insert_org(&mut self, org: &Organization) -> StoreResult<()>;

    /// Serialises changes to one organization's members and policy (as [`Self::lock_user_mfa`]
    /// does for a user); `false` when there is no such organization.
    async fn lock_org(&mut self, id: OrgId) -> StoreResult<bool>;

    /// The role of `user_id` in `org_id`, as this transaction sees it.
    async fn member_role(&mut self, org_id: OrgId, user_id: UserId) -> StoreResult<Option<Role>>;

    /// How many members of `org_id` have `role`, as this transaction sees it.
    async fn count_members_with_role(&mut self, org_id: OrgId, role: Role) -> StoreResult<u32>;

    /// Adds a member; `Conflict` when they already are one.
    async fn insert_member(
        &mut self,
        org_id: OrgId,
        user_id: UserId,
        role: Role,
        now: OffsetDateTime,
    ) -> StoreResult<()>;

    /// Changes a member's role; `false` when they are not a member.
    async fn set_member_role(
        &mut self,
        org_id: OrgId,
        user_id: UserId,
        role: Role,
    ) -> StoreResult<bool>;

    /// Removes a member; `false` when they were not one.
    async fn delete_member(&mut self, org_id: OrgId, user_id: UserId) -> StoreResult<bool>;

    /// Replaces an organization's policy.
    async fn set_org_policy(
        &mut self,
        org_id: OrgId,
        policy: &OrgPolicy,
        now: OffsetDateTime,
    ) -> StoreResult<()>;

    /// Appends an event of `event.user_id` that also concerns `org_id` (its admins see it).
    async fn insert_org_event(&mut self, org_id: OrgId, event: &NewEvent) -> StoreResult<()>;

    /// Records that the requirement `source` applies to `user_id` since `since`, unless an
    /// earlier start is already recorded.
    async fn record_mfa_requirement(
        &mut self,
        user_id: UserId,
        source: &str,
        since: OffsetDateTime,
    ) -> StoreResult<()>;

    /// Forgets the user's requirements whose source is not in `keep`.
    async fn clear_mfa_requirements(&mut self, user_id: UserId, keep: &[String])
    -> StoreResult<()>;

    /// Stores a new SMS or email enrollment.
    async fn insert_contact_enrollment(
        &mut self,
        enrollment: &ContactEnrollment,
    ) -> StoreResult<()>;

    /// The unexpired SMS or email enrollment `id` of `user_id`, as this transaction sees it.
    async fn open_contact_enrollment(
        &mut self,
        user_id: UserId,
        id: EnrollmentId,
        now: OffsetDateTime,
    ) -> StoreResult<Option<ContactEnrollment>>;

    /// Deletes and returns the unexpired SMS or email enrollment `id` of `user_id`; `None`
    /// when another request took it first, it expired or it is not theirs.
    async fn take_contact_enrollment(
        &mut self,
        user_id: UserId,
        id: EnrollmentId,
        now: OffsetDateTime,
    ) -> StoreResult<Option<ContactEnrollment>>;

    /// Records that a factor passed a second step at `now`.
    async fn mark_factor_used(
        &mut self,
        factor_id: FactorId,
        now: OffsetDateTime,
    ) -> StoreResult<()>;

    /// Renames a factor of `user_id`; `false` when they have no such factor.
    async fn set_factor_label(
        &mut self,
        user_id: UserId,
        id: FactorId,
        label: &str,
    ) -> StoreResult<bool>;

    /// Makes factor `id` the user's only preferred one; `false` (nothing changed) when they
    /// have no such factor.
    async fn set_preferred_factor(&mut self, user_id: UserId, id: FactorId) -> StoreResult<bool>;

    /// A user's active factors, oldest first, as this transaction sees them.
    async fn factors_of_user(&mut self, user_id: UserId) -> StoreResult<Vec<Factor>>;

    /// How many of a user's backup codes are unused, as this transaction sees them.
    async fn unused_backup_codes(&mut self, user_id: UserId) -> StoreResult<u32>;

    /// Inserts an unfinished TOTP enrollment.
    async fn insert_totp_enrollment(&mut self, enrollment: &TotpEnrollment) -> StoreResult<()>;

    /// Counts a wrong confirmation code of an enrollment, unless it already has `max`;
    /// returns whether it may still be confirmed.
    async fn count_enrollment_attempt(&mut self, id: EnrollmentId, max: u32) -> StoreResult<bool>;

    /// Removes and returns a user's enrollment if it is still open at `now` — one conditional
    /// `DELETE … RETURNING`, so an enrollment is confirmed at most once.
    async fn take_totp_enrollment(
        &mut self,
        user_id: UserId,
        id: EnrollmentId,
        now: OffsetDateTime,
    ) -> StoreResult<Option<TotpEnrollment>>;

    /// Inserts an active factor.
    async fn insert_factor(&mut self, factor: &Factor) -> StoreResult<()>;

    /// Deletes one of a user's factors; returns whether it existed.
    async fn delete_factor(&mut self, user_id: UserId, id: FactorId) -> StoreResult<bool>;

    /// Deletes every factor of a user; returns how many.
    async fn delete_factors(&mut self, user_id: UserId) -> StoreResult<u64>;

    /// Makes the oldest factor of a user preferred when none is (after a removal).
    async fn ensure_preferred_factor(&mut self, user_id: UserId) -> StoreResult<()>;

    /// Accepts TOTP time step `step` for a factor only if it is later than the last accepted
    /// one — one conditional `UPDATE … WHERE last_step < $step` — and returns whether it did.
    async fn advance_totp_step(
        &mut self,
        factor_id: FactorId,
        step: u64,
        now: OffsetDateTime,
    ) -> StoreResult<bool>;

    /// Replaces every backup code of a user by these hashes.
    async fn replace_backup_codes(
        &mut self,
        user_id: UserId,
        hashes: &[[u8; 32]],
        now: OffsetDateTime,
    ) -> StoreResult<()>;

    /// Deletes every backup code of a user; returns how many.
    async fn delete_backup_codes(&mut self, user_id: UserId) -> StoreResult<u64>;

    /// Marks an unused backup code used — one conditional `UPDATE … WHERE used_at IS NULL` —
    /// and returns how many remain unused, or `None` if the code was unknown or used.
    async fn consume_backup_code(
        &mut self,
        user_id: UserId,
        hash: &[u8; 32],
        now: OffsetDateTime,
    ) -> StoreResult<Option<u32>>;

    /// Inserts a sign-in challenge.
    async fn insert_challenge(&mut self, challenge: &Challenge) -> StoreResult<()>;

    /// Completes a challenge still open at `now`; returns whether it was (single use).
    async fn complete_challenge(
        &mut self,
        id: ChallengeId,
        now: OffsetDateTime,
    ) -> StoreResult<bool>;

    /// Counts one wrong second-factor code of a user unless the second step is locked at
    /// `now`; when the count reaches `limit`, sets the lock until `lock_until` in the same
    /// statement. Returns the new count, or `None` while locked. A lock that has ended starts
    /// a new count.
    async fn record_second_factor_failure(
        &mut self,
        user_id: UserId,
        now: OffsetDateTime,
        limit: u32,
        lock_until: OffsetDateTime,
    ) -> StoreResult<Option<u32>>;

    /// Clears a user's second-factor count and returns the lock it held (if any), so a caller
    /// that finds the lock still running can roll back.
    async fn clear_second_factor_failures(
        &mut self,
        user_id: UserId,
    ) -> StoreResult<Option<OffsetDateTime>>;

    /// Records the second factor of a session and its new `amr`; the session is a full one
    /// from then on (a restricted session that enrolled a factor).
    async fn set_session_mfa(
        &mut self,
        id: SessionId,
        method: MfaMethod,
        amr: &[String],
    ) -> StoreResult<()>;

    /// Marks a challenge reported, if it was not yet; returns whether this call did.
    async fn mark_challenge_reported(
        &mut self,
        id: ChallengeId,
        state: ReportState,
        now: OffsetDateTime,
    ) -> StoreResult<bool>;

    /// When the user was last emailed about an unfinished sign-in.
    async fn last_unfinished_signin_report(
        &mut self,
        user_id: UserId,
    ) -> StoreResult<Option<OffsetDateTime>>;

    /// Replaces a sealed secret by `sealed` (under `key_id`) if it still holds `previous`;
    /// returns whether it did.
    async fn reseal_secret(
        &mut self,
        owner: SecretOwner,
        previous: &[u8],
        sealed: &[u8],
        key_id: u32,
    ) -> StoreResult<bool>;

    /// Commits every change.
    async fn commit(self: Box<Self>) -> StoreResult<()>;
}

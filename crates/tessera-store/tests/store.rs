//! Store tests: every case in [`cases`] runs on SQLite (a temporary file, so the WAL writer and
//! reader pools are exercised) and on PostgreSQL (a fresh database per test).
//!
//! PostgreSQL variants read `TESSERA_TEST_DATABASE_URL` (any database on the server, e.g.
//! `postgres://postgres@127.0.0.1:5432/postgres`). When it is unset they print a line to stderr
//! and pass; when it is set and the server cannot be reached they fail.

// Integration tests are test code throughout; saying so lets clippy's allow-*-in-tests settings
// cover the helpers as well as the #[test] functions.
#![cfg(test)]

use std::future::Future;
use std::path::Path;
use tessera_store::SqlStore;

const POSTGRES_URL_VAR: &str = "TESSERA_TEST_DATABASE_URL";

/// Runs `case` on a migrated SQLite store in a fresh temporary file.
async fn with_sqlite<F, Fut>(case: F)
where
    F: FnOnce(SqlStore) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(&dir.path().join("tessera.db"));
    let store = SqlStore::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let outcome = tokio::spawn(case(store.clone())).await;
    store.close().await;
    drop(dir);
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}

fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

/// Runs `case` on a migrated PostgreSQL store in a database created for it and dropped after.
async fn with_postgres<F, Fut>(case: F)
where
    F: FnOnce(SqlStore) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    use sqlx::{AssertSqlSafe, Connection, Executor};

    let Ok(admin_url) = std::env::var(POSTGRES_URL_VAR) else {
        eprintln!("skipping the PostgreSQL variant: {POSTGRES_URL_VAR} is not set");
        return;
    };
    sqlx::any::install_default_drivers();
    let mut admin = sqlx::AnyConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|error| {
            panic!("{POSTGRES_URL_VAR} is set but PostgreSQL is unreachable: {error}")
        });
    let name = format!("tessera_test_{}", uuid::Uuid::new_v4().simple());
    admin
        .execute(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .unwrap();

    let mut url = url::Url::parse(&admin_url).unwrap();
    url.set_path(&format!("/{name}"));
    let store = SqlStore::connect(url.as_str()).await.unwrap();
    assert_eq!(store.backend(), tessera_store::Backend::Postgres);
    store.migrate().await.unwrap();
    let outcome = tokio::spawn(case(store.clone())).await;
    store.close().await;

    // Best effort: a leftover database is harmless, a failed case must still report.
    if let Err(error) = admin
        .execute(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .await
    {
        eprintln!("could not drop test database {name}: {error}");
    }
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}

/// Generates `sqlite::<case>` and `postgres::<case>` tests from each async fn in [`cases`].
macro_rules! store_tests {
    ($($case:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    crate::with_sqlite(crate::cases::$case).await;
                }
            )+
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    crate::with_postgres(crate::cases::$case).await;
                }
            )+
        }
    };
}

store_tests!(
    one_time_codes_are_replaced_used_once_and_voided_by_three_wrong_tries,
    concurrent_uses_of_one_code_accept_exactly_one,
    send_counts_cover_the_target_the_account_hour_and_the_destination_day,
    ping_answers,
    migrate_is_idempotent,
    users_are_unique_by_normalized_email,
    credentials_and_password_hash,
    sessions_are_found_by_token_hash_and_listed_newest_first,
    touch_updates_only_stale_sessions,
    deleting_a_session_is_scoped_to_its_user,
    delete_sessions_except_keeps_one,
    reauth_window_is_stored,
    expired_sessions_are_deleted,
    password_attempts_count_lock_and_reset,
    concurrent_password_reservations_are_all_counted,
    the_reservation_that_locks_stops_the_ones_after_it,
    key_check_is_recorded_once,
    concurrent_first_key_checks_agree_on_one_value,
    events_append_and_page_newest_first,
    outbox_claim_lease_retry_and_send,
    outbox_failed_messages_leave_the_backlog,
    concurrent_claims_never_share_a_message,
    dropped_transaction_rolls_back,
    factors_round_trip_oldest_first_and_deletes_are_scoped,
    ensure_preferred_factor_promotes_the_oldest_only_when_none_is,
    totp_steps_only_move_forward,
    concurrent_uses_of_one_totp_step_accept_exactly_one,
    enrollments_count_attempts_and_are_taken_once,
    backup_codes_are_replaced_and_used_once,
    concurrent_uses_of_one_backup_code_succeed_once,
    challenges_round_trip_and_complete_once,
    unfinished_signins_are_listed_and_reported_once,
    second_factor_failures_lock_at_the_limit,
    concurrent_second_factor_failures_stop_at_the_limit,
    sessions_record_their_second_factor,
    secrets_under_an_old_key_are_resealed,
    second_step_context_reads_challenge_user_throttle_and_factors,
    passed_totp_steps_commit_all_or_nothing,
    concurrent_passed_steps_commit_together_and_accept_one_per_time_step,
    contact_factors_keep_their_destination_and_enrollments_are_taken_once,
    exactly_one_factor_is_preferred_and_labels_are_scoped,
    delivery_is_failing_while_a_recent_message_is_unsent_after_an_error,
    organizations_keep_members_roles_policy_events_and_requirements,
);

mod cases {
    use serde_json::json;
    use std::collections::BTreeSet;
    use tessera_core::crypto::Token;
    use tessera_core::email::Email;
    use tessera_core::event::{ClientInfo, EventKind, NewEvent};
    use tessera_core::factor::{
        BACKUP_CODE_COUNT, BackupCodeStatus, CHALLENGE_PURPOSE_SIGNIN, CHALLENGE_TTL, Challenge,
        ContactEnrollment, ENROLLMENT_TTL, Factor, FactorKind, MfaMethod, ReportState,
        TotpEnrollment,
    };
    use tessera_core::ids::{ChallengeId, EnrollmentId, FactorId, SessionId, UserId};
    use tessera_core::notification::{Channel, NewOutboxMessage, Notification};
    use tessera_core::otc::{CODE_TTL, CodePurpose, MAX_CODE_TRIES};
    use tessera_core::session::{Session, SessionState};
    use tessera_core::store::{
        CodeSend, NewCode, NewUser, PassedTotpStep, SecretOwner, Store, StoreError, TotpStepOutcome,
    };
    use tessera_core::throttle::{
        MAX_FAILED_SECOND_FACTOR_ATTEMPTS, PasswordThrottle, SECOND_FACTOR_LOCK,
        SecondFactorThrottle, ThrottleKey, lock_after,
    };
    use tessera_core::user::User;
    use tessera_store::SqlStore;
    use time::macros::datetime;
    use time::{Duration, OffsetDateTime};

    const T0: OffsetDateTime = datetime!(2026-01-01 08:00 UTC);

    fn new_user(email: &str, created_at: OffsetDateTime) -> NewUser {
        let email = Email::parse(email).unwrap();
        NewUser {
            user: User {
                id: UserId::new(),
                display_name: email.as_str().split('@').next().unwrap().to_owned(),
                email,
                created_at,
            },
            password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$salt${}", UserId::new()),
        }
    }

    async fn insert_user(store: &SqlStore, email: &str) -> NewUser {
        let user = new_user(email, T0);
        let mut tx = store.begin().await.unwrap();
        tx.insert_user(&user).await.unwrap();
        tx.commit().await.unwrap();
        user
    }

    fn new_session(user_id: UserId, created_at: OffsetDateTime) -> Session {
        Session {
            id: SessionId::new(),
            user_id,
            token_hash: Token::generate().unwrap().hash(),
            state: SessionState::Full,
            amr: vec!["pwd".into(), "otp".into()],
            created_at,
            last_seen_at: created_at,
            expires_at: created_at + Duration::hours(12),
            reauth_until: None,
            ip: Some("192.0.2.7".into()),
            user_agent: Some("Mozilla/5.0 (test)".into()),
            mfa_method: Some(MfaMethod::Totp),
        }
    }

    async fn insert_sessions(store: &SqlStore, sessions: &[&Session]) {
        let mut tx = store.begin().await.unwrap();
        for session in sessions {
            tx.insert_session(session).await.unwrap();
        }
        tx.commit().await.unwrap();
    }

    fn message(recipient: &str, created_at: OffsetDateTime) -> NewOutboxMessage {
        NewOutboxMessage {
            channel: Channel::Email,
            recipient: recipient.into(),
            notification: Notification::AccountCreated {
                email: recipient.into(),
            },
            created_at,
        }
    }

    async fn enqueue(store: &SqlStore, messages: &[NewOutboxMessage]) {
        let mut tx = store.begin().await.unwrap();
        for message in messages {
            tx.enqueue(message).await.unwrap();
        }
        tx.commit().await.unwrap();
    }

    pub async fn ping_answers(store: SqlStore) {
        store.ping().await.unwrap();
    }

    pub async fn migrate_is_idempotent(store: SqlStore) {
        store.migrate().await.unwrap();
        store.migrate().await.unwrap();
        assert!(store.list_users().await.unwrap().is_empty());
    }

    pub async fn users_are_unique_by_normalized_email(store: SqlStore) {
        let ann = insert_user(&store, "Ann@Example.com").await;
        assert_eq!(
            store.user_by_id(ann.user.id).await.unwrap(),
            Some(ann.user.clone())
        );

        let twin = new_user("ann@EXAMPLE.COM", T0);
        let mut tx = store.begin().await.unwrap();
        let error = tx.insert_user(&twin).await.unwrap_err();
        drop(tx);
        match &error {
            StoreError::Conflict(what) => assert_eq!(what, "email already registered"),
            other => panic!("expected a conflict, got {other:?}"),
        }
        let text = error.to_string();
        assert!(
            !text.contains(&twin.password_hash) && !text.contains("ann@"),
            "{text}"
        );

        let bob = new_user("bob@example.com", T0 + Duration::seconds(1));
        let mut tx = store.begin().await.unwrap();
        tx.insert_user(&bob).await.unwrap();
        tx.commit().await.unwrap();
        let listed = store.list_users().await.unwrap();
        assert_eq!(listed, vec![ann.user, bob.user]);
        assert_eq!(store.user_by_id(UserId::new()).await.unwrap(), None);
    }

    pub async fn credentials_and_password_hash(store: SqlStore) {
        let ann = insert_user(&store, "Ann@Example.com").await;
        let credentials = store
            .credentials_by_email("ann@example.com")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(credentials.user, ann.user);
        assert_eq!(credentials.user.email.as_str(), "Ann@Example.com");
        assert_eq!(credentials.password_hash, ann.password_hash);
        assert!(
            store
                .credentials_by_email("nobody@example.com")
                .await
                .unwrap()
                .is_none()
        );

        assert_eq!(
            store.password_hash(ann.user.id).await.unwrap(),
            Some(ann.password_hash)
        );
        let mut tx = store.begin().await.unwrap();
        tx.set_password_hash(ann.user.id, "$argon2id$new")
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(
            store.password_hash(ann.user.id).await.unwrap().as_deref(),
            Some("$argon2id$new")
        );
        assert_eq!(store.password_hash(UserId::new()).await.unwrap(), None);
    }

    pub async fn sessions_are_found_by_token_hash_and_listed_newest_first(store: SqlStore) {
        let ann = insert_user(&store, "ann@example.com").await.user.id;
        let bob = insert_user(&store, "bob@example.com").await.user.id;
        let old = new_session(ann, T0);
        let mut new = new_session(ann, T0 + Duration::minutes(5));
        new.state = SessionState::EnrollmentOnly;
        new.reauth_until = Some(T0 + Duration::minutes(15));
        new.ip = None;
        new.user_agent = None;
        let mut expired = new_session(ann, T0 - Duration::hours(13));
        expired.expires_at = T0 - Duration::hours(1);
        let bobs = new_session(bob, T0);
        insert_sessions(&store, &[&old, &new, &expired, &bobs]).await;

        assert_eq!(
            store.session_by_token_hash(&new.token_hash).await.unwrap(),
            Some(new.clone())
        );
        assert_eq!(
            store
                .session_by_token_hash(&expired.token_hash)
                .await
                .unwrap(),
            Some(expired.clone())
        );
        let unknown = Token::generate().unwrap().hash();
        assert_eq!(store.session_by_token_hash(&unknown).await.unwrap(), None);

        let listed = store
            .sessions_of(ann, T0 + Duration::minutes(10))
            .await
            .unwrap();
        assert_eq!(listed, vec![new.clone(), old.clone()]);
        // At `expires_at` the session is over.
        assert_eq!(
            store.sessions_of(ann, old.expires_at).await.unwrap(),
            vec![new.clone()]
        );

        // The token hash is unique.
        let mut clash = new_session(bob, T0);
        clash.token_hash = old.token_hash;
        let mut tx = store.begin().await.unwrap();
        assert!(matches!(
            tx.insert_session(&clash).await,
            Err(StoreError::Conflict(_))
        ));
    }

    pub async fn touch_updates_only_stale_sessions(store: SqlStore) {
        let ann = insert_user(&store, "ann@example.com").await.user.id;
        let session = new_session(ann, T0);
        insert_sessions(&store, &[&session]).await;
        let last_seen = async |store: &SqlStore| {
            store
                .session_by_token_hash(&session.token_hash)
                .await
                .unwrap()
                .unwrap()
                .last_seen_at
        };

        // Seen 30 s ago: not stale at a one-minute resolution.
        let now = T0 + Duration::seconds(30);
        store
            .touch_session(session.id, now, now - Duration::minutes(1))
            .await
            .unwrap();
        assert_eq!(last_seen(&store).await, T0);

        let now = T0 + Duration::minutes(2);
        store
            .touch_session(session.id, now, now - Duration::minutes(1))
            .await
            .unwrap();
        assert_eq!(last_seen(&store).await, now);

        // An unknown session is not an error.
        store
            .touch_session(SessionId::new(), now, now)
            .await
            .unwrap();
    }

    pub async fn deleting_a_session_is_scoped_to_its_user(store: SqlStore) {
        let ann = insert_user(&store, "ann@example.com").await.user.id;
        let mallory = insert_user(&store, "mallory@example.com").await.user.id;
        let session = new_session(ann, T0);
        insert_sessions(&store, &[&session]).await;

        let mut tx = store.begin().await.unwrap();
        assert!(!tx.delete_session(mallory, session.id).await.unwrap());
        tx.commit().await.unwrap();
        assert!(
            store
                .session_by_token_hash(&session.token_hash)
                .await
                .unwrap()
                .is_some()
        );

        let mut tx = store.begin().await.unwrap();
        assert!(tx.delete_session(ann, session.id).await.unwrap());
        assert!(!tx.delete_session(ann, session.id).await.unwrap());
        tx.commit().await.unwrap();
        assert!(
            store
                .session_by_token_hash(&session.token_hash)
                .await
                .unwrap()
                .is_none()
        );
    }

    pub async fn delete_sessions_except_keeps_one(store: SqlStore) {
        let ann = insert_user(&store, "ann@example.com").await.user.id;
        let bob = insert_user(&store, "bob@example.com").await.user.id;
        let keep = new_session(ann, T0);
        let other1 = new_session(ann, T0);
        let other2 = new_session(ann, T0);
        let bobs = new_session(bob, T0);
        insert_sessions(&store, &[&keep, &other1, &other2, &bobs]).await;

        let mut tx = store.begin().await.unwrap();
        assert_eq!(
            tx.delete_sessions_except(ann, Some(keep.id)).await.unwrap(),
            2
        );
        tx.commit().await.unwrap();
        assert_eq!(
            store.sessions_of(ann, T0).await.unwrap(),
            vec![keep.clone()]
        );
        assert_eq!(
            store.sessions_of(bob, T0).await.unwrap(),
            vec![bobs.clone()]
        );

        let mut tx = store.begin().await.unwrap();
        assert_eq!(tx.delete_sessions_except(ann, None).await.unwrap(), 1);
        tx.commit().await.unwrap();
        assert!(store.sessions_of(ann, T0).await.unwrap().is_empty());
        assert_eq!(store.sessions_of(bob, T0).await.unwrap().len(), 1);
    }

    pub async fn reauth_window_is_stored(store: SqlStore) {
        let ann = insert_user(&store, "ann@example.com").await.user.id;
        let session = new_session(ann, T0);
        insert_sessions(&store, &[&session]).await;
        let until = T0 + Duration::minutes(10);
        let mut tx = store.begin().await.unwrap();
        tx.set_reauth_until(session.id, until).await.unwrap();
        tx.commit().await.unwrap();
        let stored = store
            .session_by_token_hash(&session.token_hash)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.reauth_until, Some(until));
        assert!(stored.reauth_open(T0 + Duration::minutes(9)));
        assert!(!stored.reauth_open(until));
    }

    pub async fn expired_sessions_are_deleted(store: SqlStore) {
        let ann = insert_user(&store, "ann@example.com").await.user.id;
        let live = new_session(ann, T0);
        let mut ended = new_session(ann, T0 - Duration::days(2));
        ended.expires_at = T0 - Duration::days(1);
        insert_sessions(&store, &[&live, &ended]).await;
        assert_eq!(store.delete_expired_sessions(T0).await.unwrap(), 1);
        assert_eq!(store.delete_expired_sessions(T0).await.unwrap(), 0);
        assert!(
            store
                .session_by_token_hash(&live.token_hash)
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            store
                .session_by_token_hash(&ended.token_hash)
                .await
                .unwrap()
                .is_none()
        );
    }

    /// A throttle key distinct for each `n` (the store treats keys as opaque bytes).
    fn key(n: u8) -> ThrottleKey {
        let mut bytes = [0xA5; 32];
        bytes[0] = n;
        bytes[31] = n;
        ThrottleKey(bytes)
    }

    async fn reserve(store: &SqlStore, key: &ThrottleKey, now: OffsetDateTime) -> Option<u32> {
        let mut tx = store.begin().await.unwrap();
        let reserved = tx.reserve_password_attempt(key, now).await.unwrap();
        tx.commit().await.unwrap();
        reserved
    }

    pub async fn password_attempts_count_lock_and_reset(store: SqlStore) {
        let ann = key(1);
        let bob = key(2);
        assert_eq!(
            store.password_throttle(&ann).await.unwrap(),
            PasswordThrottle::default()
        );

        // No account is needed: keys of unknown emails are counted the same way.
        let mut tx = store.begin().await.unwrap();
        assert_eq!(
            tx.reserve_password_attempt(&ann, T0).await.unwrap(),
            Some(1)
        );
        assert_eq!(
            tx.reserve_password_attempt(&ann, T0).await.unwrap(),
            Some(2)
        );
        assert_eq!(
            tx.reserve_password_attempt(&ann, T0).await.unwrap(),
            Some(3)
        );
        assert_eq!(
            tx.reserve_password_attempt(&bob, T0).await.unwrap(),
            Some(1)
        );
        tx.commit().await.unwrap();
        assert_eq!(
            store.password_throttle(&ann).await.unwrap(),
            PasswordThrottle {
                failures: 3,
                locked_until: None
            }
        );

        let until = T0 + Duration::seconds(30);
        let mut tx = store.begin().await.unwrap();
        tx.lock_password(&ann, until).await.unwrap();
        tx.commit().await.unwrap();
        let throttle = store.password_throttle(&ann).await.unwrap();
        assert_eq!(
            throttle,
            PasswordThrottle {
                failures: 3,
                locked_until: Some(until)
            }
        );
        assert_eq!(throttle.retry_after(T0), Some(30));

        // While locked the conditional upsert changes nothing and returns no row.
        assert_eq!(reserve(&store, &ann, T0).await, None);
        assert_eq!(
            reserve(&store, &ann, until - Duration::seconds(1)).await,
            None
        );
        assert_eq!(store.password_throttle(&ann).await.unwrap(), throttle);
        // Other keys are not affected.
        assert_eq!(reserve(&store, &bob, T0).await, Some(2));
        // From `until` on, attempts are counted again (the lock stays recorded).
        assert_eq!(reserve(&store, &ann, until).await, Some(4));
        assert_eq!(
            store.password_throttle(&ann).await.unwrap(),
            PasswordThrottle {
                failures: 4,
                locked_until: Some(until)
            }
        );

        let mut tx = store.begin().await.unwrap();
        assert_eq!(
            tx.reserve_password_attempt(&ann, until).await.unwrap(),
            Some(5)
        );
        tx.reset_password_failures(&ann).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(
            store.password_throttle(&ann).await.unwrap(),
            PasswordThrottle::default()
        );
        assert_eq!(reserve(&store, &ann, T0).await, Some(1));
        assert_eq!(store.password_throttle(&bob).await.unwrap().failures, 2);

        // A lock without earlier attempts (e.g. set by an operator) is stored too, and a reset
        // clears it.
        let carol = key(3);
        let mut tx = store.begin().await.unwrap();
        tx.lock_password(&carol, until).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(
            store.password_throttle(&carol).await.unwrap(),
            PasswordThrottle {
                failures: 0,
                locked_until: Some(until)
            }
        );
        assert_eq!(reserve(&store, &carol, T0).await, None);
        let mut tx = store.begin().await.unwrap();
        tx.reset_password_failures(&carol).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(
            store.password_throttle(&carol).await.unwrap(),
            PasswordThrottle::default()
        );
        assert_eq!(reserve(&store, &carol, T0).await, Some(1));

        // A rolled-back reservation is not counted.
        let mut tx = store.begin().await.unwrap();
        assert_eq!(
            tx.reserve_password_attempt(&carol, T0).await.unwrap(),
            Some(2)
        );
        drop(tx);
        assert_eq!(store.password_throttle(&carol).await.unwrap().failures, 1);
    }

    pub async fn concurrent_password_reservations_are_all_counted(store: SqlStore) {
        const ATTEMPTS: u32 = 20;
        let ann = key(1);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..ATTEMPTS {
            let store = store.clone();
            tasks.spawn(async move { reserve(&store, &ann, T0).await.unwrap() });
        }
        let counts: BTreeSet<u32> = tasks.join_all().await.into_iter().collect();
        assert_eq!(counts, (1..=ATTEMPTS).collect::<BTreeSet<_>>());
        assert_eq!(
            store.password_throttle(&ann).await.unwrap().failures,
            ATTEMPTS
        );
    }

    /// As the sign-in service uses it: each attempt reserves in its own transaction, and the
    /// one whose count reaches the limit sets the lock in that same transaction before commit.
    /// Attempts racing it (waiting on the row on PostgreSQL, on the writer on SQLite) and
    /// attempts after it are all refused until the lock ends.
    pub async fn the_reservation_that_locks_stops_the_ones_after_it(store: SqlStore) {
        const ATTEMPTS: u32 = 16;
        let limit = tessera_core::throttle::PASSWORD_FAILURES_BEFORE_LOCK;
        let ann = key(1);
        let until = T0 + lock_after(limit).unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..ATTEMPTS {
            let store = store.clone();
            tasks.spawn(async move {
                let mut tx = store.begin().await.unwrap();
                let reserved = tx.reserve_password_attempt(&ann, T0).await.unwrap();
                if let Some(count) = reserved
                    && let Some(lock) = lock_after(count)
                {
                    // Give racing reservations time to queue up behind this one.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    tx.lock_password(&ann, T0 + lock).await.unwrap();
                }
                tx.commit().await.unwrap();
                reserved
            });
        }
        let outcomes = tasks.join_all().await;
        let counts: BTreeSet<u32> = outcomes.iter().flatten().copied().collect();
        assert_eq!(counts, (1..=limit).collect::<BTreeSet<_>>());
        assert_eq!(
            outcomes.iter().filter(|o| o.is_none()).count(),
            (ATTEMPTS - limit) as usize
        );
        assert_eq!(
            store.password_throttle(&ann).await.unwrap(),
            PasswordThrottle {
                failures: limit,
                locked_until: Some(until)
            }
        );

        assert_eq!(reserve(&store, &ann, T0 + Duration::seconds(1)).await, None);
        assert_eq!(
            reserve(&store, &ann, until - Duration::seconds(1)).await,
            None
        );
        assert_eq!(reserve(&store, &ann, until).await, Some(limit + 1));
    }

    pub async fn key_check_is_recorded_once(store: SqlStore) {
        let check = [7u8; 32];
        assert!(store.ensure_key_check(&check, T0).await.unwrap());
        assert!(store.ensure_key_check(&check, T0).await.unwrap());
        assert!(!store.ensure_key_check(&[8u8; 32], T0).await.unwrap());
        assert!(!store.ensure_key_check(&check[..31], T0).await.unwrap());
        assert!(!store.ensure_key_check(&[], T0).await.unwrap());
        // The refused values did not replace the recorded one.
        assert!(store.ensure_key_check(&check, T0).await.unwrap());
    }

    pub async fn concurrent_first_key_checks_agree_on_one_value(store: SqlStore) {
        const CALLERS: u8 = 8;
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..CALLERS {
            let store = store.clone();
            tasks.spawn(async move {
                let check = [n; 32];
                (n, store.ensure_key_check(&check, T0).await.unwrap())
            });
        }
        let winners: Vec<u8> = tasks
            .join_all()
            .await
            .into_iter()
            .filter_map(|(n, accepted)| accepted.then_some(n))
            .collect();
        assert_eq!(winners.len(), 1, "{winners:?}");
        assert!(store.ensure_key_check(&[winners[0]; 32], T0).await.unwrap());
    }

    pub async fn events_append_and_page_newest_first(store: SqlStore) {
        let ann = insert_user(&store, "ann@example.com").await.user.id;
        let bob = insert_user(&store, "bob@example.com").await.user.id;
        let admin = UserId::new();
        let kinds = [
            EventKind::AccountCreated,
            EventKind::SigninFailed,
            EventKind::SigninSucceeded,
            EventKind::Reauth,
            EventKind::PasswordChanged,
        ];
        let mut tx = store.begin().await.unwrap();
        for (i, kind) in (0i64..).zip(kinds) {
            tx.insert_event(&NewEvent {
                user_id: ann,
                kind,
                at: T0 + Duration::minutes(i),
                client: ClientInfo::new(Some("198.51.100.4".into()), Some("curl/8")),
                actor_id: (i == 4).then_some(admin),
                details: json!({ "step": i, "nested": { "ok": true } }),
            })
            .await
            .unwrap();
        }
        tx.insert_event(&NewEvent {
            user_id: bob,
            kind: EventKind::Signout,
            at: T0,
            client: ClientInfo::default(),
            actor_id: None,
            details: json!({}),
        })
        .await
        .unwrap();
        tx.commit().await.unwrap();

        let first = store.events_of(ann, None, 2).await.unwrap();
        assert_eq!(
            first.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
            ["password_changed", "reauth"]
        );
        let newest = &first[0];
        assert_eq!(newest.user_id, ann);
        assert_eq!(newest.at, T0 + Duration::minutes(4));
        assert_eq!(newest.ip.as_deref(), Some("198.51.100.4"));
        assert_eq!(newest.user_agent.as_deref(), Some("curl/8"));
        assert_eq!(newest.actor_id, Some(admin));
        assert_eq!(
            newest.details,
            json!({ "step": 4, "nested": { "ok": true } })
        );
        assert_eq!(first[1].actor_id, None);
        assert!(first[0].id > first[1].id);

        let second = store.events_of(ann, Some(first[1].id), 2).await.unwrap();
        assert_eq!(
            second.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
            ["signin_succeeded", "signin_failed"]
        );
        let third = store.events_of(ann, Some(second[1].id), 2).await.unwrap();
        assert_eq!(
            third.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
            ["account_created"]
        );
        assert!(
            store
                .events_of(ann, Some(third[0].id), 2)
                .await
                .unwrap()
                .is_empty()
        );

        let all = store.events_of(ann, None, 100).await.unwrap();
        assert_eq!(all.len(), 5);
        let bobs = store.events_of(bob, None, 100).await.unwrap();
        assert_eq!(bobs.len(), 1);
        assert_eq!(
            (bobs[0].kind.as_str(), bobs[0].ip.as_deref()),
            ("signout", None)
        );
    }

    pub async fn outbox_claim_lease_retry_and_send(store: SqlStore) {
        let lease = Duration::minutes(2);
        enqueue(
            &store,
            &[
                message("first@example.com", T0),
                message("second@example.com", T0),
            ],
        )
        .await;
        assert_eq!(store.outbox_backlog().await.unwrap(), 2);

        // Oldest first, with the notification intact.
        let claimed = store
            .claim_outbox_message(T0, T0 + lease)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(claimed.recipient, "first@example.com");
        assert_eq!(claimed.channel, Channel::Email);
        assert_eq!(
            claimed.notification,
            Notification::AccountCreated {
                email: "first@example.com".into()
            }
        );
        assert_eq!((claimed.created_at, claimed.attempts), (T0, 0));

        // While leased, the next claim gets the other message, then nothing.
        let other = store
            .claim_outbox_message(T0, T0 + lease)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(other.recipient, "second@example.com");
        let during = T0 + Duration::minutes(1);
        assert_eq!(
            store
                .claim_outbox_message(during, during + lease)
                .await
                .unwrap(),
            None
        );
        store.mark_outbox_sent(other.id, during).await.unwrap();
        assert_eq!(store.outbox_backlog().await.unwrap(), 1);

        // After the lease ends (a crashed worker), the message is claimable again.
        let after = T0 + lease;
        let again = store
            .claim_outbox_message(after, after + lease)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again.id, claimed.id);

        // A retry counts the attempt, clears the lease and waits until `next_attempt_at`.
        let next = after + Duration::seconds(30);
        store
            .mark_outbox_retry(again.id, next, "smtp: connection refused")
            .await
            .unwrap();
        assert_eq!(
            store
                .claim_outbox_message(next - Duration::seconds(1), next + lease)
                .await
                .unwrap(),
            None
        );
        let retried = store
            .claim_outbox_message(next, next + lease)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((retried.id, retried.attempts), (claimed.id, 1));

        store.mark_outbox_sent(retried.id, next).await.unwrap();
        // Sent messages are never claimed again, even long after.
        let later = T0 + Duration::days(2);
        assert_eq!(
            store
                .claim_outbox_message(later, later + lease)
                .await
                .unwrap(),
            None
        );
        assert_eq!(store.outbox_backlog().await.unwrap(), 0);
    }

    pub async fn outbox_failed_messages_leave_the_backlog(store: SqlStore) {
        let lease = Duration::minutes(2);
        let mut sms = message("+15555550100", T0);
        sms.channel = Channel::Sms;
        enqueue(&store, &[sms]).await;
        let claimed = store
            .claim_outbox_message(T0, T0 + lease)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(claimed.channel, Channel::Sms);
        store
            .mark_outbox_failed(claimed.id, &"x".repeat(5000))
            .await
            .unwrap();
        assert_eq!(store.outbox_backlog().await.unwrap(), 0);
        let later = T0 + Duration::days(1);
        assert_eq!(
            store
                .claim_outbox_message(later, later + lease)
                .await
                .unwrap(),
            None
        );
        // A late retry cannot resurrect a failed message.
        store
            .mark_outbox_retry(claimed.id, later, "late")
            .await
            .unwrap();
        assert_eq!(
            store
                .claim_outbox_message(later, later + lease)
                .await
                .unwrap(),
            None
        );
        assert_eq!(store.outbox_backlog().await.unwrap(), 0);
    }

    pub async fn concurrent_claims_never_share_a_message(store: SqlStore) {
        const MESSAGES: usize = 12;
        let messages: Vec<_> = (0..MESSAGES)
            .map(|i| message(&format!("u{i}@example.com"), T0))
            .collect();
        enqueue(&store, &messages).await;
        let lease = T0 + Duration::minutes(2);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..MESSAGES {
            let store = store.clone();
            tasks.spawn(async move { store.claim_outbox_message(T0, lease).await.unwrap() });
        }
        let mut ids: Vec<i64> = tasks
            .join_all()
            .await
            .into_iter()
            .flatten()
            .map(|m| m.id)
            .collect();
        // Whatever a claim missed is still there to claim; nothing is claimed twice.
        while let Some(message) = store.claim_outbox_message(T0, lease).await.unwrap() {
            ids.push(message.id);
        }
        let distinct: BTreeSet<i64> = ids.iter().copied().collect();
        assert_eq!(ids.len(), MESSAGES);
        assert_eq!(distinct.len(), MESSAGES);
    }

    pub async fn dropped_transaction_rolls_back(store: SqlStore) {
        let ann = new_user("ann@example.com", T0);
        let mut tx = store.begin().await.unwrap();
        tx.insert_user(&ann).await.unwrap();
        tx.enqueue(&message("ann@example.com", T0)).await.unwrap();
        drop(tx);
        assert_eq!(store.user_by_id(ann.user.id).await.unwrap(), None);
        assert_eq!(store.outbox_backlog().await.unwrap(), 0);

        // The connection is usable again, and the email is still free.
        let mut tx = store.begin().await.unwrap();
        tx.insert_user(&ann).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(store.user_by_id(ann.user.id).await.unwrap(), Some(ann.user));
    }

    // ---- Second factors -------------------------------------------------------------------

    /// Sealed-secret bytes distinct for each `n`, with NUL and 0xFF bytes so a column that
    /// treated them as text would not round-trip them.
    fn sealed(n: u8) -> Vec<u8> {
        let mut bytes = vec![0x00, 0xFF, n, 0x00];
        bytes.extend((0..40u8).map(|i| i.wrapping_mul(37) ^ n));
        bytes
    }

    fn totp_factor(user_id: UserId, created_at: OffsetDateTime, n: u8) -> Factor {
        Factor {
            id: FactorId::new(),
            user_id,
            kind: FactorKind::Totp,
            label: format!("Phone {n}"),
            secret_sealed: Some(sealed(n)),
            key_id: Some(1),
            last_step: None,
            preferred: false,
            created_at,
            last_used_at: None,
            destination: None,
        }
    }

    async fn insert_factors(store: &SqlStore, factors: &[&Factor]) {
        let mut tx = store.begin().await.unwrap();
        for factor in factors {
            tx.insert_factor(factor).await.unwrap();
        }
        tx.commit().await.unwrap();
    }

    fn enrollment(user_id: UserId, created_at: OffsetDateTime, n: u8) -> TotpEnrollment {
        TotpEnrollment {
            id: EnrollmentId::new(),
            user_id,
            factor_id: FactorId::new(),
            secret_sealed: sealed(n),
            key_id: 1,
            attempts: 0,
            created_at,
            expires_at: created_at + ENROLLMENT_TTL,
        }
    }

    async fn insert_enrollments(store: &SqlStore, enrollments: &[&TotpEnrollment]) {
        let mut tx = store.begin().await.unwrap();
        for enrollment in enrollments {
            tx.insert_totp_enrollment(enrollment).await.unwrap();
        }
        tx.commit().await.unwrap();
    }

    async fn preferred_labels(store: &SqlStore, user_id: UserId) -> Vec<String> {
        store
            .factors_of(user_id)
            .await
            .unwrap()
            .into_iter()
            .filter(|f| f.preferred)
            .map(|f| f.label)
            .collect()
    }

    pub async fn factors_round_trip_oldest_first_and_deletes_are_scoped(store: SqlStore) {
        let ann = insert_user(&store, "ann@example.com").await.user.id;
        let bob = insert_user(&store, "bob@example.com").await.user.id;
        let older = totp_factor(ann, T0, 1);
        let mut newer = totp_factor(ann, T0 + Duration::minutes(1), 2);
        newer.key_id = Some(u32::MAX);
        newer.last_step = Some(59_000_000);
        newer.preferred = true;
        newer.last_used_at = Some(T0 + Duration::minutes(2));
        let key = Factor {
            id: FactorId::new(),
            user_id: ann,
            kind: FactorKind::Webauthn,
            label: "Security key".into(),
            secret_sealed: None,
            key_id: None,
            last_step: None,
            preferred: false,
            created_at: T0 + Duration::minutes(3),
            last_used_at: None,
            destination: None,
        };
        let bobs = totp_factor(bob, T0, 3);
        // Inserted out of order: the listing is by creation time.
        insert_factors(&store, &[&key, &newer, &older, &bobs]).await;

        assert_eq!(
            store.factors_of(ann).await.unwrap(),
            vec![older.clone(), newer.clone(), key.clone()]
        );
        assert_eq!(store.factors_of(bob).await.unwrap(), vec![bobs.clone()]);
        assert!(store.factors_of(UserId::new()).await.unwrap().is_empty());

        // The id is unique.
        let mut tx = store.begin().await.unwrap();
        let mut twin = totp_factor(bob, T0, 4);
        twin.id = older.id;
        assert!(matches!(
            tx.insert_factor(&twin).await,
            Err(StoreError::Conflict(_))
        ));
        drop(tx);

        // Another user's id deletes nothing.
        let mut tx = store.begin().await.unwrap();
        assert!(!tx.delete_factor(bob, older.id).await.unwrap());
        assert!(!tx.delete_factor(ann, FactorId::new()).await.unwrap());
        tx.commit().await.unwrap();
        assert_eq!(store.factors_of(ann).await.unwrap().len(), 3);

        let mut tx = store.begin().await.unwrap();
        assert!(tx.delete_factor(ann, older.id).await.unwrap());
        assert!(!tx.delete_factor(ann, older.id).await.unwrap());
        tx.commit().await.unwrap();
        assert_eq!(
            store.factors_of(ann).await.unwrap(),
            vec![newer.clone(), key.clone()]
        );

        let mut tx = store.begin().await.unwrap();
        assert_eq!(tx.delete_factors(ann).await.unwrap(), 2);
        assert_eq!(tx.delete_factors(ann).await.unwrap(), 0);
        tx.commit().await.unwrap();
        assert!(store.factors_of(ann).await.unwrap().is_empty());
        assert_eq!(store.factors_of(bob).await.unwrap(), vec![bobs]);
    }

    pub async fn ensure_preferred_factor_promotes_the_oldest_only_when_none_is(store: SqlStore) {
        let ann = insert_user(&store, "ann@example.com").await.user.id;
        let bob = insert_user(&store, "bob@example.com").await.user.id;
        let carol = insert_user(&store, "carol@example.com").await.user.id;
        let a1 = totp_factor(ann, T0, 1);
        let a2 = totp_factor(ann, T0 + Duration::minutes(1), 2);
        let a3 = totp_factor(ann, T0 + Duration::minutes(2), 3);
        let b1 = totp_factor(bob, T0, 4);
        let mut b2 = totp_factor(bob, T0 + Duration::minutes(1), 5);
        b2.preferred = true;
        // Inserted newest first, so "oldest" cannot mean "first inserted".
        insert_factors(&store, &[&a3, &a2, &a1, &b2, &b1]).await;

        let ensure = async |user_id| {
            let mut tx = store.begin().await.unwrap();
            tx.ensure_preferred_factor(user_id).await.unwrap();
            tx.commit().await.unwrap();
        };

        ensure(ann).await;
        assert_eq!(preferred_labels(&store, ann).await, ["Phone 1"]);
        // Idempotent.
        ensure(ann).await;
        assert_eq!(preferred_labels(&store, ann).await, ["Phone 1"]);
        // An existing preferred factor is left alone, even if it is not the oldest.
        ensure(bob).await;
        assert_eq!(preferred_labels(&store, bob).await, ["Phone 5"]);
        // No factors: nothing to do, and no error.
        ensure(carol).await;
        assert!(store.factors_of(carol).await.unwrap().is_empty());

        // After the preferred factor is removed, the oldest remaining one takes over.
        let mut tx = store.begin().await.unwrap();
        assert!(tx.delete_factor(ann, a1.id).await.unwrap());
        tx.ensure_preferred_factor(ann).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(preferred_labels(&store, ann).await, ["Phone 2"]);
        // The other user's factors were not touched.
        assert_eq!(preferred_labels(&store, bob).await, ["Phone 5"]);
    }

    async fn advance(store: &SqlStore, id: FactorId, step: u64, now: OffsetDateTime) -> bool {
        let mut tx = store.begin().await.unwrap();
        let accepted = tx.advance_totp_step(id, step, now).await.unwrap();
        tx.commit().await.unwrap();
        accepted
    }

    pub async fn totp_steps_only_move_forward(store: SqlStore) {
        let ann = insert_user(&store, "ann@example.com").await.user.id;
        let fresh = totp_factor(ann, T0, 1);
        let other = totp_factor(ann, T0 + Duration::minutes(1), 2);
        insert_factors(&store, &[&fresh, &other]).await;
        let stored = async |id: FactorId| {
            let factors = store.factors_of(ann).await.unwrap();
            let factor = factors.into_iter().find(|f| f.id == id).unwrap();
            (factor.last_step, factor.last_used_at)
        };

        // Never used: any step is accepted, even 0.
        assert!(advance(&store, other.id, 0, T0).await);
        assert_eq!(stored(other.id).await, (Some(0), Some(T0)));

        let first = T0 + Duration::minutes(1);
        assert!(advance(&store, fresh.id, 1000, first).await);
        assert_eq!(stored(fresh.id).await, (Some(1000), Some(first)));
        // Replay of the same step, or an earlier one, is refused and changes nothing.
        let later = T0 + Duration::minutes(2);
        assert!(!advance(&store, fresh.id, 1000, later).await);
        assert!(!advance(&store, fresh.id, 999, later).await);
        assert!(!advance(&store, fresh.id, 0, later).await);
        assert_eq!(stored(fresh.id).await, (Some(1000), Some(first)));
        assert!(advance(&store, fresh.id, 1001, later).await);
        assert_eq!(stored(fresh.id).await, (Some(1001), Some(later)));
        // The other factor has its own last step.
        assert_eq!(stored(other.id).await, (Some(0), Some(T0)));

        // A rolled-back step is not recorded.
        let mut tx = store.begin().await.unwrap();
        assert!(tx.advance_totp_step(fresh.id, 2000, later).await.unwrap());
        drop(tx);
        assert_eq!(stored(fresh.id).await, (Some(1001), Some(later)));

        assert!(!advance(&store, FactorId::new(), 5000, later).await);
    }

    pub async fn concurrent_uses_of_one_totp_step_accept_exactly_one(store: SqlStore) {
        const CALLERS: usize = 20;
        let ann = insert_user(&store, "ann@example.com").await.user.id;
        let mut factor = totp_factor(ann, T0, 1);
        factor.last_step = Some(4999);
        insert_factors(&store, &[&factor]).await;
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..CALLERS {
            let store = store.clone();
            let id = factor.id;
            tasks.spawn(async move { advance(&store, id, 5000, T0).await });
        }
        let accepted = tasks.join_all().await.into_iter().filter(|a| *a).count();
        assert_eq!(accepted, 1);
        assert_eq!(
            store.factors_of(ann).await.unwrap()[0].last_step,
            Some(5000)
        );
    }

    pub async fn enrollments_count_attempts_and_are_taken_once(store: SqlStore) {
        let ann = insert_user(&store, "ann@example.com").await.user.id;
        let bob = insert_user(&store, "bob@example.com").await.user.id;
        let mut open = enrollment(ann, T0, 1);
        open.key_id = 7;
        let other = enrollment(ann, T0, 2);
        insert_enrollments(&store, &[&open, &other]).await;

        assert_eq!(
            store.totp_enrollment(ann, open.id).await.unwrap(),
            Some(open.clone())
        );
        // Scoped to its user.
        assert_eq!(store.totp_enrollment(bob, open.id).await.unwrap(), None);
        assert_eq!(
            store
                .totp_enrollment(ann, EnrollmentId::new())
                .await
                .unwrap(),
            None
        );

        // The factor id it will become is unique.
        let mut twin = enrollment(bob, T0, 3);
        twin.factor_id = open.factor_id;
        let mut tx = store.begin().await.unwrap();
        assert!(matches!(
            tx.insert_totp_enrollment(&twin).await,
            Err(StoreError::Conflict(_))
        ));
        drop(tx);

        // Up to `max` wrong codes are counted, then the enrollment refuses more.
        let mut tx = store.begin().await.unwrap();
        for _ in 0..3 {
            assert!(tx.count_enrollment_attempt(open.id, 3).await.unwrap());
        }
        assert!(!tx.count_enrollment_attempt(open.id, 3).await.unwrap());
        assert!(!tx.count_enrollment_attempt(open.id, 3).await.unwrap());
        assert!(
            !tx.count_enrollment_attempt(EnrollmentId::new(), 3)
                .await
                .unwrap()
        );
        tx.commit().await.unwrap();
        let counted = store.totp_enrollment(ann, open.id).await.unwrap().unwrap();
        assert_eq!(counted.attempts, 3);
        assert_eq!(
            store
                .totp_enrollment(ann, other.id)
                .await
                .unwrap()
                .unwrap()
                .attempts,
            0
        );

        let take = async |user_id, id, now| {
            let mut tx = store.begin().await.unwrap();
            let taken = tx.take_totp_enrollment(user_id, id, now).await.unwrap();
            tx.commit().await.unwrap();
            taken
        };
        // Not by another user, not at or after `expires_at`; none of these removes it.
        assert_eq!(take(bob, open.id, T0).await, None);
        assert_eq!(take(ann, open.id, open.expires_at).await, None);
        assert_eq!(
            take(ann, open.id, open.expires_at + Duration::hours(1)).await,
            None
        );
        assert!(store.totp_enrollment(ann, open.id).await.unwrap().is_some());

        let last_moment = open.expires_at - Duration::seconds(1);
        assert_eq!(take(ann, open.id, last_moment).await, Some(counted));
        assert_eq!(take(ann, open.id, last_moment).await, None);
        assert_eq!(store.totp_enrollment(ann, open.id).await.unwrap(), None);
        assert!(
            store
                .totp_enrollment(ann, other.id)
                .await
                .unwrap()
                .is_some()
        );
    }

    /// A backup-code hash distinct for each `n`.
    fn code_hash(n: u8) -> [u8; 32] {
        let mut hash = [0x3C; 32];
        hash[0] = n;
        hash[31] = !n;
        hash
    }

    fn code_hashes(first: u8) -> Vec<[u8; 32]> {
        (first..first + BACKUP_CODE_COUNT as u8)
            .map(code_hash)
            .collect()
    }

    async fn replace_codes(
        store: &SqlStore,
        user_id: UserId,
        hashes: &[[u8; 32]],
        now: OffsetDateTime,
    ) {
        let mut tx = store.begin().await.unwrap();
        tx.replace_backup_codes(user_id, hashes, now).await.unwrap();
        tx.commit().await.unwrap();
    }

    async fn consume(
        store: &SqlStore,
        user_id: UserId,
        hash: &[u8; 32],
        now: OffsetDateTime,
    ) -> Option<u32> {
        let mut tx = store.begin().await.unwrap();
        let remaining = tx.consume_backup_code(user_id, hash, now).await.unwrap();
        tx.commit().await.unwrap();
        remaining
    }

    pub async fn backup_codes_are_replaced_and_used_once(store: SqlStore) {
        let ann = insert_user(&store, "ann@example.com").await.user.id;
        let bob = insert_user(&store, "bob@example.com").await.user.id;
        assert_eq!(
            store.backup_code_status(ann).await.unwrap(),
            BackupCodeStatus::default()
        );

        let first = code_hashes(0);
        replace_codes(&store, ann, &first, T0).await;
        assert_eq!(
            store.backup_code_status(ann).await.unwrap(),
            BackupCodeStatus {
                remaining: 10,
                generated_at: Some(T0)
            }
        );

        let use_at = T0 + Duration::minutes(1);
        assert_eq!(consume(&store, ann, &first[3], use_at).await, Some(9));
        assert_eq!(consume(&store, ann, &first[3], use_at).await, None);
        assert_eq!(consume(&store, ann, &code_hash(200), use_at).await, None);
        // A code is only ever the user's own.
        assert_eq!(consume(&store, bob, &first[4], use_at).await, None);
        assert_eq!(
            store.backup_code_status(ann).await.unwrap(),
            BackupCodeStatus {
                remaining: 9,
                generated_at: Some(T0)
            }
        );
        assert_eq!(
            store.backup_code_status(bob).await.unwrap(),
            BackupCodeStatus::default()
        );

        // Equal hashes of two users are two codes (real hashes differ per user anyway).
        let bob_at = T0 + Duration::minutes(5);
        replace_codes(&store, bob, &[first[0]], bob_at).await;
        assert_eq!(consume(&store, bob, &first[0], bob_at).await, Some(0));
        assert_eq!(consume(&store, ann, &first[0], bob_at).await, Some(8));

        // A rolled-back use is not recorded.
        let mut tx = store.begin().await.unwrap();
        assert_eq!(
            tx.consume_backup_code(ann, &first[1], use_at)
                .await
                .unwrap(),
            Some(7)
        );
        drop(tx);
        assert_eq!(store.backup_code_status(ann).await.unwrap().remaining, 8);

        // A new set wipes the old one, used and unused codes alike.
        let again = T0 + Duration::hours(1);
        let second = code_hashes(100);
        replace_codes(&store, ann, &second, again).await;
        assert_eq!(
            store.backup_code_status(ann).await.unwrap(),
            BackupCodeStatus {
                remaining: 10,
                generated_at: Some(again)
            }
        );
        assert_eq!(consume(&store, ann, &first[5], again).await, None);
        assert_eq!(consume(&store, ann, &second[5], again).await, Some(9));

        // Deleting counts used codes too; Bob's set is untouched.
        let mut tx = store.begin().await.unwrap();
        assert_eq!(tx.delete_backup_codes(ann).await.unwrap(), 10);
        assert_eq!(tx.delete_backup_codes(ann).await.unwrap(), 0);
        tx.commit().await.unwrap();
        assert_eq!(
            store.backup_code_status(ann).await.unwrap(),
            BackupCodeStatus::default()
        );
        assert_eq!(consume(&store, ann, &second[6], again).await, None);
        assert_eq!(
            store.backup_code_status(bob).await.unwrap(),
            BackupCodeStatus {
                remaining: 0,
                generated_at: Some(bob_at)
            }
        );
    }

    pub async fn concurrent_uses_of_one_backup_code_succeed_once(store: SqlStore) {
        const CALLERS: usize = 20;
        let ann = insert_user(&store, "ann@example.com").await.user.id;
        let hashes = code_hashes(0);
        replace_codes(&store, ann, &hashes, T0).await;
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..CALLERS {
            let store = store.clone();
            let hash = hashes[0];
            tasks.spawn(async move { consume(&store, ann, &hash, T0).await });
        }
        let outcomes = tasks.join_all().await;
        let used: Vec<u32> = outcomes.iter().flatten().copied().collect();
        assert_eq!(used, [9]);
        assert_eq!(store.backup_code_status(ann).await.unwrap().remaining, 9);
    }

    fn challenge(user_id: UserId, created_at: OffsetDateTime) -> Challenge {
        Challenge {
            id: ChallengeId::new(),
            token_hash: Token::generate().unwrap().hash(),
            user_id,
            purpose: CHALLENGE_PURPOSE_SIGNIN.into(),
            created_at,
            expires_at: created_at + CHALLENGE_TTL,
            completed_at: None,
            ip: Some("203.0.113.9".into()),
            user_agent: Some("Mozilla/5.0 (test)".into()),
        }
    }

    async fn insert_challenges(store: &SqlStore, challenges: &[&Challenge]) {
        let mut tx = store.begin().await.unwrap();
        for challenge in challenges {
            tx.insert_challenge(challenge).await.unwrap();
        }
        tx.commit().await.unwrap();
    }

    async fn report(
        store: &SqlStore,
        id: ChallengeId,
        state: ReportState,
        now: OffsetDateTime,
    ) -> bool {
        let mut tx = store.begin().await.unwrap();
        let reported = tx.mark_challenge_reported(id, state, now).await.unwrap();
        tx.commit().await.unwrap();
        reported
    }

    async fn last_report(store: &SqlStore, user_id: UserId) -> Option<OffsetDateTime> {
        let mut tx = store.begin().await.unwrap();
        tx.last_unfinished_signin_report(user_id).await.unwrap()
    }

    pub async fn challenges_round_trip_and_complete_once(store: SqlStore) {
        let ann = insert_user(&store, "ann@example.com").await.user.id;
        let open = challenge(ann, T0);
        let mut bare = challenge(ann, T0);
        bare.ip = None;
        bare.user_agent = None;
        let mut done = challenge(ann, T0 - Duration::minutes(1));
        done.completed_at = Some(T0);
        insert_challenges(&store, &[&open, &bare, &done]).await;
        for c in [&open, &bare, &done] {
            assert_eq!(
                store.challenge_by_token_hash(&c.token_hash).await.unwrap(),
                Some(c.clone())
            );
        }
        let unknown = Token::generate().unwrap().hash();
        assert_eq!(store.challenge_by_token_hash(&unknown).await.unwrap(), None);

        // The token hash is unique.
        let mut clash = challenge(ann, T0);
        clash.token_hash = open.token_hash;
        let mut tx = store.begin().await.unwrap();
        assert!(matches!(
            tx.insert_challenge(&clash).await,
            Err(StoreError::Conflict(_))
        ));
        drop(tx);

        let complete = async |id, now| {
            let mut tx = store.begin().await.unwrap();
            let completed = tx.complete_challenge(id, now).await.unwrap();
            tx.commit().await.unwrap();
            completed
        };
        // At `expires_at` it is over.
        assert!(!complete(open.id, open.expires_at).await);
        assert!(!complete(bare.id, bare.expires_at + Duration::hours(1)).await);
        // Single use.
        let at = T0 + Duration::minutes(1);
        assert!(complete(open.id, at).await);
        assert!(!complete(open.id, at).await);
        assert!(!complete(done.id, T0).await);
        assert!(!complete(ChallengeId::new(), at).await);
        let stored = store
            .challenge_by_token_hash(&open.token_hash)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.completed_at, Some(at));
        assert!(!stored.is_open(at));
        let stored = store
            .challenge_by_token_hash(&bare.token_hash)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.completed_at, None);
    }

    pub async fn unfinished_signins_are_listed_and_reported_once(store: SqlStore) {
        let ann = insert_user(&store, "ann@example.com").await.user.id;
        let bob = insert_user(&store, "bob@example.com").await.user.id;
        let cutoff = T0 + Duration::minutes(10);
        let bobs = challenge(bob, T0 - Duration::minutes(5));
        let oldest = challenge(ann, T0 - Duration::minutes(3));
        let mut completed = challenge(ann, T0 - Duration::minutes(4));
        completed.completed_at = Some(T0 - Duration::minutes(3));
        let middle = challenge(ann, T0);
        // Created at the cutoff: not yet "before" it.
        let recent = challenge(ann, cutoff);
        insert_challenges(&store, &[&recent, &middle, &completed, &oldest, &bobs]).await;

        assert_eq!(
            store.unreported_challenges(cutoff, 10).await.unwrap(),
            vec![bobs.clone(), oldest.clone(), middle.clone()]
        );
        assert_eq!(
            store.unreported_challenges(cutoff, 2).await.unwrap(),
            vec![bobs.clone(), oldest.clone()]
        );
        assert_eq!(
            store.unreported_challenges(T0, 10).await.unwrap(),
            vec![bobs.clone(), oldest.clone()]
        );

        // Reported once, whatever the state of the second call.
        let at = T0 + Duration::minutes(20);
        assert!(report(&store, bobs.id, ReportState::Sent, at).await);
        assert!(!report(&store, bobs.id, ReportState::Sent, at).await);
        assert!(!report(&store, bobs.id, ReportState::Suppressed, at).await);
        // A sign-in that was finished (e.g. between listing and reporting) is not reported.
        assert!(!report(&store, completed.id, ReportState::Sent, at).await);
        assert!(!report(&store, ChallengeId::new(), ReportState::Sent, at).await);
        assert_eq!(
            store.unreported_challenges(cutoff, 10).await.unwrap(),
            vec![oldest.clone(), middle.clone()]
        );

        // Only reports that were sent count; suppressed ones do not.
        assert_eq!(last_report(&store, ann).await, None);
        assert!(report(&store, oldest.id, ReportState::Suppressed, at).await);
        assert_eq!(last_report(&store, ann).await, None);
        let sent_at = T0 + Duration::minutes(30);
        assert!(report(&store, middle.id, ReportState::Sent, sent_at).await);
        let late_suppressed = challenge(ann, T0 + Duration::minutes(1));
        insert_challenges(&store, &[&late_suppressed]).await;
        assert!(
            report(
                &store,
                late_suppressed.id,
                ReportState::Suppressed,
                sent_at + Duration::minutes(10)
            )
            .await
        );
        let earlier_sent = challenge(ann, T0 + Duration::minutes(2));
        insert_challenges(&store, &[&earlier_sent]).await;
        assert!(report(&store, earlier_sent.id, ReportState::Sent, at).await);
        assert_eq!(last_report(&store, ann).await, Some(sent_at));
        assert_eq!(last_report(&store, bob).await, Some(at));
        assert_eq!(last_report(&store, UserId::new()).await, None);
        assert_eq!(
            store.unreported_challenges(cutoff, 10).await.unwrap(),
            Vec::<Challenge>::new()
        );
    }

    async fn record_failure(
        store: &SqlStore,
        user_id: UserId,
        now: OffsetDateTime,
        lock_until: OffsetDateTime,
    ) -> Option<u32> {
        let mut tx = store.begin().await.unwrap();
        let failures = tx
            .record_second_factor_failure(
                user_id,
                now,
                MAX_FAILED_SECOND_FACTOR_ATTEMPTS,
                lock_until,
            )
            .await
            .unwrap();
        tx.commit().await.unwrap();
        failures
    }

    async fn clear_failures(store: &SqlStore, user_id: UserId) -> Option<OffsetDateTime> {
        let mut tx = store.begin().await.unwrap();
        let lock = tx.clear_second_factor_failures(user_id).await.unwrap();
        tx.commit().await.unwrap();
        lock
    }

    pub async fn second_factor_failures_lock_at_the_limit(store: SqlStore) {
        let limit = MAX_FAILED_SECOND_FACTOR_ATTEMPTS;
        assert_eq!(limit, 5);
        let ann = insert_user(&store, "ann@example.com").await.user.id;
        let bob = insert_user(&store, "bob@example.com").await.user.id;
        let until = T0 + SECOND_FACTOR_LOCK;
        assert_eq!(
            store.second_factor_throttle(ann).await.unwrap(),
            SecondFactorThrottle::default()
        );

        for count in 1..limit {
            assert_eq!(record_failure(&store, ann, T0, until).await, Some(count));
            assert_eq!(
                store.second_factor_throttle(ann).await.unwrap(),
                SecondFactorThrottle {
                    failures: count,
                    locked_until: None
                }
            );
        }
        // The failure that reaches the limit sets the lock in the same statement.
        assert_eq!(record_failure(&store, ann, T0, until).await, Some(limit));
        let locked = SecondFactorThrottle {
            failures: limit,
            locked_until: Some(until),
        };
        assert_eq!(store.second_factor_throttle(ann).await.unwrap(), locked);

        // While locked nothing is counted and the lock is not extended.
        let later_lock = until + Duration::hours(1);
        assert_eq!(record_failure(&store, ann, T0, later_lock).await, None);
        assert_eq!(
            record_failure(&store, ann, until - Duration::seconds(1), later_lock).await,
            None
        );
        assert_eq!(store.second_factor_throttle(ann).await.unwrap(), locked);
        // Other users are not affected.
        assert_eq!(record_failure(&store, bob, T0, until).await, Some(1));

        // Once the lock has ended, a new count starts, without a lock.
        let next_until = until + SECOND_FACTOR_LOCK;
        assert_eq!(
            record_failure(&store, ann, until, next_until).await,
            Some(1)
        );
        assert_eq!(
            store.second_factor_throttle(ann).await.unwrap(),
            SecondFactorThrottle {
                failures: 1,
                locked_until: None
            }
        );
        assert_eq!(
            record_failure(&store, ann, until, next_until).await,
            Some(2)
        );

        // Clearing an unlocked count reports no lock and removes the row.
        assert_eq!(clear_failures(&store, ann).await, None);
        assert_eq!(
            store.second_factor_throttle(ann).await.unwrap(),
            SecondFactorThrottle::default()
        );
        assert_eq!(clear_failures(&store, ann).await, None);

        // Clearing a running lock reports it; a caller that rolls back keeps the lock.
        for _ in 0..limit {
            record_failure(&store, ann, until, next_until)
                .await
                .unwrap();
        }
        let mut tx = store.begin().await.unwrap();
        assert_eq!(
            tx.clear_second_factor_failures(ann).await.unwrap(),
            Some(next_until)
        );
        drop(tx);
        assert_eq!(
            store.second_factor_throttle(ann).await.unwrap(),
            SecondFactorThrottle {
                failures: limit,
                locked_until: Some(next_until)
            }
        );
        assert_eq!(clear_failures(&store, ann).await, Some(next_until));
        assert_eq!(
            store.second_factor_throttle(ann).await.unwrap(),
            SecondFactorThrottle::default()
        );
        assert_eq!(
            record_failure(&store, ann, until, next_until).await,
            Some(1)
        );
        assert_eq!(store.second_factor_throttle(bob).await.unwrap().failures, 1);

        // A limit of one locks on the first failure (the insert branch of the upsert).
        let carol = insert_user(&store, "carol@example.com").await.user.id;
        let mut tx = store.begin().await.unwrap();
        assert_eq!(
            tx.record_second_factor_failure(carol, T0, 1, until)
                .await
                .unwrap(),
            Some(1)
        );
        assert_eq!(
            tx.record_second_factor_failure(carol, T0, 1, until)
                .await
                .unwrap(),
            None
        );
        tx.commit().await.unwrap();
        assert_eq!(
            store.second_factor_throttle(carol).await.unwrap(),
            SecondFactorThrottle {
                failures: 1,
                locked_until: Some(until)
            }
        );
    }

    pub async fn concurrent_second_factor_failures_stop_at_the_limit(store: SqlStore) {
        const CALLERS: usize = 50;
        let limit = MAX_FAILED_SECOND_FACTOR_ATTEMPTS;
        let ann = insert_user(&store, "ann@example.com").await.user.id;
        let until = T0 + SECOND_FACTOR_LOCK;
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..CALLERS {
            let store = store.clone();
            tasks.spawn(async move { record_failure(&store, ann, T0, until).await });
        }
        let outcomes = tasks.join_all().await;
        let counts: BTreeSet<u32> = outcomes.iter().flatten().copied().collect();
        assert_eq!(counts, (1..=limit).collect::<BTreeSet<_>>());
        assert_eq!(outcomes.iter().flatten().count(), limit as usize);
        assert_eq!(
            outcomes.iter().filter(|o| o.is_none()).count(),
            CALLERS - limit as usize
        );
        assert_eq!(
            store.second_factor_throttle(ann).await.unwrap(),
            SecondFactorThrottle {
                failures: limit,
                locked_until: Some(until)
            }
        );
    }

    pub async fn sessions_record_their_second_factor(store: SqlStore) {
        let ann = insert_user(&store, "ann@example.com").await.user.id;
        let mut by_code = new_session(ann, T0);
        by_code.mfa_method = Some(MfaMethod::BackupCode);
        by_code.amr = MfaMethod::BackupCode.amr_with_password();
        let mut password_only = new_session(ann, T0);
        password_only.mfa_method = None;
        password_only.amr = vec!["pwd".into()];
        insert_sessions(&store, &[&by_code, &password_only]).await;
        for session in [&by_code, &password_only] {
            assert_eq!(
                store
                    .session_by_token_hash(&session.token_hash)
                    .await
                    .unwrap(),
                Some(session.clone())
            );
        }

        let amr = MfaMethod::Totp.amr_with_password();
        let mut tx = store.begin().await.unwrap();
        tx.set_session_mfa(password_only.id, MfaMethod::Totp, &amr)
            .await
            .unwrap();
        tx.set_session_mfa(by_code.id, MfaMethod::Totp, &["pwd".into(), "otp".into()])
            .await
            .unwrap();
        // An unknown session is not an error.
        tx.set_session_mfa(SessionId::new(), MfaMethod::Totp, &amr)
            .await
            .unwrap();
        tx.commit().await.unwrap();

        let mut expected = password_only.clone();
        expected.mfa_method = Some(MfaMethod::Totp);
        expected.amr = amr;
        assert_eq!(
            store
                .session_by_token_hash(&password_only.token_hash)
                .await
                .unwrap(),
            Some(expected)
        );
        let mut expected = by_code.clone();
        expected.mfa_method = Some(MfaMethod::Totp);
        expected.amr = vec!["pwd".into(), "otp".into()];
        assert_eq!(
            store
                .session_by_token_hash(&by_code.token_hash)
                .await
                .unwrap(),
            Some(expected)
        );
    }

    async fn reseal(
        store: &SqlStore,
        owner: SecretOwner,
        previous: &[u8],
        sealed: &[u8],
        key_id: u32,
    ) -> bool {
        let mut tx = store.begin().await.unwrap();
        let done = tx
            .reseal_secret(owner, previous, sealed, key_id)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        done
    }

    pub async fn secrets_under_an_old_key_are_resealed(store: SqlStore) {
        let ann = insert_user(&store, "ann@example.com").await.user.id;
        let bob = insert_user(&store, "bob@example.com").await.user.id;
        let old_factor = totp_factor(ann, T0, 1);
        let mut new_factor = totp_factor(ann, T0, 2);
        new_factor.key_id = Some(2);
        let no_secret = Factor {
            id: FactorId::new(),
            user_id: ann,
            kind: FactorKind::Webauthn,
            label: "Security key".into(),
            secret_sealed: None,
            key_id: None,
            last_step: None,
            preferred: false,
            created_at: T0,
            last_used_at: None,
            destination: None,
        };
        insert_factors(&store, &[&old_factor, &new_factor, &no_secret]).await;
        let old_enrollment = enrollment(bob, T0, 3);
        let mut new_enrollment = enrollment(ann, T0, 4);
        new_enrollment.key_id = 2;
        insert_enrollments(&store, &[&old_enrollment, &new_enrollment]).await;

        let factor_owner = SecretOwner::Factor(old_factor.id);
        let enrollment_owner = SecretOwner::Enrollment {
            id: old_enrollment.id,
            factor_id: old_enrollment.factor_id,
        };
        assert_eq!(store.count_secrets_not_under_key(2).await.unwrap(), 2);
        let listed = store.secrets_not_under_key(2, 10).await.unwrap();
        assert_eq!(listed.len(), 2, "{listed:?}");
        let find = |owner: SecretOwner| {
            let secret = listed
                .iter()
                .find(|s| s.owner == owner)
                .unwrap_or_else(|| panic!("{owner:?} not listed in {listed:?}"));
            (secret.user_id, secret.sealed.clone())
        };
        assert_eq!(find(factor_owner), (ann, sealed(1)));
        assert_eq!(find(enrollment_owner), (bob, sealed(3)));
        assert_eq!(store.secrets_not_under_key(2, 1).await.unwrap().len(), 1);
        // The other way round, and a key nothing is under.
        assert_eq!(store.count_secrets_not_under_key(1).await.unwrap(), 2);
        let under_two: Vec<SecretOwner> = store
            .secrets_not_under_key(1, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.owner)
            .collect();
        assert_eq!(under_two.len(), 2);
        assert!(under_two.contains(&SecretOwner::Factor(new_factor.id)));
        assert!(under_two.contains(&SecretOwner::Enrollment {
            id: new_enrollment.id,
            factor_id: new_enrollment.factor_id
        }));
        assert_eq!(store.count_secrets_not_under_key(3).await.unwrap(), 4);

        // Only a caller that saw the stored value may replace it.
        let resealed = sealed(11);
        assert!(!reseal(&store, factor_owner, &sealed(9), &resealed, 2).await);
        assert!(!reseal(&store, factor_owner, &[], &resealed, 2).await);
        assert_eq!(store.count_secrets_not_under_key(2).await.unwrap(), 2);
        assert!(reseal(&store, factor_owner, &sealed(1), &resealed, 2).await);
        // The old value no longer matches.
        assert!(!reseal(&store, factor_owner, &sealed(1), &sealed(12), 2).await);
        let stored = store.factors_of(ann).await.unwrap();
        let stored = stored.iter().find(|f| f.id == old_factor.id).unwrap();
        assert_eq!(
            (stored.secret_sealed.as_deref(), stored.key_id),
            (Some(&resealed[..]), Some(2))
        );

        let resealed_enrollment = sealed(13);
        assert!(
            !reseal(
                &store,
                enrollment_owner,
                &sealed(4),
                &resealed_enrollment,
                2
            )
            .await
        );
        assert!(
            reseal(
                &store,
                enrollment_owner,
                &sealed(3),
                &resealed_enrollment,
                2
            )
            .await
        );
        let stored = store
            .totp_enrollment(bob, old_enrollment.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (stored.secret_sealed, stored.key_id),
            (resealed_enrollment, 2)
        );

        assert_eq!(store.count_secrets_not_under_key(2).await.unwrap(), 0);
        assert!(store.secrets_not_under_key(2, 10).await.unwrap().is_empty());
        // Nothing else changed.
        assert_eq!(
            store.totp_enrollment(ann, new_enrollment.id).await.unwrap(),
            Some(new_enrollment)
        );
    }

    fn passed_step(
        challenge: &Challenge,
        factor: &Factor,
        step: u64,
        now: OffsetDateTime,
    ) -> PassedTotpStep {
        let session = new_session(challenge.user_id, now);
        PassedTotpStep {
            challenge_id: challenge.id,
            factor_id: factor.id,
            step,
            event: NewEvent {
                user_id: challenge.user_id,
                kind: EventKind::SigninSucceeded,
                at: now,
                client: ClientInfo::default(),
                actor_id: None,
                details: json!({ "session_id": session.id.to_string() }),
            },
            session,
            now,
        }
    }

    async fn commit_step(store: &SqlStore, step: &PassedTotpStep) -> TotpStepOutcome {
        store.commit_totp_second_step(step).await.unwrap()
    }

    /// Whether the step's session exists, and how many sign-in events its user has.
    async fn step_written(store: &SqlStore, step: &PassedTotpStep) -> (bool, usize) {
        let session = store
            .session_by_token_hash(&step.session.token_hash)
            .await
            .unwrap();
        let events = store
            .events_of(step.session.user_id, None, 100)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == EventKind::SigninSucceeded.as_str())
            .count();
        (session.is_some(), events)
    }

    pub async fn second_step_context_reads_challenge_user_throttle_and_factors(store: SqlStore) {
        let ann = insert_user(&store, "ann@example.com").await.user;
        let bob = insert_user(&store, "bob@example.com").await.user.id;
        let first = totp_factor(ann.id, T0, 1);
        let second = totp_factor(ann.id, T0 + Duration::minutes(1), 2);
        let bobs = totp_factor(bob, T0, 3);
        insert_factors(&store, &[&second, &bobs, &first]).await;
        let open = challenge(ann.id, T0);
        insert_challenges(&store, &[&open]).await;

        let unknown = Token::generate().unwrap().hash();
        assert!(store.second_step_context(&unknown).await.unwrap().is_none());

        let context = store
            .second_step_context(&open.token_hash)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(context.challenge, open);
        assert_eq!(context.user, ann);
        assert_eq!(context.throttle, SecondFactorThrottle::default());
        let ids: Vec<FactorId> = context.factors.iter().map(|f| f.id).collect();
        assert_eq!(ids, [first.id, second.id], "only ann's, oldest first");
        assert_eq!(context.factors[0].secret_sealed, first.secret_sealed);

        // The throttle is read with it, and a completed challenge is still returned as such.
        record_failure(&store, ann.id, T0, T0 + SECOND_FACTOR_LOCK).await;
        let mut tx = store.begin().await.unwrap();
        assert!(tx.complete_challenge(open.id, T0).await.unwrap());
        tx.commit().await.unwrap();
        let context = store
            .second_step_context(&open.token_hash)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(context.throttle.failures, 1);
        assert_eq!(context.challenge.completed_at, Some(T0));
    }

    pub async fn passed_totp_steps_commit_all_or_nothing(store: SqlStore) {
        let ann = insert_user(&store, "ann@example.com").await.user.id;
        let mut factor = totp_factor(ann, T0, 1);
        factor.last_step = Some(100);
        insert_factors(&store, &[&factor]).await;
        let now = T0 + Duration::minutes(1);
        let last_step = async || store.factors_of(ann).await.unwrap()[0].last_step;
        let is_open = async |c: &Challenge| {
            let stored = store.challenge_by_token_hash(&c.token_hash).await.unwrap();
            stored.unwrap().completed_at.is_none()
        };

        // A replayed (or older) step: nothing is written, the challenge stays open.
        let replay_challenge = challenge(ann, T0);
        insert_challenges(&store, &[&replay_challenge]).await;
        let replay = passed_step(&replay_challenge, &factor, 100, now);
        assert_eq!(
            commit_step(&store, &replay).await,
            TotpStepOutcome::Replayed
        );
        assert_eq!(step_written(&store, &replay).await, (false, 0));
        assert!(is_open(&replay_challenge).await);

        // A locked second step: nothing is written and the lock stays.
        let until = now + SECOND_FACTOR_LOCK;
        for _ in 0..MAX_FAILED_SECOND_FACTOR_ATTEMPTS {
            record_failure(&store, ann, now, until).await;
        }
        let locked = passed_step(&replay_challenge, &factor, 101, now);
        assert_eq!(
            commit_step(&store, &locked).await,
            TotpStepOutcome::Locked { until }
        );
        assert_eq!(step_written(&store, &locked).await, (false, 0));
        assert_eq!(last_step().await, Some(100));
        assert_eq!(
            store
                .second_factor_throttle(ann)
                .await
                .unwrap()
                .locked_until,
            Some(until)
        );

        // After the lock: the step, the challenge, the session and the event, and the count is
        // cleared.
        let later = until + Duration::seconds(1);
        let signin_challenge = challenge(ann, until);
        insert_challenges(&store, &[&signin_challenge]).await;
        let passed = passed_step(&signin_challenge, &factor, 101, later);
        assert_eq!(
            commit_step(&store, &passed).await,
            TotpStepOutcome::Committed
        );
        assert_eq!(step_written(&store, &passed).await, (true, 1));
        assert_eq!(last_step().await, Some(101));
        assert!(!is_open(&signin_challenge).await);
        assert_eq!(
            store.second_factor_throttle(ann).await.unwrap(),
            SecondFactorThrottle::default()
        );

        // A completed or expired challenge: the step does not advance.
        let again = passed_step(&signin_challenge, &factor, 102, later);
        assert_eq!(
            commit_step(&store, &again).await,
            TotpStepOutcome::ChallengeClosed
        );
        let expired_challenge = challenge(ann, T0);
        insert_challenges(&store, &[&expired_challenge]).await;
        let expired = passed_step(&expired_challenge, &factor, 102, T0 + CHALLENGE_TTL);
        assert_eq!(
            commit_step(&store, &expired).await,
            TotpStepOutcome::ChallengeClosed
        );
        assert_eq!(last_step().await, Some(101));
        assert_eq!(step_written(&store, &again).await, (false, 1));
        assert_eq!(step_written(&store, &expired).await, (false, 1));

        // A session that cannot be inserted (its token hash is taken) undoes the whole step.
        let fresh_challenge = challenge(ann, later);
        insert_challenges(&store, &[&fresh_challenge]).await;
        let mut clash = passed_step(&fresh_challenge, &factor, 103, later);
        clash.session.token_hash = passed.session.token_hash;
        assert!(matches!(
            store.commit_totp_second_step(&clash).await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(last_step().await, Some(101));
        assert!(is_open(&fresh_challenge).await);
    }

    pub async fn concurrent_passed_steps_commit_together_and_accept_one_per_time_step(
        store: SqlStore,
    ) {
        const USERS: usize = 40;
        const REPLAYS: usize = 20;
        let mut steps = Vec::new();
        for n in 0..USERS {
            let user = insert_user(&store, &format!("user{n}@example.com"))
                .await
                .user
                .id;
            let factor = totp_factor(user, T0, 1);
            insert_factors(&store, &[&factor]).await;
            let open = challenge(user, T0);
            insert_challenges(&store, &[&open]).await;
            steps.push(passed_step(&open, &factor, 7, T0));
        }
        // One more user signs in from REPLAYS challenges with the same code at once.
        let ann = insert_user(&store, "ann@example.com").await.user.id;
        let factor = totp_factor(ann, T0, 1);
        insert_factors(&store, &[&factor]).await;
        for _ in 0..REPLAYS {
            let open = challenge(ann, T0);
            insert_challenges(&store, &[&open]).await;
            steps.push(passed_step(&open, &factor, 7, T0));
        }

        let mut tasks = tokio::task::JoinSet::new();
        for step in steps.clone() {
            let store = store.clone();
            tasks.spawn(async move { (step.session.user_id, commit_step(&store, &step).await) });
        }
        let outcomes = tasks.join_all().await;
        let anns: Vec<TotpStepOutcome> = outcomes
            .iter()
            .filter(|(user, _)| *user == ann)
            .map(|(_, outcome)| *outcome)
            .collect();
        let others = outcomes.iter().filter(|(user, _)| *user != ann);
        assert!(
            others
                .clone()
                .all(|(_, o)| *o == TotpStepOutcome::Committed)
        );
        assert_eq!(others.count(), USERS);
        let committed = anns
            .iter()
            .filter(|o| **o == TotpStepOutcome::Committed)
            .count();
        assert_eq!(committed, 1, "{anns:?}");
        assert!(
            anns.iter()
                .all(|o| matches!(o, TotpStepOutcome::Committed | TotpStepOutcome::Replayed))
        );
        let mut sessions = 0;
        for step in &steps {
            sessions += usize::from(step_written(&store, step).await.0);
        }
        assert_eq!(sessions, USERS + 1);
        assert_eq!(store.sessions_of(ann, T0).await.unwrap().len(), 1);
    }

    fn new_code(user_id: UserId, target: &str, purpose: CodePurpose, byte: u8) -> NewCode {
        NewCode {
            user_id,
            target: target.to_owned(),
            purpose,
            hash: [byte; 32],
            created_at: T0,
        }
    }

    async fn put_codes(store: &SqlStore, codes: &[NewCode]) {
        let mut tx = store.begin().await.unwrap();
        for code in codes {
            tx.put_code(code).await.unwrap();
        }
        tx.commit().await.unwrap();
    }

    async fn use_code(
        store: &SqlStore,
        user: UserId,
        purpose: CodePurpose,
        byte: u8,
        now: OffsetDateTime,
    ) -> bool {
        let mut tx = store.begin().await.unwrap();
        let used = tx
            .use_code(user, "factor-1", purpose, &[byte; 32], now)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        used
    }

    async fn wrong_try(store: &SqlStore, user: UserId, now: OffsetDateTime) -> Option<u32> {
        let mut tx = store.begin().await.unwrap();
        let tries = tx
            .count_wrong_code_try(user, "factor-1", CodePurpose::Signin, now)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        tries
    }

    pub async fn one_time_codes_are_replaced_used_once_and_voided_by_three_wrong_tries(
        store: SqlStore,
    ) {
        let ann = insert_user(&store, "ann@example.com").await.user.id;
        let bob = insert_user(&store, "bob@example.com").await.user.id;
        let signin = CodePurpose::Signin;
        put_codes(&store, &[new_code(ann, "factor-1", signin, 1)]).await;
        let stored = store
            .code_for(ann, "factor-1", signin)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (stored.hash, stored.tries, stored.used_at),
            ([1; 32], 0, None)
        );
        assert_eq!(stored.expires_at(), T0 + CODE_TTL);
        // Bound to its user and purpose.
        assert!(
            store
                .code_for(bob, "factor-1", signin)
                .await
                .unwrap()
                .is_none()
        );
        assert!(!use_code(&store, bob, signin, 1, T0).await);
        assert!(!use_code(&store, ann, CodePurpose::Reauth, 1, T0).await);

        // A new code voids the earlier one.
        put_codes(&store, &[new_code(ann, "factor-1", signin, 2)]).await;
        assert!(!use_code(&store, ann, signin, 1, T0).await);
        // Expired at exactly ten minutes.
        assert!(!use_code(&store, ann, signin, 2, T0 + CODE_TTL).await);
        assert!(use_code(&store, ann, signin, 2, T0 + CODE_TTL - Duration::seconds(1)).await);
        assert!(!use_code(&store, ann, signin, 2, T0).await, "used twice");
        assert_eq!(
            wrong_try(&store, ann, T0).await,
            None,
            "a used code counts no tries"
        );

        // Three wrong tries void the code: the right one is refused after them.
        put_codes(&store, &[new_code(ann, "factor-1", signin, 3)]).await;
        for expected in 1..=MAX_CODE_TRIES {
            assert_eq!(wrong_try(&store, ann, T0).await, Some(expected));
        }
        assert_eq!(wrong_try(&store, ann, T0).await, None);
        assert!(!use_code(&store, ann, signin, 3, T0).await);
        let stored = store
            .code_for(ann, "factor-1", signin)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.tries, MAX_CODE_TRIES);
        // Sending again starts afresh.
        put_codes(&store, &[new_code(ann, "factor-1", signin, 4)]).await;
        assert!(use_code(&store, ann, signin, 4, T0).await);
    }

    pub async fn concurrent_uses_of_one_code_accept_exactly_one(store: SqlStore) {
        let ann = insert_user(&store, "ann@example.com").await.user.id;
        put_codes(&store, &[new_code(ann, "factor-1", CodePurpose::Signin, 9)]).await;
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..30 {
            let store = store.clone();
            tasks.spawn(async move { use_code(&store, ann, CodePurpose::Signin, 9, T0).await });
        }
        let used = tasks.join_all().await.into_iter().filter(|u| *u).count();
        assert_eq!(used, 1);
    }

    pub async fn send_counts_cover_the_target_the_account_hour_and_the_destination_day(
        store: SqlStore,
    ) {
        let ann = insert_user(&store, "ann@example.com").await.user.id;
        let bob = insert_user(&store, "bob@example.com").await.user.id;
        let phone = [5u8; 32];
        let sends = [
            (ann, "factor-1", T0 - Duration::hours(30)), // older than a day: not counted
            (bob, "factor-9", T0 - Duration::hours(20)), // another account, same number
            (ann, "factor-1", T0 - Duration::minutes(90)),
            (ann, "factor-2", T0 - Duration::minutes(40)),
            (ann, "factor-1", T0 - Duration::seconds(10)),
        ];
        let mut tx = store.begin().await.unwrap();
        for (user_id, target, sent_at) in sends {
            tx.record_code_send(&CodeSend {
                user_id,
                target: target.into(),
                destination_hash: phone,
                sent_at,
            })
            .await
            .unwrap();
        }
        tx.commit().await.unwrap();
        let mut tx = store.begin().await.unwrap();
        tx.lock_user_mfa(ann).await.unwrap();
        let counts = tx.send_counts(ann, "factor-1", &phone, T0).await.unwrap();
        assert_eq!(counts.last_to_target, Some(T0 - Duration::seconds(10)));
        assert_eq!(counts.account_last_hour, 2);
        assert_eq!(counts.account_oldest, Some(T0 - Duration::minutes(40)));
        assert_eq!(counts.destination_last_day, 4);
        assert_eq!(counts.destination_oldest, Some(T0 - Duration::hours(20)));
        let quiet = tx.send_counts(bob, "factor-3", &[6; 32], T0).await.unwrap();
        assert_eq!(
            (
                quiet.last_to_target,
                quiet.account_last_hour,
                quiet.destination_last_day
            ),
            (None, 0, 0)
        );
        tx.commit().await.unwrap();
    }

    pub async fn contact_factors_keep_their_destination_and_enrollments_are_taken_once(
        store: SqlStore,
    ) {
        let ann = insert_user(&store, "ann@example.com").await.user.id;
        let bob = insert_user(&store, "bob@example.com").await.user.id;
        let enrollment = ContactEnrollment {
            id: EnrollmentId::new(),
            user_id: ann,
            factor_id: FactorId::new(),
            kind: FactorKind::Sms,
            destination: "+14155552671".into(),
            created_at: T0,
            expires_at: T0 + ENROLLMENT_TTL,
        };
        let mut tx = store.begin().await.unwrap();
        tx.insert_contact_enrollment(&enrollment).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(
            store.contact_enrollment(ann, enrollment.id).await.unwrap(),
            Some(enrollment.clone())
        );
        assert_eq!(
            store.contact_enrollment(bob, enrollment.id).await.unwrap(),
            None
        );

        let mut tx = store.begin().await.unwrap();
        let at_end = T0 + ENROLLMENT_TTL;
        assert!(
            tx.open_contact_enrollment(ann, enrollment.id, at_end)
                .await
                .unwrap()
                .is_none(),
            "expired at its end"
        );
        assert!(
            tx.take_contact_enrollment(bob, enrollment.id, T0)
                .await
                .unwrap()
                .is_none(),
            "not bob's"
        );
        let taken = tx
            .take_contact_enrollment(ann, enrollment.id, T0)
            .await
            .unwrap();
        assert_eq!(taken, Some(enrollment.clone()));
        assert!(
            tx.take_contact_enrollment(ann, enrollment.id, T0)
                .await
                .unwrap()
                .is_none(),
            "taken once"
        );
        let mut phone = totp_factor(ann, T0, 1);
        phone.id = enrollment.factor_id;
        phone.kind = FactorKind::Sms;
        phone.secret_sealed = None;
        phone.key_id = None;
        phone.destination = Some(enrollment.destination.clone());
        tx.insert_factor(&phone).await.unwrap();
        tx.mark_factor_used(phone.id, T0 + Duration::minutes(3))
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let stored = store.factors_of(ann).await.unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].destination.as_deref(), Some("+14155552671"));
        assert_eq!(stored[0].last_used_at, Some(T0 + Duration::minutes(3)));
        assert_eq!(
            stored[0].masked_destination().as_deref(),
            Some("+1 ••• ••• 2671")
        );
    }

    pub async fn exactly_one_factor_is_preferred_and_labels_are_scoped(store: SqlStore) {
        let ann = insert_user(&store, "ann@example.com").await.user.id;
        let bob = insert_user(&store, "bob@example.com").await.user.id;
        let mut first = totp_factor(ann, T0, 1);
        first.preferred = true;
        let second = totp_factor(ann, T0 + Duration::minutes(1), 2);
        let third = totp_factor(ann, T0 + Duration::minutes(2), 3);
        let bobs = totp_factor(bob, T0, 4);
        insert_factors(&store, &[&first, &second, &third, &bobs]).await;

        let mut tx = store.begin().await.unwrap();
        assert!(tx.set_preferred_factor(ann, third.id).await.unwrap());
        assert!(
            !tx.set_preferred_factor(ann, bobs.id).await.unwrap(),
            "another user's factor changes nothing"
        );
        assert!(tx.set_factor_label(ann, second.id, "Tablet").await.unwrap());
        assert!(!tx.set_factor_label(ann, bobs.id, "Mine now").await.unwrap());
        tx.commit().await.unwrap();
        assert_eq!(preferred_labels(&store, ann).await, vec!["Phone 3"]);
        assert_eq!(preferred_labels(&store, bob).await, Vec::<String>::new());
        let labels: Vec<String> = store
            .factors_of(ann)
            .await
            .unwrap()
            .into_iter()
            .map(|f| f.label)
            .collect();
        assert_eq!(labels, vec!["Phone 1", "Tablet", "Phone 3"]);
        assert_eq!(store.factors_of(bob).await.unwrap()[0].label, "Phone 4");

        // Removing the preferred one promotes the oldest remaining.
        let mut tx = store.begin().await.unwrap();
        assert!(tx.delete_factor(ann, third.id).await.unwrap());
        tx.ensure_preferred_factor(ann).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(preferred_labels(&store, ann).await, vec!["Phone 1"]);
    }

    pub async fn delivery_is_failing_while_a_recent_message_is_unsent_after_an_error(
        store: SqlStore,
    ) {
        let since = T0 - Duration::minutes(15);
        let sms = |created_at| NewOutboxMessage {
            channel: Channel::Sms,
            recipient: "+14155552671".into(),
            notification: Notification::AccountCreated {
                email: "unused@example.com".into(),
            },
            created_at,
        };
        enqueue(&store, &[sms(T0), message("ann@example.com", T0)]).await;
        assert!(!store.delivery_failing(Channel::Sms, since).await.unwrap());
        let lease = Duration::minutes(2);
        let claimed = store
            .claim_outbox_message(T0, T0 + lease)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(claimed.channel, Channel::Sms);
        store
            .mark_outbox_retry(claimed.id, T0 + Duration::minutes(1), "connection refused")
            .await
            .unwrap();
        assert!(store.delivery_failing(Channel::Sms, since).await.unwrap());
        assert!(!store.delivery_failing(Channel::Email, since).await.unwrap());
        // Only recent messages count, and a message sent after its error no longer does.
        let later = T0 + Duration::minutes(30);
        assert!(
            !store
                .delivery_failing(Channel::Sms, later - Duration::minutes(15))
                .await
                .unwrap()
        );
        store.mark_outbox_sent(claimed.id, T0).await.unwrap();
        assert!(!store.delivery_failing(Channel::Sms, since).await.unwrap());
    }

    pub async fn organizations_keep_members_roles_policy_events_and_requirements(store: SqlStore) {
        use tessera_core::factor::AllowedMethods;
        use tessera_core::ids::OrgId;
        use tessera_core::org::{OrgPolicy, Organization, PolicyScope, Role};

        let ann = insert_user(&store, "ann@example.com").await.user.id;
        let bob = insert_user(&store, "bob@example.com").await.user.id;
        let org = Organization {
            id: OrgId::new(),
            name: "Acme".into(),
            created_at: T0,
            policy: OrgPolicy::default(),
        };
        let mut tx = store.begin().await.unwrap();
        tx.insert_org(&org).await.unwrap();
        tx.insert_member(org.id, ann, Role::Owner, T0)
            .await
            .unwrap();
        tx.insert_member(org.id, bob, Role::Member, T0)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        // (A failed statement ends a PostgreSQL transaction: the conflict gets its own.)
        let mut tx = store.begin().await.unwrap();
        assert!(matches!(
            tx.insert_member(org.id, bob, Role::Admin, T0).await,
            Err(StoreError::Conflict(_))
        ));
        drop(tx);
        assert_eq!(store.org(org.id).await.unwrap(), Some(org.clone()));
        assert_eq!(store.org(OrgId::new()).await.unwrap(), None);
        let orgs = store.orgs_of_user(bob).await.unwrap();
        assert_eq!(orgs, vec![(org.clone(), Role::Member)]);

        let policy = OrgPolicy {
            mfa_required: true,
            roles: vec![Role::Admin, Role::Member],
            scope: PolicyScope::Console,
            grace_period_hours: 0,
            allowed_methods: AllowedMethods::of(&[FactorKind::Totp, FactorKind::Webauthn]).unwrap(),
            allow_disable: false,
            app_mfa_max_age_seconds: Some(0),
        };
        let mut tx = store.begin().await.unwrap();
        assert!(tx.lock_org(org.id).await.unwrap());
        assert!(!tx.lock_org(OrgId::new()).await.unwrap());
        tx.set_org_policy(org.id, &policy, T0).await.unwrap();
        assert!(tx.set_member_role(org.id, bob, Role::Admin).await.unwrap());
        assert_eq!(
            tx.member_role(org.id, bob).await.unwrap(),
            Some(Role::Admin)
        );
        assert_eq!(
            tx.count_members_with_role(org.id, Role::Owner)
                .await
                .unwrap(),
            1
        );
        let event = NewEvent {
            user_id: ann,
            kind: EventKind::MfaEnabled,
            at: T0,
            client: ClientInfo::default(),
            actor_id: None,
            details: json!({"org": "policy"}),
        };
        tx.insert_org_event(org.id, &event).await.unwrap();
        tx.insert_event(&event).await.unwrap();
        tx.record_mfa_requirement(bob, &org.id.to_string(), T0)
            .await
            .unwrap();
        tx.record_mfa_requirement(bob, &org.id.to_string(), T0 + Duration::hours(1))
            .await
            .unwrap();
        tx.record_mfa_requirement(bob, "instance", T0)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(store.org(org.id).await.unwrap().unwrap().policy, policy);
        let members = store.org_members(org.id).await.unwrap();
        let listed: Vec<(String, Role)> = members
            .iter()
            .map(|m| (m.user.email.to_string(), m.role))
            .collect();
        assert_eq!(
            listed,
            vec![
                ("ann@example.com".to_owned(), Role::Owner),
                ("bob@example.com".to_owned(), Role::Admin)
            ]
        );
        assert_eq!(store.org_events(org.id, None, 10).await.unwrap().len(), 1);
        assert_eq!(store.events_of(ann, None, 10).await.unwrap().len(), 2);
        let mut requirements = store.mfa_requirements(bob).await.unwrap();
        requirements.sort();
        let mut expected = vec![("instance".to_owned(), T0), (org.id.to_string(), T0)];
        expected.sort();
        assert_eq!(requirements, expected, "the first start is kept");

        let mut tx = store.begin().await.unwrap();
        tx.clear_mfa_requirements(bob, &["instance".to_owned()])
            .await
            .unwrap();
        assert!(tx.delete_member(org.id, bob).await.unwrap());
        assert!(!tx.delete_member(org.id, bob).await.unwrap());
        tx.commit().await.unwrap();
        assert_eq!(
            store.mfa_requirements(bob).await.unwrap(),
            vec![("instance".to_owned(), T0)]
        );
        assert!(store.orgs_of_user(bob).await.unwrap().is_empty());
    }
}

#[test]
fn migration_file_lists_are_identical() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
    let list = |backend: &str| {
        let mut names: Vec<String> = std::fs::read_dir(root.join(backend))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let sqlite = list("sqlite");
    assert!(!sqlite.is_empty());
    assert_eq!(sqlite, list("postgres"));
}

#[tokio::test]
async fn sqlite_file_store_runs_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tessera.db");
    let store = SqlStore::connect(&sqlite_url(&path)).await.unwrap();
    assert_eq!(store.backend(), tessera_store::Backend::Sqlite);
    store.migrate().await.unwrap();
    assert!(path.exists());
    assert!(
        dir.path().join("tessera.db-wal").exists(),
        "no WAL file next to the database"
    );
    store.close().await;
}

#[tokio::test]
async fn sqlite_in_memory_store_reads_its_writes() {
    use tessera_core::store::Store;
    let store = SqlStore::connect("sqlite::memory:").await.unwrap();
    store.migrate().await.unwrap();
    let user = tessera_core::user::User {
        id: tessera_core::ids::UserId::new(),
        email: tessera_core::email::Email::parse("ann@example.com").unwrap(),
        display_name: "Ann".into(),
        created_at: time::macros::datetime!(2026-01-01 00:00 UTC),
    };
    let mut tx = store.begin().await.unwrap();
    tx.insert_user(&tessera_core::store::NewUser {
        user: user.clone(),
        password_hash: "h".into(),
    })
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.user_by_id(user.id).await.unwrap(), Some(user));
}

#[tokio::test]
async fn bad_urls_and_unreachable_servers_are_reported() {
    use tessera_core::store::StoreError;
    let unsupported = SqlStore::connect("mysql://root@localhost/tessera")
        .await
        .unwrap_err();
    assert!(
        matches!(unsupported, StoreError::Other(_)),
        "{unsupported:?}"
    );

    let missing = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", missing.path().join("absent.db").display());
    let error = SqlStore::connect(&url).await.unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");

    // Nothing listens on port 1: fail closed, as unavailable, without echoing the password.
    let error = SqlStore::connect("postgres://tessera:hunter2@127.0.0.1:1/tessera")
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    assert!(!error.to_string().contains("hunter2"));
}

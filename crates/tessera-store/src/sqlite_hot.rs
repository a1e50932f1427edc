//! The second step of sign-in on embedded SQLite: [`SqliteHotPath`].
//!
//! Why it exists: through sqlx, every SQLite statement is handed to the connection's own
//! thread and its answer handed back, two thread wake-ups per statement. A TOTP second step is
//! four reads and a six-statement transaction, so most of its CPU went to the kernel switching
//! threads, and the one writer connection committed one second step at a time (the benchmark's
//! `--breakdown` and `perf` showed both). Here the same SQL runs synchronously through
//! `rusqlite` on the same SQLite file:
//!
//! - **Reads** ([`SqliteHotPath::second_step_context`]) run on the calling thread on a pooled
//!   `query_only` connection, in one read transaction: a few indexed point reads, tens of
//!   microseconds, with nothing to wait for in WAL mode.
//! - **Writes** ([`SqliteHotPath::commit_totp_second_step`]) go to one thread of ours that owns a
//!   writer connection and commits every passed step waiting for it in one transaction (group
//!   commit), each in its own savepoint, so one step's refusal (replay, lock, closed challenge)
//!   undoes only its own statements. The callers' answers are sent after the `COMMIT`: a step is
//!   reported committed only once it is durable.
//!
//! The rules are the store's usual ones: every use-once decision is one conditional statement
//! (`UPDATE … WHERE last_step < $step`, `UPDATE … WHERE completed_at IS NULL`), and the thread's
//! `BEGIN IMMEDIATE` takes SQLite's write lock, which the sqlx writer connection (every other
//! change) respects too: the two never write at once, and each waits up to the busy timeout for
//! the other.
//!
//! Threats: the same as the rest of the store. A failed `COMMIT` answers every step of the group
//! with an error (none of them was written), never "committed".

use crate::error::map_sqlite_error;
use crate::rows::{
    ChallengeRow, FactorRow, UserRow, amr_json, count_to_u32, json_text, u64_to_i64,
};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, mpsc};
use std::time::Duration;
use tessera_core::clock::{from_unix_seconds, unix_seconds};
use tessera_core::crypto::TokenHash;
use tessera_core::factor::{Challenge, Factor, MfaMethod};
use tessera_core::store::{
    PassedTotpStep, SecondStepContext, StoreError, StoreResult, TotpStepOutcome,
};
use tessera_core::throttle::SecondFactorThrottle;
use tessera_core::user::User;
use tokio::sync::oneshot;

/// How many passed steps one group commit takes at most.
pub const MAX_GROUP_COMMIT: usize = 256;
/// Idle reader connections kept for the next read.
const IDLE_READERS: usize = 8;
/// How long a connection waits for a lock held by another connection or process.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// One passed step on its way to the writer thread, with where to send the outcome.
struct Job {
    step: PassedTotpStep,
    reply: oneshot::Sender<StoreResult<TotpStepOutcome>>,
}

/// Reads and group-committed writes of the second step, on one SQLite file.
pub(crate) struct SqliteHotPath {
    path: PathBuf,
    readers: Mutex<Vec<Connection>>,
    /// `None` once closed.
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
}

impl SqliteHotPath {
    /// Opens the writer connection and starts its thread. The file must exist and be migrated
    /// by the caller before the first call.
    pub(crate) fn open(path: &Path) -> StoreResult<Self> {
        let writer = open_connection(path, false)?;
        let (jobs, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name("tessera-sqlite-commit".into())
            .spawn(move || run_writer(&writer, &queue))
            .map_err(|error| {
                StoreError::Other(format!("cannot start the commit thread: {error}"))
            })?;
        Ok(Self {
            path: path.to_path_buf(),
            readers: Mutex::new(Vec::new()),
            jobs: Mutex::new(Some(jobs)),
        })
    }

    /// Stops the writer thread (after the steps already queued) and drops the idle readers;
    /// later calls fail with [`StoreError::Unavailable`].
    pub(crate) fn close(&self) {
        lock(&self.jobs).take();
        lock(&self.readers).clear();
    }

    /// See [`tessera_core::store::Store::second_step_context`].
    pub(crate) fn second_step_context(
        &self,
        token_hash: &TokenHash,
    ) -> StoreResult<Option<SecondStepContext>> {
        if lock(&self.jobs).is_none() {
            return Err(closed());
        }
        let conn = match lock(&self.readers).pop() {
            Some(conn) => conn,
            None => open_connection(&self.path, true)?,
        };
        let result = read_context(&conn, token_hash);
        if conn.is_autocommit() {
            let mut idle = lock(&self.readers);
            if idle.len() < IDLE_READERS {
                idle.push(conn);
            }
        }
        result
    }

    /// See [`tessera_core::store::Store::commit_totp_second_step`].
    pub(crate) async fn commit_totp_second_step(
        &self,
        step: &PassedTotpStep,
    ) -> StoreResult<TotpStepOutcome> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            step: step.clone(),
            reply,
        };
        lock(&self.jobs)
            .as_ref()
            .ok_or_else(closed)?
            .send(job)
            .map_err(|_| StoreError::Unavailable("the SQLite commit thread stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the SQLite commit thread stopped".into()))?
    }
}

fn closed() -> StoreError {
    StoreError::Unavailable("the store is closed".into())
}

/// A poisoned lock only means another thread panicked while holding it; the data (a queue
/// handle, idle connections) is still sound.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A connection to the existing file, with the store's pragmas (see `dialect.rs`); readers are
/// `query_only`.
fn open_connection(path: &Path, reader: bool) -> StoreResult<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(map_sqlite_error)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(map_sqlite_error)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(map_sqlite_error)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(map_sqlite_error)?;
    if reader {
        conn.pragma_update(None, "query_only", "ON")
            .map_err(map_sqlite_error)?;
    }
    Ok(conn)
}

/// The challenge, its user and throttle in one joined read, then the factors, in one read
/// transaction.
fn read_context(
    conn: &Connection,
    token_hash: &TokenHash,
) -> StoreResult<Option<SecondStepContext>> {
    let tx = conn.unchecked_transaction().map_err(map_sqlite_error)?;
    let row = tx
        .prepare_cached(
            "SELECT c.id, c.token_hash, c.user_id, c.purpose, c.created_at, c.expires_at, \
             c.completed_at, c.ip, c.user_agent, u.email, u.display_name, u.created_at, \
             t.failures, t.locked_until \
             FROM mfa_challenges c JOIN users u ON u.id = c.user_id \
             LEFT JOIN second_factor_throttle t ON t.user_id = c.user_id \
             WHERE c.token_hash = ?1",
        )
        .map_err(map_sqlite_error)?
        .query_row(params![&token_hash.0[..]], |row| {
            let challenge = ChallengeRow {
                id: row.get(0)?,
                token_hash: row.get(1)?,
                user_id: row.get(2)?,
                purpose: row.get(3)?,
                created_at: row.get(4)?,
                expires_at: row.get(5)?,
                completed_at: row.get(6)?,
                ip: row.get(7)?,
                user_agent: row.get(8)?,
            };
            let user = UserRow {
                id: challenge.user_id.clone(),
                email: row.get(9)?,
                display_name: row.get(10)?,
                created_at: row.get(11)?,
            };
            let failures: Option<i64> = row.get(12)?;
            let locked_until: Option<i64> = row.get(13)?;
            Ok((challenge, user, failures, locked_until))
        })
        .optional()
        .map_err(map_sqlite_error)?;
    let Some((challenge, user, failures, locked_until)) = row else {
        return Ok(None);
    };
    let challenge = Challenge::try_from(challenge)?;
    let user = User::try_from(user)?;
    let throttle = SecondFactorThrottle {
        failures: count_to_u32(failures.unwrap_or(0), "second_factor_throttle.failures")?,
        locked_until: locked_until.map(from_unix_seconds),
    };
    let factors = tx
        .prepare_cached(concat!(
            "SELECT ",
            crate::rows::factor_columns!(),
            " FROM factors WHERE user_id = ?1 ORDER BY created_at, id"
        ))
        .map_err(map_sqlite_error)?
        .query_map(params![user.id.to_string()], |row| {
            Ok(FactorRow {
                id: row.get(0)?,
                user_id: row.get(1)?,
                kind: row.get(2)?,
                label: row.get(3)?,
                secret_sealed: row.get(4)?,
                key_id: row.get(5)?,
                last_step: row.get(6)?,
                preferred: row.get(7)?,
                created_at: row.get(8)?,
                last_used_at: row.get(9)?,
                destination: row.get(10)?,
            })
        })
        .map_err(map_sqlite_error)?
        .map(|row| row.map_err(map_sqlite_error).and_then(Factor::try_from))
        .collect::<StoreResult<Vec<_>>>()?;
    tx.commit().map_err(map_sqlite_error)?;
    Ok(Some(SecondStepContext {
        challenge,
        user,
        throttle,
        factors,
    }))
}

/// The writer thread: waits for a step, takes every other step already queued (up to
/// [`MAX_GROUP_COMMIT`]), commits them together, answers each. Ends when the store is closed
/// or dropped.
fn run_writer(conn: &Connection, queue: &mpsc::Receiver<Job>) {
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP_COMMIT {
            match queue.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let outcomes = commit_group(conn, &group);
        for (job, outcome) in group.into_iter().zip(outcomes) {
            // The caller may have gone (its client hung up); the step stands either way, like
            // a transaction that committed just before the connection dropped.
            let _ = job.reply.send(outcome);
        }
    }
}

/// Commits `group` in one transaction: each step's outcome, or the same error for all when the
/// transaction itself fails (then nothing was written).
fn commit_group(conn: &Connection, group: &[Job]) -> Vec<StoreResult<TotpStepOutcome>> {
    match try_commit_group(conn, group) {
        Ok(outcomes) => outcomes,
        Err(error) => {
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            tracing::error!(steps = group.len(), %error, "group commit of second steps failed");
            group.iter().map(|_| Err(copy_error(&error))).collect()
        }
    }
}

fn try_commit_group(
    conn: &Connection,
    group: &[Job],
) -> StoreResult<Vec<StoreResult<TotpStepOutcome>>> {
    let run = |sql: &str| -> StoreResult<()> {
        conn.prepare_cached(sql)
            .and_then(|mut statement| statement.execute([]))
            .map(drop)
            .map_err(map_sqlite_error)
    };
    run("BEGIN IMMEDIATE")?;
    let mut outcomes = Vec::with_capacity(group.len());
    for job in group {
        run("SAVEPOINT second_step")?;
        let outcome = apply_step(conn, &job.step);
        if !matches!(outcome, Ok(TotpStepOutcome::Committed)) {
            run("ROLLBACK TO second_step")?;
        }
        run("RELEASE second_step")?;
        outcomes.push(outcome);
    }
    run("COMMIT")?;
    Ok(outcomes)
}

/// One step's statements, in the order [`tessera_core::store::Store::commit_totp_second_step`]
/// documents; the caller's savepoint undoes them unless the outcome is `Committed`.
fn apply_step(conn: &Connection, step: &PassedTotpStep) -> StoreResult<TotpStepOutcome> {
    let session = &step.session;
    let user_id = session.user_id.to_string();
    let now = unix_seconds(step.now);
    let locked_until: Option<Option<i64>> = conn
        .prepare_cached(
            "DELETE FROM second_factor_throttle WHERE user_id = ?1 RETURNING locked_until",
        )
        .and_then(|mut statement| {
            statement
                .query_row(params![user_id], |row| row.get(0))
                .optional()
        })
        .map_err(map_sqlite_error)?;
    if let Some(until) = locked_until.flatten().map(from_unix_seconds)
        && step.now < until
    {
        return Ok(TotpStepOutcome::Locked { until });
    }
    let advanced = conn
        .prepare_cached(
            "UPDATE factors SET last_step = ?2, last_used_at = ?3 \
             WHERE id = ?1 AND (last_step IS NULL OR last_step < ?2)",
        )
        .and_then(|mut statement| {
            statement.execute(params![
                step.factor_id.to_string(),
                u64_to_i64(step.step),
                now
            ])
        })
        .map_err(map_sqlite_error)?;
    if advanced != 1 {
        return Ok(TotpStepOutcome::Replayed);
    }
    let completed = conn
        .prepare_cached(
            "UPDATE mfa_challenges SET completed_at = ?2 \
             WHERE id = ?1 AND completed_at IS NULL AND expires_at > ?2",
        )
        .and_then(|mut statement| statement.execute(params![step.challenge_id.to_string(), now]))
        .map_err(map_sqlite_error)?;
    if completed != 1 {
        return Ok(TotpStepOutcome::ChallengeClosed);
    }
    conn.prepare_cached(
        "INSERT INTO sessions (id, user_id, token_hash, state, amr, created_at, last_seen_at, \
         expires_at, reauth_until, ip, user_agent, mfa_method) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )
    .and_then(|mut statement| {
        statement.execute(params![
            session.id.to_string(),
            user_id,
            &session.token_hash.0[..],
            session.state.as_str(),
            amr_json(&session.amr).map_err(to_sqlite_input)?,
            unix_seconds(session.created_at),
            unix_seconds(session.last_seen_at),
            unix_seconds(session.expires_at),
            session.reauth_until.map(unix_seconds),
            session.ip.as_deref(),
            session.user_agent.as_deref(),
            session.mfa_method.map(MfaMethod::as_str),
        ])
    })
    .map_err(|error| match map_sqlite_error(error) {
        StoreError::Conflict(_) => StoreError::Conflict("session already exists".into()),
        other => other,
    })?;
    let event = &step.event;
    conn.prepare_cached(
        "INSERT INTO security_events (user_id, kind, at, ip, user_agent, actor_id, details) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut statement| {
        statement.execute(params![
            event.user_id.to_string(),
            event.kind.as_str(),
            unix_seconds(event.at),
            event.client.ip.as_deref(),
            event.client.user_agent.as_deref(),
            event.actor_id.map(|actor| actor.to_string()),
            json_text(&event.details).map_err(to_sqlite_input)?,
        ])
    })
    .map_err(map_sqlite_error)?;
    Ok(TotpStepOutcome::Committed)
}

/// A value that could not be serialised, as an error of the statement it was for.
fn to_sqlite_input(error: StoreError) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(Box::new(std::io::Error::other(error.to_string())))
}

/// The same error for every step of a failed group (`StoreError` is not `Clone`).
fn copy_error(error: &StoreError) -> StoreError {
    match error {
        StoreError::Conflict(detail) => StoreError::Conflict(detail.clone()),
        StoreError::Unavailable(detail) => StoreError::Unavailable(detail.clone()),
        StoreError::Other(detail) => StoreError::Other(detail.clone()),
    }
}

//! The second step of sign-in on PostgreSQL: [`PostgresGroupCommit`].
//!
//! Why it exists: one TOTP second step committed on its own is a round trip, a transaction and
//! a WAL flush, and on a small machine PostgreSQL's per-transaction work (protocol, executor
//! start, commit) plus the client's per-query work cost more CPU than the step's own writes.
//! As on SQLite (`sqlite_hot.rs`), the steps that pass at about the same time are committed
//! together: one task per store takes every passed step waiting (up to
//! [`MAX_POSTGRES_GROUP_COMMIT`]) and sends them as one call of `tessera_commit_totp_steps`
//! (migration `0003_second_step.sql`), which runs each in its own subtransaction, so one
//! step's refusal undoes only its own statements, and answers every caller after the commit.
//!
//! Several instances sharing the database each have their own task; the function takes row
//! locks in user order, so their batches cannot deadlock, and every use-once rule is the same
//! conditional `UPDATE` as on the single-step path. If the task is gone (its runtime shut down),
//! a step falls back to the single-step call.

use crate::error::{map_conflict, map_error};
use crate::rows::{amr_json, json_text, u64_to_i64};
use data_encoding::HEXLOWER;
use sqlx::AnyPool;
use tessera_core::clock::{from_unix_seconds, unix_seconds};
use tessera_core::factor::MfaMethod;
use tessera_core::store::{PassedTotpStep, StoreError, StoreResult, TotpStepOutcome};
use tokio::sync::{mpsc, oneshot};

/// How many passed steps one call commits at most: under 64, PostgreSQL's per-transaction cache
/// of subtransaction ids (beyond it, every other backend's snapshots get slower).
pub const MAX_POSTGRES_GROUP_COMMIT: usize = 48;

/// The most JSON one call carries (a step that is larger alone still goes, alone). One query
/// message must fit in one TLS record (16 KiB): sqlx 0.9.0 does not set `TCP_NODELAY`
/// (transact-rs/sqlx#4335), so a message that rustls writes as several records waits for the
/// server's delayed ACK, about 40 ms, before its last part leaves (Nagle's algorithm). The
/// benchmark showed it: 645 steps/s over TLS with 48-step batches, against 3,800/s without TLS.
const MAX_BATCH_BYTES: usize = 14 * 1024;

/// One passed step on its way to the commit task, with where to send the outcome.
struct Job {
    step: PassedTotpStep,
    reply: oneshot::Sender<StoreResult<TotpStepOutcome>>,
}

/// The commit task of one store.
pub(crate) struct PostgresGroupCommit {
    pool: AnyPool,
    jobs: mpsc::UnboundedSender<Job>,
}

impl PostgresGroupCommit {
    /// Starts the commit task on the current Tokio runtime.
    pub(crate) fn start(pool: AnyPool) -> Self {
        let (jobs, queue) = mpsc::unbounded_channel();
        tokio::spawn(run(pool.clone(), queue));
        Self { pool, jobs }
    }

    /// See [`tessera_core::store::Store::commit_totp_second_step`].
    pub(crate) async fn commit(&self, step: &PassedTotpStep) -> StoreResult<TotpStepOutcome> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            step: step.clone(),
            reply,
        };
        if self.jobs.send(job).is_err() {
            return commit_totp_second_step_postgres(&self.pool, step).await;
        }
        answer.await.map_err(|_| {
            StoreError::Unavailable("the PostgreSQL commit task stopped mid-batch".into())
        })?
    }
}

/// The steps of one call, as they are taken from the queue.
struct Batch {
    jobs: Vec<Job>,
    /// `steps[i]` is `jobs[i]`'s step, encoded with `idx` i.
    steps: Vec<String>,
    bytes: usize,
}

impl Batch {
    fn new() -> Self {
        Self {
            jobs: Vec::with_capacity(MAX_POSTGRES_GROUP_COMMIT),
            steps: Vec::with_capacity(MAX_POSTGRES_GROUP_COMMIT),
            bytes: 0,
        }
    }

    /// Adds the job, or gives it back if the batch is full (in steps or bytes). A step that
    /// cannot be encoded is answered at once and never sent. An empty batch takes any step.
    fn add(&mut self, job: Job) -> Option<Job> {
        if self.jobs.len() >= MAX_POSTGRES_GROUP_COMMIT {
            return Some(job);
        }
        match step_json(self.jobs.len(), &job.step) {
            Ok(json) if !self.jobs.is_empty() && self.bytes + json.len() >= MAX_BATCH_BYTES => {
                Some(job)
            }
            Ok(json) => {
                self.bytes += json.len() + 1;
                self.steps.push(json);
                self.jobs.push(job);
                None
            }
            Err(error) => {
                let _ = job.reply.send(Err(error));
                None
            }
        }
    }
}

async fn run(pool: AnyPool, mut queue: mpsc::UnboundedReceiver<Job>) {
    // A step taken from the queue that did not fit the last batch opens the next one.
    let mut carried: Option<Job> = None;
    loop {
        let first = match carried.take() {
            Some(job) => job,
            None => match queue.recv().await {
                Some(job) => job,
                None => return,
            },
        };
        let mut batch = Batch::new();
        batch.add(first);
        while let Ok(job) = queue.try_recv() {
            if let Some(job) = batch.add(job) {
                carried = Some(job);
                break;
            }
        }
        if batch.jobs.is_empty() {
            continue;
        }
        let outcomes = commit_batch(&pool, &batch.steps).await;
        for (job, outcome) in batch.jobs.into_iter().zip(outcomes) {
            // A caller that gave up (its request was cancelled) no longer listens.
            let _ = job.reply.send(outcome);
        }
    }
}

/// One call for the whole batch (`steps[i]` encoded with `idx` i); an outcome per step, in
/// order.
async fn commit_batch(pool: &AnyPool, steps: &[String]) -> Vec<StoreResult<TotpStepOutcome>> {
    let answer = sqlx::query_as::<_, (i64, String, Option<i64>)>(
        "SELECT idx, outcome, locked_until FROM tessera_commit_totp_steps($1::jsonb)",
    )
    .bind(format!("[{}]", steps.join(",")))
    .fetch_all(pool)
    .await
    .map_err(map_error);
    let rows = match answer {
        Ok(rows) => rows,
        // Nothing of the batch was written.
        Err(error) => return steps.iter().map(|_| Err(error.clone())).collect(),
    };
    let mut outcomes: Vec<StoreResult<TotpStepOutcome>> = steps
        .iter()
        .map(|_| {
            Err(StoreError::Other(
                "tessera_commit_totp_steps gave no outcome for a step".into(),
            ))
        })
        .collect();
    for (idx, outcome, locked_until) in rows {
        let Some(slot) = usize::try_from(idx).ok().and_then(|i| outcomes.get_mut(i)) else {
            continue;
        };
        *slot = match (outcome.as_str(), locked_until) {
            ("committed", _) => Ok(TotpStepOutcome::Committed),
            ("replayed", _) => Ok(TotpStepOutcome::Replayed),
            ("challenge_closed", _) => Ok(TotpStepOutcome::ChallengeClosed),
            ("conflict", _) => Err(StoreError::Conflict("session already exists".into())),
            ("locked", Some(until)) => Ok(TotpStepOutcome::Locked {
                until: from_unix_seconds(until),
            }),
            (other, until) => Err(StoreError::Other(format!(
                "tessera_commit_totp_steps answered {other:?} (locked_until {until:?})"
            ))),
        };
    }
    outcomes
}

/// One step as an element of the function's JSON argument, at position `idx` of its batch.
fn step_json(idx: usize, step: &PassedTotpStep) -> StoreResult<String> {
    let session = &step.session;
    let event = &step.event;
    Ok(serde_json::json!({
        "idx": idx,
        "challenge_id": step.challenge_id.to_string(),
        "factor_id": step.factor_id.to_string(),
        "step": u64_to_i64(step.step),
        "now": unix_seconds(step.now),
        "s_id": session.id.to_string(),
        "s_user_id": session.user_id.to_string(),
        "s_token_hash": HEXLOWER.encode(&session.token_hash.0),
        "s_state": session.state.as_str(),
        "s_amr": amr_json(&session.amr)?,
        "s_created_at": unix_seconds(session.created_at),
        "s_last_seen_at": unix_seconds(session.last_seen_at),
        "s_expires_at": unix_seconds(session.expires_at),
        "s_reauth_until": session.reauth_until.map(unix_seconds),
        "s_ip": session.ip,
        "s_user_agent": session.user_agent,
        "s_mfa_method": session.mfa_method.map(MfaMethod::as_str),
        "e_user_id": event.user_id.to_string(),
        "e_kind": event.kind.as_str(),
        "e_at": unix_seconds(event.at),
        "e_ip": event.client.ip,
        "e_user_agent": event.client.user_agent,
        "e_actor_id": event.actor_id.map(|actor| actor.to_string()),
        "e_details": json_text(&event.details)?,
    })
    .to_string())
}

/// The SQLSTATE `tessera_commit_totp_step` raises when the challenge is no longer open.
const CHALLENGE_CLOSED: &str = "TS001";

/// [`tessera_core::store::Store::commit_totp_second_step`] on PostgreSQL without group commit: one call of the function
/// `tessera_commit_totp_step` (migration `0003_second_step.sql`), which checks and writes in
/// the port's order in one statement, so one round trip instead of seven.
///
/// A challenge found closed after the step advanced raises SQLSTATE `TS001`, which rolls the
/// statement back; it is the outcome [`TotpStepOutcome::ChallengeClosed`], not an error.
async fn commit_totp_second_step_postgres(
    pool: &AnyPool,
    step: &PassedTotpStep,
) -> StoreResult<TotpStepOutcome> {
    let session = &step.session;
    let event = &step.event;
    let answer = sqlx::query_as::<_, (String, Option<i64>)>(
        "SELECT outcome, locked_until FROM tessera_commit_totp_step(\
         $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
         $17, $18, $19, $20, $21, $22, $23)",
    )
    .bind(step.challenge_id.to_string())
    .bind(step.factor_id.to_string())
    .bind(u64_to_i64(step.step))
    .bind(unix_seconds(step.now))
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
    .bind(event.user_id.to_string())
    .bind(event.kind.as_str())
    .bind(unix_seconds(event.at))
    .bind(event.client.ip.as_deref())
    .bind(event.client.user_agent.as_deref())
    .bind(event.actor_id.map(|actor| actor.to_string()))
    .bind(json_text(&event.details)?)
    .fetch_one(pool)
    .await;
    let (outcome, locked_until) = match answer {
        Ok(answer) => answer,
        Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some(CHALLENGE_CLOSED) => {
            return Ok(TotpStepOutcome::ChallengeClosed);
        }
        Err(error) => return Err(map_conflict("session already exists")(error)),
    };
    match (outcome.as_str(), locked_until) {
        ("committed", _) => Ok(TotpStepOutcome::Committed),
        ("replayed", _) => Ok(TotpStepOutcome::Replayed),
        ("locked", Some(until)) => Ok(TotpStepOutcome::Locked {
            until: from_unix_seconds(until),
        }),
        (other, until) => Err(StoreError::Other(format!(
            "tessera_commit_totp_step answered {other:?} (locked_until {until:?})"
        ))),
    }
}

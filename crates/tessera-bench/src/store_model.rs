//! `mfa --store-model`, an experiment: the database work of one TOTP second step — the very
//! statements `tessera-store` runs for `Services::complete_second_step` (4 reads outside the
//! transaction, then `BEGIN`, 5 writes, `COMMIT`), with the same SQL text and binds — on the
//! run's own database, through pools this module builds, so each variant changes one thing the
//! store could change:
//!
//! - **as tessera-store today**: sqlx's `Any` driver, pools configured like `SqlStore::connect`
//!   (SQLite: one writer connection and 4 `query_only` readers; PostgreSQL: one pool of 16),
//!   which leaves `test_before_acquire` on: every pool acquire first pings the connection (on
//!   SQLite a round trip to the connection's worker thread, on PostgreSQL a network round trip);
//! - **no ping on acquire**: `test_before_acquire(false)`;
//! - **+ 64 MiB page cache** (SQLite): `PRAGMA cache_size = -65536` on every connection instead of
//!   the 2 MiB default, so the indexes of 100,000 accounts stay in memory;
//! - **+ one read**: the four reads folded into one `SELECT … JOIN` (challenge, user, throttle
//!   and factors in one round trip);
//! - **+ one write batch**: the five writes sent as one batch that keeps their conditions —
//!   SQLite: `;`-separated statements in one query (sqlx runs them in one command on the
//!   connection's thread, binds shared by number), each conditional on the previous one with
//!   `changes()`, between `BEGIN` and `COMMIT`; PostgreSQL: one statement of data-modifying
//!   CTEs, which is its own transaction (no `BEGIN`/`COMMIT` round trips);
//! - **+ native driver**: the same on `sqlx::Sqlite` / `sqlx::Postgres` instead of `Any`;
//! - **+ group commit**: one writer task takes the write batches of up to 64 waiting second
//!   steps and runs them in one transaction (each batch is all-or-nothing by itself, so no
//!   savepoints; a database error would roll the group back, to be retried one by one).
//!
//! Nothing here changes the server; it models what the store would do. No HTTP and no service
//! code: compare each variant with the first, not with the HTTP runs.

use crate::procfs::{self, CpuTicks, ThreadStat};
use crate::seed::{self, SeededUser};
use crate::stats::{Ms, Summary};
use crate::{SERVER_THREAD, print_summary};
use anyhow::Context;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tessera_core::crypto::KeyRing;
use tessera_core::factor::totp_secret_aad;
use tessera_core::ids::{FactorId, SessionId, UserId};
use tessera_core::store::Store;
use tessera_otp::{OtpCode, TotpParams};
use time::OffsetDateTime;

const TOTP: TotpParams = TotpParams::STANDARD;

// The statements of tessera-store (store.rs and tx.rs), verbatim.
const READ_CHALLENGE: &str = "SELECT id, token_hash, user_id, purpose, created_at, expires_at, \
     completed_at, ip, user_agent FROM mfa_challenges WHERE token_hash = $1";
const READ_THROTTLE: &str =
    "SELECT failures, locked_until FROM second_factor_throttle WHERE user_id = $1";
const READ_USER: &str = "SELECT id, email, display_name, created_at FROM users WHERE id = $1";
const READ_FACTORS: &str = "SELECT id, user_id, kind, label, secret_sealed, key_id, last_step, \
     preferred, created_at, last_used_at FROM factors WHERE user_id = $1 ORDER BY created_at, id";
const CLEAR_FAILURES: &str =
    "DELETE FROM second_factor_throttle WHERE user_id = $1 RETURNING locked_until";
const ADVANCE_STEP: &str = "UPDATE factors SET last_step = $2, last_used_at = $3 \
     WHERE id = $1 AND (last_step IS NULL OR last_step < $2)";
const COMPLETE_CHALLENGE: &str = "UPDATE mfa_challenges SET completed_at = $2 \
     WHERE id = $1 AND completed_at IS NULL AND expires_at > $2";
const INSERT_SESSION: &str = "INSERT INTO sessions (id, user_id, token_hash, state, amr, \
     created_at, last_seen_at, expires_at, reauth_until, ip, user_agent, mfa_method) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";
const INSERT_EVENT: &str = "INSERT INTO security_events (user_id, kind, at, ip, user_agent, \
     actor_id, details) VALUES ($1, $2, $3, $4, $5, $6, $7)";
/// The proposed single read: the challenge, its user, the user's throttle and TOTP factors.
const READ_FOLDED: &str = "SELECT c.id, c.user_id, c.purpose, c.created_at, c.expires_at, \
     c.completed_at, u.email, u.display_name, t.failures, t.locked_until, f.id, f.kind, \
     f.secret_sealed FROM mfa_challenges c JOIN users u ON u.id = c.user_id \
     LEFT JOIN second_factor_throttle t ON t.user_id = c.user_id \
     LEFT JOIN factors f ON f.user_id = c.user_id \
     WHERE c.token_hash = $1 ORDER BY f.created_at, f.id";

/// The proposed single write batch on SQLite. `$1` user, `$2` step, `$3` now, `$4` factor,
/// `$5` challenge, `$6` session id, `$7` session token hash, `$8` session expiry, `$9` re-auth
/// end, `$10` ip, `$11` user agent, `$12` event details. A running second-factor lock stops
/// the first statement, and each later one runs only if the one before changed a row, so the
/// final `SELECT` returns a row exactly when the session was issued (else: roll back, and read
/// why). The failure count is cleared last, as part of the success.
const WRITE_BATCH_SQLITE: &str = "UPDATE factors SET last_step = $2, last_used_at = $3 \
     WHERE id = $4 AND (last_step IS NULL OR last_step < $2) AND NOT EXISTS \
     (SELECT 1 FROM second_factor_throttle WHERE user_id = $1 AND locked_until > $3); \
     UPDATE mfa_challenges SET completed_at = $3 \
     WHERE id = $5 AND completed_at IS NULL AND expires_at > $3 AND changes() = 1; \
     INSERT INTO sessions (id, user_id, token_hash, state, amr, created_at, last_seen_at, \
     expires_at, reauth_until, ip, user_agent, mfa_method) \
     SELECT $6, $1, $7, 'full', '[\"pwd\",\"otp\",\"mfa\"]', $3, $3, $8, $9, $10, $11, 'totp' \
     WHERE changes() = 1; \
     INSERT INTO security_events (user_id, kind, at, ip, user_agent, actor_id, details) \
     SELECT $1, 'signin_succeeded', $3, $10, $11, NULL, $12 WHERE changes() = 1; \
     DELETE FROM second_factor_throttle WHERE user_id = $1 AND changes() = 1; \
     SELECT id FROM sessions WHERE id = $6";

/// `sql` with every `$N` bind renamed `$(N + by)`.
fn renumber(sql: &str, by: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 32);
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        let mut digits = String::new();
        while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
            digits.push(d);
            chars.next();
        }
        match digits.parse::<usize>() {
            Ok(n) => out.push_str(&format!("${}", n + by)),
            Err(_) => {
                out.push('$');
                out.push_str(&digits);
            }
        }
    }
    out
}
/// The same on PostgreSQL: one statement, so one round trip and its own transaction. The
/// throttle row is read `FOR UPDATE` first, as today's `DELETE … RETURNING` does: a parallel
/// wrong code that is locking the account makes this wait and then see its lock.
const WRITE_BATCH_POSTGRES: &str = "WITH lock AS (SELECT locked_until FROM \
     second_factor_throttle WHERE user_id = $1 FOR UPDATE), \
     adv AS (UPDATE factors SET last_step = $2, \
     last_used_at = $3 WHERE id = $4 AND (last_step IS NULL OR last_step < $2) AND NOT EXISTS \
     (SELECT 1 FROM lock WHERE locked_until > $3) RETURNING id), \
     chal AS (UPDATE mfa_challenges SET completed_at = $3 WHERE id = $5 \
     AND completed_at IS NULL AND expires_at > $3 AND EXISTS (SELECT 1 FROM adv) RETURNING id), \
     sess AS (INSERT INTO sessions (id, user_id, token_hash, state, amr, created_at, \
     last_seen_at, expires_at, reauth_until, ip, user_agent, mfa_method) \
     SELECT $6, $1, $7, 'full', '[\"pwd\",\"otp\",\"mfa\"]', $3, $3, $8, $9, $10, $11, 'totp' \
     FROM chal RETURNING id), \
     ev AS (INSERT INTO security_events (user_id, kind, at, ip, user_agent, actor_id, details) \
     SELECT $1, 'signin_succeeded', $3, $10, $11, NULL, $12 FROM sess RETURNING id), \
     clr AS (DELETE FROM second_factor_throttle WHERE user_id = $1 \
     AND EXISTS (SELECT 1 FROM sess) RETURNING 1) \
     SELECT id FROM ev";

// tessera-store's pragmas (dialect.rs), and the variant with a bigger page cache.
const WRITER_PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; \
     PRAGMA busy_timeout = 5000; PRAGMA synchronous = NORMAL;";
const READER_PRAGMAS: &str = "PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; \
     PRAGMA synchronous = NORMAL; PRAGMA query_only = ON;";
const WRITER_PRAGMAS_CACHE: &str = "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; \
     PRAGMA busy_timeout = 5000; PRAGMA synchronous = NORMAL; PRAGMA cache_size = -65536;";
const READER_PRAGMAS_CACHE: &str = "PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; \
     PRAGMA synchronous = NORMAL; PRAGMA query_only = ON; PRAGMA cache_size = -65536;";

/// One configuration of the model.
#[derive(Debug, Clone, Copy)]
struct Variant {
    label: &'static str,
    native: bool,
    ping_on_acquire: bool,
    big_cache: bool,
    folded_reads: bool,
    batched_writes: bool,
    group_commit: bool,
    /// SQLite only: the group's batches as one query (one hand-off per group).
    one_query: bool,
}

/// Second steps per transaction at most, with group commit.
const GROUP_MAX: usize = 64;

const VARIANTS: [Variant; 8] = [
    Variant {
        label: "as tessera-store today (Any, ping on acquire, 4 reads)",
        native: false,
        ping_on_acquire: true,
        big_cache: false,
        folded_reads: false,
        batched_writes: false,
        group_commit: false,
        one_query: false,
    },
    Variant {
        label: "no ping on acquire",
        native: false,
        ping_on_acquire: false,
        big_cache: false,
        folded_reads: false,
        batched_writes: false,
        group_commit: false,
        one_query: false,
    },
    Variant {
        label: "+ 64 MiB SQLite page cache",
        native: false,
        ping_on_acquire: false,
        big_cache: true,
        folded_reads: false,
        batched_writes: false,
        group_commit: false,
        one_query: false,
    },
    Variant {
        label: "+ the 4 reads folded into 1",
        native: false,
        ping_on_acquire: false,
        big_cache: true,
        folded_reads: true,
        batched_writes: false,
        group_commit: false,
        one_query: false,
    },
    Variant {
        label: "+ the 5 writes in one batch",
        native: false,
        ping_on_acquire: false,
        big_cache: true,
        folded_reads: true,
        batched_writes: true,
        group_commit: false,
        one_query: false,
    },
    Variant {
        label: "+ native sqlx driver instead of Any",
        native: true,
        ping_on_acquire: false,
        big_cache: true,
        folded_reads: true,
        batched_writes: true,
        group_commit: false,
        one_query: false,
    },
    Variant {
        label: "+ group commit (one writer task, up to 64 second steps per transaction)",
        native: true,
        ping_on_acquire: false,
        big_cache: true,
        folded_reads: true,
        batched_writes: true,
        group_commit: true,
        one_query: false,
    },
    Variant {
        label: "+ the group's batches sent as one query (SQLite)",
        native: true,
        ping_on_acquire: false,
        big_cache: true,
        folded_reads: true,
        batched_writes: true,
        group_commit: true,
        one_query: true,
    },
];

/// The pools of one variant.
#[derive(Clone)]
enum Pools {
    Any {
        writer: sqlx::AnyPool,
        reader: sqlx::AnyPool,
    },
    Sqlite {
        writer: sqlx::SqlitePool,
        reader: sqlx::SqlitePool,
    },
    Postgres(sqlx::PgPool),
}

impl Pools {
    async fn open(url: &str, postgres: bool, variant: Variant) -> anyhow::Result<Self> {
        use sqlx::any::AnyPoolOptions;
        use sqlx::postgres::PgPoolOptions;
        use sqlx::sqlite::SqlitePoolOptions;
        sqlx::any::install_default_drivers();
        let (writer_pragmas, reader_pragmas) = if variant.big_cache {
            (WRITER_PRAGMAS_CACHE, READER_PRAGMAS_CACHE)
        } else {
            (WRITER_PRAGMAS, READER_PRAGMAS)
        };
        let tba = variant.ping_on_acquire;
        Ok(match (postgres, variant.native) {
            (true, false) => {
                let pool = AnyPoolOptions::new()
                    .max_connections(16)
                    .test_before_acquire(tba)
                    .connect(url)
                    .await?;
                Self::Any {
                    writer: pool.clone(),
                    reader: pool,
                }
            }
            (true, true) => Self::Postgres(
                PgPoolOptions::new()
                    .max_connections(16)
                    .test_before_acquire(tba)
                    .connect(url)
                    .await?,
            ),
            (false, false) => Self::Any {
                writer: AnyPoolOptions::new()
                    .max_connections(1)
                    .test_before_acquire(tba)
                    .after_connect(move |conn, _| {
                        Box::pin(async move {
                            sqlx::raw_sql(writer_pragmas).execute(conn).await.map(drop)
                        })
                    })
                    .connect(url)
                    .await?,
                reader: AnyPoolOptions::new()
                    .max_connections(4)
                    .test_before_acquire(tba)
                    .after_connect(move |conn, _| {
                        Box::pin(async move {
                            sqlx::raw_sql(reader_pragmas).execute(conn).await.map(drop)
                        })
                    })
                    .connect(url)
                    .await?,
            },
            (false, true) => Self::Sqlite {
                writer: SqlitePoolOptions::new()
                    .max_connections(1)
                    .test_before_acquire(tba)
                    .after_connect(move |conn, _| {
                        Box::pin(async move {
                            sqlx::raw_sql(writer_pragmas).execute(conn).await.map(drop)
                        })
                    })
                    .connect(url)
                    .await?,
                reader: SqlitePoolOptions::new()
                    .max_connections(4)
                    .test_before_acquire(tba)
                    .after_connect(move |conn, _| {
                        Box::pin(async move {
                            sqlx::raw_sql(reader_pragmas).execute(conn).await.map(drop)
                        })
                    })
                    .connect(url)
                    .await?,
            },
        })
    }

    async fn close(&self) {
        match self {
            Self::Any { writer, reader } => {
                writer.close().await;
                reader.close().await;
            }
            Self::Sqlite { writer, reader } => {
                writer.close().await;
                reader.close().await;
            }
            Self::Postgres(pool) => pool.close().await,
        }
    }

    async fn step(
        &self,
        shape: &Shape,
        ring: &KeyRing,
        job: &Job,
        now: i64,
    ) -> anyhow::Result<Duration> {
        match self {
            Self::Any { writer, reader } => step_any(writer, reader, shape, ring, job, now).await,
            Self::Sqlite { writer, reader } => {
                step_sqlite(writer, reader, shape, ring, job, now).await
            }
            Self::Postgres(pool) => step_postgres(pool, pool, shape, ring, job, now).await,
        }
    }
}

/// Which statements a second step sends.
#[derive(Debug, Clone)]
struct Shape {
    folded_reads: bool,
    batched_writes: bool,
    postgres: bool,
    /// The writer task, with group commit.
    group: Option<tokio::sync::mpsc::Sender<WriteJob>>,
}

/// The values of the write batch of one second step.
struct WriteArgs {
    user_id: String,
    step: i64,
    now: i64,
    factor_id: String,
    challenge_id: String,
    session_id: String,
    token_hash: [u8; 32],
    expires_at: i64,
    reauth_until: i64,
    details: String,
}

/// A write batch for the group-commit writer, and where to say whether it issued the session.
struct WriteJob {
    args: WriteArgs,
    reply: tokio::sync::oneshot::Sender<bool>,
}

/// The write batch `sql` with the binds of `args`.
macro_rules! bind_batch {
    ($sql:expr, $args:expr) => {
        sqlx::query($sql)
            .bind($args.user_id.as_str())
            .bind($args.step)
            .bind($args.now)
            .bind($args.factor_id.as_str())
            .bind($args.challenge_id.as_str())
            .bind($args.session_id.as_str())
            .bind(&$args.token_hash[..])
            .bind($args.expires_at)
            .bind(Some($args.reauth_until))
            .bind(Some("198.51.100.7"))
            .bind(Some("tessera-bench"))
            .bind($args.details.as_str())
    };
}

/// The group-commit writer for one sqlx database type: drains up to [`GROUP_MAX`] waiting
/// batches, runs them in one transaction, commits, answers each.
macro_rules! group_writer {
    ($name:ident, $db:ty) => {
        async fn $name(
            pool: sqlx::Pool<$db>,
            mut jobs: tokio::sync::mpsc::Receiver<WriteJob>,
            postgres: bool,
            one_query: bool,
        ) -> anyhow::Result<(u64, u64)> {
            let sql = if postgres {
                WRITE_BATCH_POSTGRES
            } else {
                WRITE_BATCH_SQLITE
            };
            let (mut groups, mut steps) = (0_u64, 0_u64);
            let mut group = Vec::with_capacity(GROUP_MAX);
            while jobs.recv_many(&mut group, GROUP_MAX).await > 0 {
                let mut tx = pool.begin().await?;
                let mut issued = Vec::with_capacity(group.len());
                if one_query && !postgres {
                    // Job j's binds are numbered from 12 j + 1; the final SELECT of each job
                    // names the session it issued.
                    let sql = (0..group.len())
                        .map(|j| renumber(WRITE_BATCH_SQLITE, 12 * j))
                        .collect::<Vec<_>>()
                        .join("; ");
                    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                    for job in &group {
                        let a = &job.args;
                        query = query
                            .bind(a.user_id.as_str())
                            .bind(a.step)
                            .bind(a.now)
                            .bind(a.factor_id.as_str())
                            .bind(a.challenge_id.as_str())
                            .bind(a.session_id.as_str())
                            .bind(&a.token_hash[..])
                            .bind(a.expires_at)
                            .bind(Some(a.reauth_until))
                            .bind(Some("198.51.100.7"))
                            .bind(Some("tessera-bench"))
                            .bind(a.details.as_str());
                    }
                    let rows = query.fetch_all(&mut *tx).await?;
                    let sessions: std::collections::HashSet<String> = rows
                        .iter()
                        .filter_map(|row| sqlx::Row::try_get::<String, _>(row, 0).ok())
                        .collect();
                    issued.extend(
                        group
                            .iter()
                            .map(|job| sessions.contains(&job.args.session_id)),
                    );
                } else {
                    for job in &group {
                        let rows = bind_batch!(sql, job.args).fetch_all(&mut *tx).await?;
                        issued.push(rows.len() == 1);
                    }
                }
                tx.commit().await?;
                groups += 1;
                steps += group.len() as u64;
                for (job, ok) in group.drain(..).zip(issued) {
                    job.reply.send(ok).ok();
                }
            }
            Ok((groups, steps))
        }
    };
}

group_writer!(group_writer_any, sqlx::Any);
group_writer!(group_writer_sqlite, sqlx::Sqlite);
group_writer!(group_writer_postgres, sqlx::Postgres);

/// One second step to make: whose, which challenge, which code.
struct Job {
    user_id: String,
    token_hash: [u8; 32],
    code: String,
}

/// Opens each sealed secret and checks the code; the matching factor id and step.
fn verify(
    ring: &KeyRing,
    user_id: &str,
    factors: &[(String, String, Option<Vec<u8>>)],
    code: &str,
    now: i64,
) -> anyhow::Result<Option<(String, u64)>> {
    let user: UserId = user_id
        .parse()
        .map_err(|_| anyhow::anyhow!("bad user id"))?;
    let code = OtpCode::parse(code, TOTP.digits).map_err(|e| anyhow::anyhow!("{e}"))?;
    for (id, kind, sealed) in factors {
        let (Some(sealed), "totp") = (sealed, kind.as_str()) else {
            continue;
        };
        let factor: FactorId = id.parse().map_err(|_| anyhow::anyhow!("bad factor id"))?;
        let secret = ring
            .open(sealed, &totp_secret_aad(user, factor))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        if let Some(step) = tessera_otp::verify_totp(&secret, &code, now, TOTP) {
            return Ok(Some((id.clone(), step)));
        }
    }
    Ok(None)
}

/// The statements of a second step for one sqlx database type: returns how long the
/// transaction held its connection.
macro_rules! second_step {
    ($name:ident, $db:ty) => {
        async fn $name(
            writer: &sqlx::Pool<$db>,
            reader: &sqlx::Pool<$db>,
            shape: &Shape,
            ring: &KeyRing,
            job: &Job,
            now: i64,
        ) -> anyhow::Result<Duration> {
            use sqlx::Row as _;
            let (challenge_id, created_at, factors) = if shape.folded_reads {
                let rows = sqlx::query(READ_FOLDED)
                    .bind(&job.token_hash[..])
                    .fetch_all(reader)
                    .await?;
                let first = rows.first().context("no such challenge")?;
                let completed: Option<i64> = first.try_get(5)?;
                let expires: i64 = first.try_get(4)?;
                let purpose: String = first.try_get(2)?;
                let locked: Option<i64> = first.try_get(9)?;
                let _user: (String, String) = (first.try_get(6)?, first.try_get(7)?);
                anyhow::ensure!(
                    completed.is_none() && now < expires && purpose == "signin",
                    "challenge not open"
                );
                anyhow::ensure!(locked.is_none_or(|until| until <= now), "locked");
                let mut factors = Vec::new();
                for row in &rows {
                    let id: Option<String> = row.try_get(10)?;
                    let kind: Option<String> = row.try_get(11)?;
                    if let (Some(id), Some(kind)) = (id, kind) {
                        factors.push((id, kind, row.try_get::<Option<Vec<u8>>, _>(12)?));
                    }
                }
                (first.try_get::<String, _>(0)?, first.try_get::<i64, _>(3)?, factors)
            } else {
                let challenge = sqlx::query(READ_CHALLENGE)
                    .bind(&job.token_hash[..])
                    .fetch_optional(reader)
                    .await?
                    .context("no such challenge")?;
                let completed: Option<i64> = challenge.try_get(6)?;
                let expires: i64 = challenge.try_get(5)?;
                let purpose: String = challenge.try_get(3)?;
                anyhow::ensure!(
                    completed.is_none() && now < expires && purpose == "signin",
                    "challenge not open"
                );
                let throttle = sqlx::query(READ_THROTTLE)
                    .bind(job.user_id.as_str())
                    .fetch_optional(reader)
                    .await?;
                if let Some(row) = throttle {
                    let locked: Option<i64> = row.try_get(1)?;
                    anyhow::ensure!(locked.is_none_or(|until| until <= now), "locked");
                }
                let user = sqlx::query(READ_USER)
                    .bind(job.user_id.as_str())
                    .fetch_optional(reader)
                    .await?
                    .context("no such user")?;
                let _user: (String, String) = (user.try_get(1)?, user.try_get(2)?);
                let mut factors = Vec::new();
                for row in sqlx::query(READ_FACTORS)
                    .bind(job.user_id.as_str())
                    .fetch_all(reader)
                    .await?
                {
                    factors.push((
                        row.try_get::<String, _>(0)?,
                        row.try_get::<String, _>(2)?,
                        row.try_get::<Option<Vec<u8>>, _>(4)?,
                    ));
                }
                (
                    challenge.try_get::<String, _>(0)?,
                    challenge.try_get::<i64, _>(4)?,
                    factors,
                )
            };
            let (factor_id, step) =
                verify(ring, &job.user_id, &factors, &job.code, now)?.context("wrong code")?;
            let step = i64::try_from(step)?;
            let session_id = SessionId::new().to_string();
            let token_hash = tessera_core::crypto::random_bytes::<32>()
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let details = serde_json::json!({
                "session_id": session_id,
                "amr": ["pwd", "otp", "mfa"],
                "method": "totp",
            })
            .to_string();

            if shape.batched_writes {
                let args = WriteArgs {
                    user_id: job.user_id.clone(),
                    step,
                    now,
                    factor_id: factor_id.clone(),
                    challenge_id: challenge_id.clone(),
                    session_id: session_id.clone(),
                    token_hash,
                    expires_at: now + 30 * 86_400,
                    reauth_until: created_at + 600,
                    details: details.clone(),
                };
                let held = Instant::now();
                if let Some(group) = &shape.group {
                    let (reply, answer) = tokio::sync::oneshot::channel();
                    group
                        .send(WriteJob { args, reply })
                        .await
                        .map_err(|_| anyhow::anyhow!("the writer task stopped"))?;
                    anyhow::ensure!(answer.await?, "second step refused");
                    return Ok(held.elapsed());
                }
                if shape.postgres {
                    // One statement: its own transaction.
                    let rows = bind_batch!(WRITE_BATCH_POSTGRES, args).fetch_all(writer).await?;
                    anyhow::ensure!(rows.len() == 1, "second step refused");
                    return Ok(held.elapsed());
                }
                let mut tx = writer.begin().await?;
                let held = Instant::now();
                let rows = bind_batch!(WRITE_BATCH_SQLITE, args).fetch_all(&mut *tx).await?;
                anyhow::ensure!(rows.len() == 1, "second step refused");
                tx.commit().await?;
                return Ok(held.elapsed());
            }

            let mut tx = writer.begin().await?;
            // From BEGIN done to COMMIT done: how long the transaction holds its connection.
            let held = Instant::now();
            let _locked: Option<Option<i64>> = sqlx::query_scalar(CLEAR_FAILURES)
                .bind(job.user_id.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            let advanced = sqlx::query(ADVANCE_STEP)
                .bind(factor_id.as_str())
                .bind(step)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            anyhow::ensure!(advanced.rows_affected() == 1, "replayed code");
            let completed = sqlx::query(COMPLETE_CHALLENGE)
                .bind(challenge_id.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            anyhow::ensure!(completed.rows_affected() == 1, "challenge used");
            sqlx::query(INSERT_SESSION)
                .bind(session_id.as_str())
                .bind(job.user_id.as_str())
                .bind(&token_hash[..])
                .bind("full")
                .bind(r#"["pwd","otp","mfa"]"#)
                .bind(now)
                .bind(now)
                .bind(now + 30 * 86_400)
                .bind(Some(created_at + 600))
                .bind(Some("198.51.100.7"))
                .bind(Some("tessera-bench"))
                .bind(Some("totp"))
                .execute(&mut *tx)
                .await?;
            sqlx::query(INSERT_EVENT)
                .bind(job.user_id.as_str())
                .bind("signin_succeeded")
                .bind(now)
                .bind(Some("198.51.100.7"))
                .bind(Some("tessera-bench"))
                .bind(None::<String>)
                .bind(details.as_str())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(held.elapsed())
        }
    };
}

second_step!(step_any, sqlx::Any);
second_step!(step_sqlite, sqlx::Sqlite);
second_step!(step_postgres, sqlx::Postgres);

/// Runs every variant with `count` fresh challenges each (seeded through the server's store),
/// `concurrency` second steps in flight on the server's runtime (idle meanwhile).
#[expect(clippy::too_many_arguments, reason = "an experiment's knobs")]
pub fn run(
    server_rt: &tokio::runtime::Runtime,
    store: &Arc<dyn Store>,
    url: &str,
    postgres: Option<&str>,
    ring: &KeyRing,
    users: &[SeededUser],
    mut now: OffsetDateTime,
    concurrency: usize,
) -> anyhow::Result<()> {
    let ids: Vec<UserId> = users.iter().map(|u| u.id).collect();
    for (index, variant) in VARIANTS.iter().enumerate() {
        if postgres.is_some() && ((variant.big_cache && !variant.folded_reads) || variant.one_query)
        {
            continue; // SQLite only: a pragma, and several statements in one query
        }
        // A fresh TOTP step (every factor accepted an earlier one) and fresh challenges.
        now += time::Duration::seconds(30);
        let (tokens, rows) = seed::prepare_challenges(&ids, now)?;
        server_rt.block_on(seed::seed(store.clone(), vec![rows], now, 4000, 1))?;
        let at = now.unix_timestamp();
        let jobs = users
            .iter()
            .zip(&tokens)
            .map(|(user, token)| {
                Ok(Job {
                    user_id: user.id.to_string(),
                    token_hash: token.hash().0,
                    code: tessera_otp::totp_at(&user.secret, at, TOTP)
                        .context("no TOTP code at this time")?,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let jobs = Arc::new(jobs);
        let pools = server_rt.block_on(Pools::open(url, postgres.is_some(), *variant))?;
        let (group, writer) = if variant.group_commit {
            let (sender, jobs) = tokio::sync::mpsc::channel(4 * GROUP_MAX);
            let is_pg = postgres.is_some();
            let one = variant.one_query;
            let writer = match pools.clone() {
                Pools::Any { writer, .. } => {
                    server_rt.spawn(group_writer_any(writer, jobs, is_pg, one))
                }
                Pools::Sqlite { writer, .. } => {
                    server_rt.spawn(group_writer_sqlite(writer, jobs, is_pg, one))
                }
                Pools::Postgres(pool) => {
                    server_rt.spawn(group_writer_postgres(pool, jobs, is_pg, one))
                }
            };
            (Some(sender), Some(writer))
        } else {
            (None, None)
        };
        let next = Arc::new(AtomicUsize::new(0));
        let pg_before = postgres.map(|_| procfs::processes(|c| c.starts_with("postgres:")));
        let threads_before = procfs::threads()?;
        let cpu = CpuTicks::now()?;
        let started = Instant::now();
        let (latencies, holds, failures, first_error) = server_rt.block_on(async {
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..concurrency.max(1) {
                let (jobs, next, pools, ring) =
                    (jobs.clone(), next.clone(), pools.clone(), ring.clone());
                let shape = Shape {
                    folded_reads: variant.folded_reads,
                    batched_writes: variant.batched_writes,
                    postgres: postgres.is_some(),
                    group: group.clone(),
                };
                tasks.spawn(async move {
                    let mut out = (Vec::new(), Vec::new(), 0_u64, None::<String>);
                    while let Some(job) = jobs.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let sent = Instant::now();
                        match pools.step(&shape, &ring, job, at).await {
                            Ok(held) => {
                                out.0.push(sent.elapsed());
                                out.1.push(held);
                            }
                            Err(error) => {
                                out.2 += 1;
                                out.3.get_or_insert(format!("{error:#}"));
                            }
                        }
                    }
                    out
                });
            }
            let mut all = (Vec::new(), Vec::new(), 0_u64, None::<String>);
            while let Some(joined) = tasks.join_next().await {
                let (l, h, f, e) = joined.context("model task failed")?;
                all.0.extend(l);
                all.1.extend(h);
                all.2 += f;
                if all.3.is_none() {
                    all.3 = e;
                }
            }
            anyhow::Ok(all)
        })?;
        let wall = started.elapsed();
        let cpu = CpuTicks::now()?.since(&cpu);
        let used = procfs::delta(&threads_before, &procfs::threads()?);
        let pg_ticks = pg_before.zip(postgres).map(|(before, name)| {
            procfs::process_delta(&before, &procfs::processes(|c| c.starts_with("postgres:")))
                .values()
                .filter(|(cmdline, _)| cmdline.contains(name))
                .map(|(_, ticks)| ticks)
                .sum::<u64>()
        });
        drop(group);
        let groups = match writer {
            Some(writer) => Some(
                server_rt
                    .block_on(writer)
                    .context("the writer task panicked")??,
            ),
            None => None,
        };
        server_rt.block_on(pools.close());

        let ok = latencies.len();
        println!();
        println!(
            "[5{}] MODEL: {}, {concurrency} in flight, {} fresh challenges",
            char::from(b'a' + u8::try_from(index).unwrap_or(0)),
            variant.label,
            jobs.len()
        );
        println!(
            "    {:.1} second steps/s, {failures} failures, in {:.2} s{}",
            ok as f64 / wall.as_secs_f64().max(1e-9),
            wall.as_secs_f64(),
            first_error.map_or_else(String::new, |e| format!(" (first: {e})"))
        );
        print_summary("    latency", Summary::of(latencies));
        if let Some(held) = Summary::of(holds.clone()).filter(|_| variant.group_commit) {
            println!(
                "    write batch handed to the writer task → answered (queue + group transaction): mean {}, p99 {}",
                Ms(held.mean),
                Ms(held.p99)
            );
        } else if let Some(held) = Summary::of(holds) {
            println!(
                "    transaction held its connection (BEGIN done → COMMIT done): mean {}, p99 {}{}",
                Ms(held.mean),
                Ms(held.p99),
                if postgres.is_none() {
                    format!(
                        " (one SQLite writer: ≤ {:.0}/s)",
                        1.0 / held.mean.as_secs_f64().max(1e-9)
                    )
                } else {
                    String::new()
                }
            );
        }
        if let Some((groups, steps)) = groups {
            println!(
                "    group commit: {groups} transactions for {steps} second steps ({:.1} per transaction)",
                steps as f64 / groups.max(1) as f64
            );
        }
        println!("    machine CPU: {}", cpu.describe());
        print_per_step(&used, ok, pg_ticks);
    }
    Ok(())
}

/// CPU and times scheduled per second step, for the runtime's and SQLite's threads.
fn print_per_step(used: &BTreeMap<u32, ThreadStat>, ok: usize, pg_ticks: Option<u64>) {
    let sum = |pick: &dyn Fn(&ThreadStat) -> bool| {
        used.values()
            .filter(|t| pick(t))
            .fold((0_u64, 0_u64), |(ns, n), t| (ns + t.run_ns, n + t.slices))
    };
    let (rt_ns, rt_n) = sum(&|t| t.name == SERVER_THREAD);
    let (sq_ns, sq_n) = sum(&|t| t.name.starts_with("sqlx-sqlite"));
    let per = |x: u64| x as f64 / ok.max(1) as f64;
    let mut line = format!(
        "    per second step: runtime threads {:.0} µs CPU / scheduled in {:.1}×, SQLite threads {:.0} µs / {:.1}×",
        per(rt_ns) / 1e3,
        per(rt_n),
        per(sq_ns) / 1e3,
        per(sq_n)
    );
    if let Some(ticks) = pg_ticks {
        line.push_str(&format!(
            ", PostgreSQL backends {:.0} µs",
            per(ticks.saturating_mul(10_000_000)) / 1e3
        ));
    }
    println!("{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_are_renumbered() {
        assert_eq!(
            renumber("a = $1 AND b = $12, '$x'", 12),
            "a = $13 AND b = $24, '$x'"
        );
        assert_eq!(renumber("no binds", 5), "no binds");
    }
}

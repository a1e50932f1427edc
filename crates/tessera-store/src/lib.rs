//! Tessera's [`Store`] port on SQLite and PostgreSQL.
//!
//! One implementation, [`SqlStore`], serves both backends through sqlx's `Any` driver: every
//! query is written once in portable SQL with `$N` placeholders, and the few differences
//! (connection pragmas, row locking, error classification) live in one module, `dialect.rs`. The schema is
//! created by the embedded migrations in `migrations/sqlite` and `migrations/postgres` (same
//! file names), run by [`SqlStore::migrate`].
//!
//! One exception, for speed: committing a TOTP second step, the hot path of sign-in, has a
//! group commit per backend, because one transaction per step could not reach the benchmark's
//! targets on a 2-core machine. On an SQLite file, `sqlite_hot.rs` runs the same statements
//! through `rusqlite` on a thread of its own, many steps per transaction; on PostgreSQL,
//! `postgres_hot.rs` sends the waiting steps to the function `tessera_commit_totp_steps`
//! (migration `0003_second_step.sql`) in one round trip. Both keep the port's contract and its
//! store tests run on both; in-memory SQLite keeps the plain transaction.
//!
//! Storage representation: ids are UUID text, timestamps unix seconds, session token hashes
//! raw bytes, JSON (amr, event details, notification payloads) text; emails are unique by their
//! normalized (lower-case) form.
//!
//! Threats this crate defends against:
//! - **Lost or doubled updates under concurrency** (two sign-ins counting one failure, two
//!   workers sending one email): every count-and-check and use-once operation is a single
//!   conditional statement (`INSERT … ON CONFLICT … RETURNING`, `UPDATE … WHERE <still free>`).
//! - **Secrets in error text**: errors never quote bound values (see `error.rs`).
//! - **Readers starved by writers on SQLite**: WAL mode, one writer connection that serialises
//!   transactions (the group-commit thread takes the same write lock with `BEGIN IMMEDIATE`),
//!   and separate `query_only` reader connections.
//! - **One step's refusal spoiling a group**: each step of a group commit runs in its own
//!   savepoint (SQLite) or subtransaction (PostgreSQL), and callers are answered only after the
//!   group's `COMMIT`.
//! - **Fail open**: an unreachable database is [`StoreError::Unavailable`], never an empty
//!   answer.
//!
//! [`Store`]: tessera_core::store::Store
//! [`StoreError::Unavailable`]: tessera_core::store::StoreError::Unavailable

mod dialect;
mod error;
mod postgres_hot;
mod rows;
mod sqlite_hot;
mod store;
mod tx;

pub use dialect::Backend;
pub use postgres_hot::MAX_POSTGRES_GROUP_COMMIT;
pub use sqlite_hot::MAX_GROUP_COMMIT;

use error::{map_error, map_migrate_error};
use postgres_hot::PostgresGroupCommit;
use sqlite_hot::SqliteHotPath;
use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tessera_core::store::{StoreError, StoreResult};

/// Connections of the PostgreSQL pool (shared by reads and transactions).
pub const POSTGRES_MAX_CONNECTIONS: u32 = 16;
/// Connections of the SQLite reader pool (the writer pool has exactly one).
pub const SQLITE_READER_CONNECTIONS: u32 = 4;
/// How long a caller waits for a pooled connection before the store reports itself
/// unavailable.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("../../migrations/sqlite");
static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("../../migrations/postgres");

/// The [`tessera_core::store::Store`] on SQLite or PostgreSQL.
///
/// Cheap to clone: clones share the connection pools. On SQLite, transactions and
/// single-statement writes use one writer connection and reads use a pool of reader
/// connections; on PostgreSQL (and for an in-memory SQLite database) one pool serves both.
#[derive(Clone)]
pub struct SqlStore {
    /// Transactions and single-statement writes.
    writer: AnyPool,
    /// Reads outside transactions.
    reader: AnyPool,
    /// The second step of sign-in on an SQLite file (see `sqlite_hot.rs`); `None` on
    /// PostgreSQL and in memory, where it goes through the pools like everything else.
    hot: Option<Arc<SqliteHotPath>>,
    /// The group commit of second steps on PostgreSQL (see `postgres_hot.rs`).
    pg_commit: Option<Arc<PostgresGroupCommit>>,
    backend: Backend,
}

impl fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The pools' options are left out on purpose: nothing here may print the database URL,
        // which can carry a password.
        f.debug_struct("SqlStore")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl SqlStore {
    /// Connects to the database at `url`:
    ///
    /// - `sqlite://path/to/tessera.db?mode=rwc` (creates the file if missing; without
    ///   `mode=rwc` the file must exist): WAL, `foreign_keys=ON`, `busy_timeout=5s`,
    ///   `synchronous=NORMAL`, one writer connection and
    ///   [`SQLITE_READER_CONNECTIONS`] `query_only` readers;
    /// - `sqlite::memory:`: one private in-memory database on a single connection (tests);
    /// - `postgres://user@host:5432/db`: a pool of up to [`POSTGRES_MAX_CONNECTIONS`].
    ///
    /// At least one connection is opened before this returns, so a wrong URL or an unreachable
    /// server fails here ([`StoreError::Unavailable`] when the server cannot be reached).
    /// Call [`SqlStore::migrate`] before use.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        sqlx::any::install_default_drivers();
        let Some(backend) = Backend::from_url(url) else {
            return Err(StoreError::Other(
                "unsupported database URL: expected sqlite:… or postgres://…".into(),
            ));
        };
        match backend {
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(POSTGRES_MAX_CONNECTIONS)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect(url)
                    .await
                    .map_err(map_error)?;
                Ok(Self {
                    writer: pool.clone(),
                    reader: pool.clone(),
                    hot: None,
                    pg_commit: Some(Arc::new(PostgresGroupCommit::start(pool))),
                    backend,
                })
            }
            Backend::Sqlite if dialect::is_sqlite_memory(url) => {
                // The database lives as long as its connection: keep exactly one, forever.
                let pool = AnyPoolOptions::new()
                    .max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            sqlx::raw_sql(dialect::SQLITE_MEMORY_PRAGMAS)
                                .execute(conn)
                                .await
                                .map(drop)
                        })
                    })
                    .connect(url)
                    .await
                    .map_err(map_error)?;
                Ok(Self {
                    writer: pool.clone(),
                    reader: pool,
                    hot: None,
                    pg_commit: None,
                    backend,
                })
            }
            Backend::Sqlite => {
                // The writer connects first: it switches the file to WAL before any reader opens.
                let writer = AnyPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            sqlx::raw_sql(dialect::SQLITE_WRITER_PRAGMAS)
                                .execute(conn)
                                .await
                                .map(drop)
                        })
                    })
                    .connect(url)
                    .await
                    .map_err(map_error)?;
                let reader = AnyPoolOptions::new()
                    .max_connections(SQLITE_READER_CONNECTIONS)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            sqlx::raw_sql(dialect::SQLITE_READER_PRAGMAS)
                                .execute(conn)
                                .await
                                .map(drop)
                        })
                    })
                    .connect(url)
                    .await
                    .map_err(map_error)?;
                let path = sqlite_file_path(&writer).await?;
                let hot = SqliteHotPath::open(&path)?;
                Ok(Self {
                    writer,
                    reader,
                    hot: Some(Arc::new(hot)),
                    pg_commit: None,
                    backend,
                })
            }
        }
    }

    /// Applies the embedded migrations of this backend that are not applied yet. Safe to run
    /// from several instances at once on PostgreSQL (sqlx takes an advisory lock).
    pub async fn migrate(&self) -> StoreResult<()> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATOR,
            Backend::Postgres => &POSTGRES_MIGRATOR,
        };
        migrator.run(&self.writer).await.map_err(map_migrate_error)
    }

    /// Which database this store talks to.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes every connection, waiting for checked-out ones to be returned. Further calls
    /// fail with [`StoreError::Unavailable`].
    pub async fn close(&self) {
        if let Some(hot) = &self.hot {
            hot.close();
        }
        self.writer.close().await;
        self.reader.close().await;
    }
}

/// The file of the `main` database behind an SQLite pool, as SQLite itself resolved the URL.
async fn sqlite_file_path(pool: &AnyPool) -> StoreResult<PathBuf> {
    let rows: Vec<(i64, String, String)> = sqlx::query_as("PRAGMA database_list")
        .fetch_all(pool)
        .await
        .map_err(map_error)?;
    rows.into_iter()
        .find(|(_, name, file)| name == "main" && !file.is_empty())
        .map(|(_, _, file)| PathBuf::from(file))
        .ok_or_else(|| StoreError::Other("the SQLite database has no file".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pragma(pool: &AnyPool, sql: &'static str) -> i64 {
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(pool)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn sqlite_pools_get_their_pragmas_and_readers_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let store = SqlStore::connect(&url).await.unwrap();
        store.migrate().await.unwrap();

        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&store.reader)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        for pool in [&store.writer, &store.reader] {
            assert_eq!(pragma(pool, "PRAGMA foreign_keys").await, 1);
            assert_eq!(pragma(pool, "PRAGMA busy_timeout").await, 5000);
            assert_eq!(pragma(pool, "PRAGMA synchronous").await, 1, "NORMAL");
        }
        assert_eq!(pragma(&store.writer, "PRAGMA query_only").await, 0);
        assert_eq!(pragma(&store.reader, "PRAGMA query_only").await, 1);
        let write = sqlx::query("DELETE FROM users")
            .execute(&store.reader)
            .await;
        assert!(write.is_err(), "a reader connection accepted a write");
        sqlx::query("DELETE FROM users")
            .execute(&store.writer)
            .await
            .unwrap();
        store.close().await;
    }
}

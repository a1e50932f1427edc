//! Everything that differs between SQLite and PostgreSQL, in one place.
//!
//! The queries themselves are written once (portable SQL with `$N` placeholders through sqlx's
//! `Any` driver). What remains here: recognising the backend from a URL, the connection
//! pragmas SQLite needs, the row-locking clause only PostgreSQL has, and which database error
//! codes mean "the database is unavailable" rather than "this statement is wrong".

use sqlx::error::DatabaseError;
use std::fmt;

/// The database behind a [`crate::SqlStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// An embedded SQLite file (or an in-memory database, for tests).
    Sqlite,
    /// A PostgreSQL server, possibly shared by several Tessera instances.
    Postgres,
}

impl Backend {
    /// The backend a database URL names, from its scheme: `sqlite:` or `postgres:` /
    /// `postgresql:`. `None` for anything else.
    pub fn from_url(url: &str) -> Option<Self> {
        let (scheme, _) = url.split_once(':')?;
        match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => Some(Backend::Sqlite),
            "postgres" | "postgresql" => Some(Backend::Postgres),
            _ => None,
        }
    }

    /// A short lower-case name (`sqlite`, `postgres`), also the migration directory's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a SQLite URL names an in-memory database (`sqlite::memory:`,
/// `sqlite://:memory:`, or `mode=memory`). Such a database lives as long as its connections,
/// so it gets one long-lived connection shared by reads and writes.
pub(crate) fn is_sqlite_memory(url: &str) -> bool {
    let rest = url.split_once(':').map_or("", |(_, rest)| rest);
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let (path, params) = rest.split_once('?').unwrap_or((rest, ""));
    path == ":memory:" || params.split('&').any(|pair| pair == "mode=memory")
}

/// Pragmas of the single SQLite writer connection. WAL lets readers proceed while the writer
/// writes; `synchronous=NORMAL` is durable across application crashes in WAL mode (a power loss
/// may lose the last commits, never corrupt the file); `busy_timeout` makes a connection wait
/// for a lock held by another process (the admin CLI) instead of failing at once.
pub(crate) const SQLITE_WRITER_PRAGMAS: &str = "PRAGMA journal_mode = WAL; \
     PRAGMA foreign_keys = ON; \
     PRAGMA busy_timeout = 5000; \
     PRAGMA synchronous = NORMAL;";

/// Pragmas of the SQLite reader connections: as the writer's, but `query_only`, so a write
/// sent to the reader pool by mistake fails loudly instead of racing the writer. The journal
/// mode is persistent in the file and was set by the writer, which connects first.
pub(crate) const SQLITE_READER_PRAGMAS: &str = "PRAGMA foreign_keys = ON; \
     PRAGMA busy_timeout = 5000; \
     PRAGMA synchronous = NORMAL; \
     PRAGMA query_only = ON;";

/// Pragmas of an in-memory SQLite database (no WAL: there is no file to share).
pub(crate) const SQLITE_MEMORY_PRAGMAS: &str = "PRAGMA foreign_keys = ON; \
     PRAGMA busy_timeout = 5000;";

/// The outbox claim, with `$lock` spliced into the subquery that picks the message.
macro_rules! claim_outbox_sql {
    ($lock:literal) => {
        concat!(
            "UPDATE outbox SET locked_until = $2 \
             WHERE id = (SELECT id FROM outbox \
                         WHERE status = 'pending' AND next_attempt_at <= $1 \
                           AND (locked_until IS NULL OR locked_until <= $1) \
                         ORDER BY id LIMIT 1",
            $lock,
            ") \
             AND status = 'pending' AND (locked_until IS NULL OR locked_until <= $1) \
             RETURNING id, channel, recipient, payload, created_at, attempts"
        )
    };
}

/// Claims the oldest due, unleased, pending outbox message (`$1` = now, `$2` = lease end),
/// returning it. The outer `WHERE` repeats the conditions, so the update takes effect only if
/// the message is still free when its row is written: two workers never hold the same lease.
///
/// On PostgreSQL the subquery also takes `FOR UPDATE SKIP LOCKED`, so concurrent workers on
/// several instances pass over a row another worker is claiming and pick the next message
/// instead of finding nothing. SQLite has one writer, so claims are serialised anyway.
pub(crate) fn claim_outbox_sql(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => claim_outbox_sql!(""),
        Backend::Postgres => claim_outbox_sql!(" FOR UPDATE SKIP LOCKED"),
    }
}

/// Whether a database error means the database cannot serve requests right now (as opposed to
/// a statement that is wrong): SQLite busy/locked/I/O failures, PostgreSQL connection,
/// authentication, resource and shutdown errors.
pub(crate) fn is_unavailable(error: &dyn DatabaseError) -> bool {
    if let Some(sqlite) = error.try_downcast_ref::<sqlx::sqlite::SqliteError>() {
        // Extended result codes carry the primary code in their low byte.
        let primary = sqlite
            .code()
            .and_then(|code| code.parse::<i64>().ok())
            .map(|code| code & 0xff);
        // SQLITE_BUSY, SQLITE_LOCKED, SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN.
        return matches!(primary, Some(5 | 6 | 10 | 13 | 14));
    }
    if let Some(postgres) = error.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        let code = postgres.code();
        // 08: connection exception; 28: invalid authorization; 53: insufficient resources;
        // 57P01-57P03: admin/crash shutdown, cannot connect now; 3D000: no such database.
        return code.starts_with("08")
            || code.starts_with("28")
            || code.starts_with("53")
            || matches!(code, "57P01" | "57P02" | "57P03" | "3D000");
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_are_recognised_by_scheme() {
        assert_eq!(
            Backend::from_url("sqlite://data/tessera.db?mode=rwc"),
            Some(Backend::Sqlite)
        );
        assert_eq!(Backend::from_url("sqlite::memory:"), Some(Backend::Sqlite));
        assert_eq!(
            Backend::from_url("postgres://u@h/db"),
            Some(Backend::Postgres)
        );
        assert_eq!(
            Backend::from_url("postgresql://u@h/db"),
            Some(Backend::Postgres)
        );
        assert_eq!(Backend::from_url("mysql://u@h/db"), None);
        assert_eq!(Backend::from_url("no scheme"), None);
    }

    #[test]
    fn in_memory_sqlite_urls_are_recognised() {
        assert!(is_sqlite_memory("sqlite::memory:"));
        assert!(is_sqlite_memory("sqlite://:memory:"));
        assert!(is_sqlite_memory("sqlite://x.db?mode=memory"));
        assert!(!is_sqlite_memory("sqlite://x.db?mode=rwc"));
        assert!(!is_sqlite_memory("sqlite:x.db"));
    }

    #[test]
    fn only_postgres_claims_skip_locked_rows() {
        assert!(claim_outbox_sql(Backend::Postgres).contains("FOR UPDATE SKIP LOCKED"));
        assert!(!claim_outbox_sql(Backend::Sqlite).contains("FOR UPDATE"));
        assert!(claim_outbox_sql(Backend::Sqlite).contains("ORDER BY id LIMIT 1)"));
    }
}

//! Turning sqlx errors into [`StoreError`]s.
//!
//! Threat: secrets leaking through error text. Bound values (password hashes, token hashes,
//! emails) must never reach a log line or a response, so no message built here quotes one:
//! decode errors (whose sqlx text can print the offending value) are reduced to the column,
//! configuration errors (whose text can quote the database URL and its password) to a fixed
//! sentence, and database errors to the server's primary message and code, which describe the
//! statement, not the parameters.

use crate::dialect;
use sqlx::migrate::MigrateError;
use tessera_core::store::StoreError;

/// Maps a sqlx error: unique violations become [`StoreError::Conflict`] (with a generic
/// message; callers that know which constraint was hit use [`map_conflict`]), connectivity
/// failures [`StoreError::Unavailable`], and everything else [`StoreError::Other`].
pub(crate) fn map_error(error: sqlx::Error) -> StoreError {
    match error {
        sqlx::Error::Database(db) => {
            if db.is_unique_violation() {
                return StoreError::Conflict("the value is already taken".into());
            }
            let code = db.code().map(|code| code.into_owned()).unwrap_or_default();
            let detail = format!("{} (code {code})", db.message());
            if dialect::is_unavailable(db.as_ref()) {
                StoreError::Unavailable(detail)
            } else {
                StoreError::Other(detail)
            }
        }
        sqlx::Error::Io(io) => StoreError::Unavailable(format!("i/o error: {io}")),
        sqlx::Error::Tls(tls) => StoreError::Unavailable(format!("tls error: {tls}")),
        sqlx::Error::PoolTimedOut => {
            StoreError::Unavailable("timed out waiting for a database connection".into())
        }
        sqlx::Error::PoolClosed => StoreError::Unavailable("the connection pool is closed".into()),
        sqlx::Error::WorkerCrashed => {
            StoreError::Unavailable("the database connection worker crashed".into())
        }
        sqlx::Error::Configuration(_) => {
            StoreError::Other("the database URL or its options are invalid".into())
        }
        sqlx::Error::ColumnDecode { index, .. } => {
            StoreError::Other(format!("cannot decode column {index}"))
        }
        sqlx::Error::Decode(_) => StoreError::Other("cannot decode a value".into()),
        sqlx::Error::Encode(_) => StoreError::Other("cannot encode a value".into()),
        sqlx::Error::Migrate(migrate) => map_migrate_error(*migrate),
        other => StoreError::Other(other.to_string()),
    }
}

/// Like [`map_error`], with `what` as the message of a unique violation (e.g. "email already
/// registered").
pub(crate) fn map_conflict(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |error| match map_error(error) {
        StoreError::Conflict(_) => StoreError::Conflict(what.into()),
        other => other,
    }
}

/// Maps a migration failure; an unreachable database stays [`StoreError::Unavailable`].
pub(crate) fn map_migrate_error(error: MigrateError) -> StoreError {
    match error {
        MigrateError::Execute(inner) => match map_error(inner) {
            StoreError::Other(detail) | StoreError::Conflict(detail) => {
                StoreError::Other(format!("migration failed: {detail}"))
            }
            unavailable => unavailable,
        },
        MigrateError::ExecuteMigration(inner, version) => match map_error(inner) {
            StoreError::Other(detail) | StoreError::Conflict(detail) => {
                StoreError::Other(format!("migration {version} failed: {detail}"))
            }
            unavailable => unavailable,
        },
        other => StoreError::Other(format!("migration failed: {other}")),
    }
}

/// A stored row that does not make a valid domain value (a bug or a hand-edited database).
pub(crate) fn corrupt(what: &str) -> StoreError {
    StoreError::Other(format!("corrupt row: {what}"))
}

/// Maps an error of the SQLite hot path (`rusqlite`, see `sqlite_hot.rs`) like [`map_error`]:
/// a unique violation is a conflict, a locked or busy database is unavailable, anything else
/// is reported by SQLite's message, which describes the statement and never a bound value.
pub(crate) fn map_sqlite_error(error: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    match error {
        rusqlite::Error::SqliteFailure(failure, message) => {
            let detail = format!(
                "{} (code {})",
                message.as_deref().unwrap_or("sqlite error"),
                failure.extended_code
            );
            match failure.code {
                ErrorCode::ConstraintViolation
                    if failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                        || failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
                {
                    StoreError::Conflict("the value is already taken".into())
                }
                ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::CannotOpen
                | ErrorCode::SystemIoFailure
                | ErrorCode::DiskFull => StoreError::Unavailable(detail),
                _ => StoreError::Other(detail),
            }
        }
        rusqlite::Error::FromSqlConversionFailure(index, ..)
        | rusqlite::Error::InvalidColumnType(index, ..) => {
            StoreError::Other(format!("cannot decode column {index}"))
        }
        rusqlite::Error::IntegralValueOutOfRange(index, _) => {
            StoreError::Other(format!("column {index} is out of range"))
        }
        other => StoreError::Other(format!("sqlite: {other}")),
    }
}

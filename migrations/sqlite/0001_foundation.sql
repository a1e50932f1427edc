-- Tessera foundation schema (SQLite).
-- Ids are UUID text, timestamps are unix seconds, token hashes are raw bytes, JSON is text.
-- Keep in step with ../postgres/0001_foundation.sql (same tables, columns and indexes).

CREATE TABLE users (
    id               TEXT    NOT NULL PRIMARY KEY,
    email            TEXT    NOT NULL,
    -- Email::normalized(): uniqueness is case-insensitive.
    email_normalized TEXT    NOT NULL UNIQUE,
    display_name     TEXT    NOT NULL,
    password_hash    TEXT    NOT NULL,
    created_at       INTEGER NOT NULL
) STRICT;

CREATE TABLE sessions (
    id           TEXT    NOT NULL PRIMARY KEY,
    user_id      TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- SHA-256 of the bearer token; the token itself is never stored.
    token_hash   BLOB    NOT NULL UNIQUE,
    state        TEXT    NOT NULL,
    -- JSON array of RFC 8176 method references.
    amr          TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    reauth_until INTEGER,
    ip           TEXT,
    user_agent   TEXT
) STRICT;

CREATE INDEX sessions_user_id ON sessions (user_id);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

-- Keyed by ThrottleKey (a keyed hash of the normalized email), not by account: unknown emails
-- are throttled too, so there is no foreign key to users.
CREATE TABLE password_throttle (
    throttle_key BLOB    NOT NULL PRIMARY KEY CHECK (length(throttle_key) = 32),
    failures     INTEGER NOT NULL,
    locked_until INTEGER
) STRICT;

-- One row: a keyed hash made with the instance pepper when the database was first used, so an
-- instance started with other keys refuses to run.
CREATE TABLE instance_keys (
    id           INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    pepper_check BLOB    NOT NULL,
    created_at   INTEGER NOT NULL
) STRICT;

CREATE TABLE security_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind       TEXT    NOT NULL,
    at         INTEGER NOT NULL,
    ip         TEXT,
    user_agent TEXT,
    actor_id   TEXT,
    -- JSON object; never secrets.
    details    TEXT    NOT NULL
) STRICT;

CREATE INDEX security_events_user_id_id ON security_events (user_id, id);

CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    channel         TEXT    NOT NULL,
    recipient       TEXT    NOT NULL,
    -- JSON of tessera_core::notification::Notification.
    payload         TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    attempts        INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    locked_until    INTEGER,
    last_error      TEXT,
    sent_at         INTEGER
) STRICT;

CREATE INDEX outbox_status_next_attempt_at ON outbox (status, next_attempt_at);

-- Tessera foundation schema (PostgreSQL).
-- Ids are UUID text, timestamps are unix seconds, token hashes are raw bytes, JSON is text.
-- Every integer is BIGINT so that sqlx's Any driver decodes it as i64 on both backends.
-- Keep in step with ../sqlite/0001_foundation.sql (same tables, columns and indexes).

CREATE TABLE users (
    id               TEXT   NOT NULL PRIMARY KEY,
    email            TEXT   NOT NULL,
    -- Email::normalized(): uniqueness is case-insensitive.
    email_normalized TEXT   NOT NULL UNIQUE,
    display_name     TEXT   NOT NULL,
    password_hash    TEXT   NOT NULL,
    created_at       BIGINT NOT NULL
);

CREATE TABLE sessions (
    id           TEXT   NOT NULL PRIMARY KEY,
    user_id      TEXT   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- SHA-256 of the bearer token; the token itself is never stored.
    token_hash   BYTEA  NOT NULL UNIQUE,
    state        TEXT   NOT NULL,
    -- JSON array of RFC 8176 method references.
    amr          TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    reauth_until BIGINT,
    ip           TEXT,
    user_agent   TEXT
);

CREATE INDEX sessions_user_id ON sessions (user_id);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

-- Keyed by ThrottleKey (a keyed hash of the normalized email), not by account: unknown emails
-- are throttled too, so there is no foreign key to users.
CREATE TABLE password_throttle (
    throttle_key BYTEA  NOT NULL PRIMARY KEY CHECK (octet_length(throttle_key) = 32),
    failures     BIGINT NOT NULL,
    locked_until BIGINT
);

-- One row: a keyed hash made with the instance pepper when the database was first used, so an
-- instance started with other keys refuses to run.
CREATE TABLE instance_keys (
    id           BIGINT NOT NULL PRIMARY KEY CHECK (id = 1),
    pepper_check BYTEA  NOT NULL,
    created_at   BIGINT NOT NULL
);

CREATE TABLE security_events (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    TEXT   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind       TEXT   NOT NULL,
    at         BIGINT NOT NULL,
    ip         TEXT,
    user_agent TEXT,
    actor_id   TEXT,
    -- JSON object; never secrets.
    details    TEXT   NOT NULL
);

CREATE INDEX security_events_user_id_id ON security_events (user_id, id);

CREATE TABLE outbox (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel         TEXT   NOT NULL,
    recipient       TEXT   NOT NULL,
    -- JSON of tessera_core::notification::Notification.
    payload         TEXT   NOT NULL,
    status          TEXT   NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    attempts        BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    locked_until    BIGINT,
    last_error      TEXT,
    sent_at         BIGINT
);

CREATE INDEX outbox_status_next_attempt_at ON outbox (status, next_attempt_at);

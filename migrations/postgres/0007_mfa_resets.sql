-- MFA reset links sent by an organization's admin or an operator (postgres).
-- Keep in step with ../sqlite/0007_mfa_resets.sql (same tables, columns and indexes).

-- One row per link. Only the SHA-256 of the link's token is kept. opened_at/session_id: the
-- password was entered and a restricted session made (the link is used up); completed_at: a
-- new factor was confirmed in that session and the old ones removed. A newer request ends
-- the unopened ones (expires_at set to then).
CREATE TABLE mfa_resets (
    id           TEXT   NOT NULL PRIMARY KEY,
    user_id      TEXT   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    org_id       TEXT,
    requested_by TEXT,
    token_hash   BYTEA NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    opened_at    BIGINT,
    session_id   TEXT,
    completed_at BIGINT
);

CREATE INDEX mfa_resets_user_id ON mfa_resets (user_id);
CREATE INDEX mfa_resets_session_id ON mfa_resets (session_id);

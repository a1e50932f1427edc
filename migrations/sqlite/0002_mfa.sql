-- Authenticator-app MFA and backup codes (SQLite).
-- Keep in step with ../postgres/0002_mfa.sql (same tables, columns and indexes).

-- Active second factors. A TOTP factor's secret is sealed with AES-256-GCM (the associated
-- data binds it to user and factor); key_id names the key that sealed it, for rotation.
CREATE TABLE factors (
    id            TEXT    NOT NULL PRIMARY KEY,
    user_id       TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind          TEXT    NOT NULL CHECK (kind IN ('totp', 'sms', 'email', 'webauthn')),
    label         TEXT    NOT NULL,
    secret_sealed BLOB,
    key_id        INTEGER,
    -- The last accepted TOTP time step; only moves forward (`WHERE last_step < $step`).
    last_step     INTEGER,
    preferred     INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    last_used_at  INTEGER
) STRICT;

CREATE INDEX factors_user_id ON factors (user_id);
CREATE INDEX factors_key_id ON factors (key_id);

-- Unfinished TOTP enrollments (15 minutes). factor_id is chosen up front so the sealed
-- secret's associated data already names the factor it will become.
CREATE TABLE totp_enrollments (
    id            TEXT    NOT NULL PRIMARY KEY,
    user_id       TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    factor_id     TEXT    NOT NULL UNIQUE,
    secret_sealed BLOB    NOT NULL,
    key_id        INTEGER NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL
) STRICT;

CREATE INDEX totp_enrollments_user_id ON totp_enrollments (user_id);
CREATE INDEX totp_enrollments_key_id ON totp_enrollments (key_id);

-- Backup codes, stored only as HMAC-SHA256 with the instance pepper.
CREATE TABLE backup_codes (
    user_id    TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash  BLOB    NOT NULL CHECK (length(code_hash) = 32),
    created_at INTEGER NOT NULL,
    used_at    INTEGER,
    PRIMARY KEY (user_id, code_hash)
) STRICT;

-- Sign-in challenges: the password was right, a second factor is owed (5 minutes).
-- report_state: NULL until looked at; 'sent' or 'suppressed' once an unfinished sign-in
-- was reported (at most one email an hour per user).
CREATE TABLE mfa_challenges (
    id           TEXT    NOT NULL PRIMARY KEY,
    token_hash   BLOB    NOT NULL UNIQUE,
    user_id      TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose      TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    completed_at INTEGER,
    ip           TEXT,
    user_agent   TEXT,
    report_state TEXT,
    reported_at  INTEGER
) STRICT;

CREATE INDEX mfa_challenges_user_id ON mfa_challenges (user_id);
CREATE INDEX mfa_challenges_unreported ON mfa_challenges (created_at) WHERE completed_at IS NULL AND report_state IS NULL;

-- Wrong second-factor codes in a row, per account, and the lock they set.
CREATE TABLE second_factor_throttle (
    user_id      TEXT    NOT NULL PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    failures     INTEGER NOT NULL,
    locked_until INTEGER
) STRICT;

-- The exact second factor a session was created with ('totp', 'backup_code'), so a
-- backup-code sign-in can be told apart.
ALTER TABLE sessions ADD COLUMN mfa_method TEXT;

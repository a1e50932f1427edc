-- Authenticator-app MFA and backup codes (PostgreSQL).
-- Keep in step with ../sqlite/0002_mfa.sql (same tables, columns and indexes).

-- Active second factors. A TOTP factor's secret is sealed with AES-256-GCM (the associated
-- data binds it to user and factor); key_id names the key that sealed it, for rotation.
CREATE TABLE factors (
    id            TEXT    NOT NULL PRIMARY KEY,
    user_id       TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind          TEXT    NOT NULL CHECK (kind IN ('totp', 'sms', 'email', 'webauthn')),
    label         TEXT    NOT NULL,
    secret_sealed BYTEA,
    key_id        BIGINT,
    -- The last accepted TOTP time step; only moves forward (`WHERE last_step < $step`).
    last_step     BIGINT,
    preferred     BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL,
    last_used_at  BIGINT
);

CREATE INDEX factors_user_id ON factors (user_id);
CREATE INDEX factors_key_id ON factors (key_id);

-- Unfinished TOTP enrollments (15 minutes). factor_id is chosen up front so the sealed
-- secret's associated data already names the factor it will become.
CREATE TABLE totp_enrollments (
    id            TEXT    NOT NULL PRIMARY KEY,
    user_id       TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    factor_id     TEXT    NOT NULL UNIQUE,
    secret_sealed BYTEA   NOT NULL,
    key_id        BIGINT NOT NULL,
    attempts      BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);

CREATE INDEX totp_enrollments_user_id ON totp_enrollments (user_id);
CREATE INDEX totp_enrollments_key_id ON totp_enrollments (key_id);

-- Backup codes, stored only as HMAC-SHA256 with the instance pepper.
CREATE TABLE backup_codes (
    user_id    TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash  BYTEA   NOT NULL CHECK (octet_length(code_hash) = 32),
    created_at BIGINT NOT NULL,
    used_at    BIGINT,
    PRIMARY KEY (user_id, code_hash)
);

-- Sign-in challenges: the password was right, a second factor is owed (5 minutes).
-- report_state: NULL until looked at; 'sent' or 'suppressed' once an unfinished sign-in
-- was reported (at most one email an hour per user).
CREATE TABLE mfa_challenges (
    id           TEXT    NOT NULL PRIMARY KEY,
    token_hash   BYTEA   NOT NULL UNIQUE,
    user_id      TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose      TEXT    NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    completed_at BIGINT,
    ip           TEXT,
    user_agent   TEXT,
    report_state TEXT,
    reported_at  BIGINT
);

CREATE INDEX mfa_challenges_user_id ON mfa_challenges (user_id);
CREATE INDEX mfa_challenges_unreported ON mfa_challenges (created_at) WHERE completed_at IS NULL AND report_state IS NULL;

-- Wrong second-factor codes in a row, per account, and the lock they set.
CREATE TABLE second_factor_throttle (
    user_id      TEXT    NOT NULL PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    failures     BIGINT NOT NULL,
    locked_until BIGINT
);

-- The exact second factor a session was created with ('totp', 'backup_code'), so a
-- backup-code sign-in can be told apart.
ALTER TABLE sessions ADD COLUMN mfa_method TEXT;

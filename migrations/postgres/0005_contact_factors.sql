-- SMS and email factors: where their codes go, and the enrollments that verify it (postgres).
-- Keep in step with ../sqlite/0005_contact_factors.sql (same tables, columns and indexes).

-- The E.164 number of an SMS factor or the normalized address of an email factor; null for
-- the other kinds. Shown only masked.
ALTER TABLE factors ADD COLUMN destination TEXT;

-- An SMS or email factor being verified: the code sent to the destination (one_time_codes,
-- target = id, purpose 'enrollment') must come back before the factor is active. factor_id
-- is the id the factor will have.
CREATE TABLE contact_enrollments (
    id          TEXT   NOT NULL PRIMARY KEY,
    user_id     TEXT   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    factor_id   TEXT   NOT NULL UNIQUE,
    kind        TEXT   NOT NULL CHECK (kind IN ('sms', 'email')),
    destination TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);

CREATE INDEX contact_enrollments_user_id ON contact_enrollments (user_id);

-- "Is delivery on this channel failing?" reads recent unsent messages that have an error.
CREATE INDEX outbox_channel_created_at ON outbox (channel, created_at);

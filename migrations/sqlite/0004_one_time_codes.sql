-- Codes sent by SMS or email, and the sends that the limits count (sqlite).
-- Keep in step with ../postgres/0004_one_time_codes.sql (same tables, columns and indexes).

-- The live code per (target, purpose): target is the factor or enrollment the code was sent
-- for. Sending a new code replaces the row, which voids the earlier code. Only the keyed hash
-- (tessera_core::otc::code_hash, bound to user, target and purpose) is stored.
CREATE TABLE one_time_codes (
    target     TEXT    NOT NULL,
    purpose    TEXT    NOT NULL CHECK (purpose IN ('enrollment', 'signin', 'reauth')),
    user_id    TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash  BLOB   NOT NULL,
    created_at INTEGER  NOT NULL,
    expires_at INTEGER  NOT NULL,
    -- Wrong tries; the code is void at 3 (`UPDATE … WHERE tries < 3`).
    tries      INTEGER  NOT NULL DEFAULT 0,
    used_at    INTEGER,
    PRIMARY KEY (target, purpose)
);

CREATE INDEX one_time_codes_user_id ON one_time_codes (user_id);

-- One row per code sent, for the send limits (per target, per account per hour, per
-- destination per day). destination_hash is a keyed hash of the E.164 number or normalized
-- address, so the table holds no phone numbers or addresses. Rows older than a day can go.
CREATE TABLE code_sends (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id          TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    target           TEXT    NOT NULL,
    destination_hash BLOB   NOT NULL,
    sent_at          INTEGER  NOT NULL
);

CREATE INDEX code_sends_user_id_sent_at ON code_sends (user_id, sent_at);
CREATE INDEX code_sends_target_sent_at ON code_sends (target, sent_at);
CREATE INDEX code_sends_destination_sent_at ON code_sends (destination_hash, sent_at);

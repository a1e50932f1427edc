-- The TOTP second step of sign-in in one round trip (PostgreSQL).
-- ../sqlite/0003_second_step.sql is its (empty) twin: on SQLite the store's hot path
-- (crates/tessera-store/src/sqlite_hot.rs) runs the same statements in Rust.
--
-- Store::commit_totp_second_step's contract as one function call (one statement, so one
-- transaction when called outside one), in the port's order:
-- 1. a running lock on the account's second step answers 'locked' (nothing written; the row is
--    locked FOR UPDATE so a concurrent failure cannot slip between check and clear);
-- 2. the factor's last accepted step moves forward in one conditional UPDATE, else 'replayed'
--    (nothing written);
-- 3. the challenge is completed in one conditional UPDATE; if it is no longer open, the
--    function raises SQLSTATE TS001, which rolls back step 2 with the rest of the statement
--    (the store reads it as 'challenge closed');
-- 4. the session and its event are inserted (one statement), and the wrong-code count, if
--    any, is cleared.
-- A session whose token hash is taken raises 23505 (unique violation) and the whole call rolls
-- back. Row locks are taken in the order of the generic transaction and of the backup-code
-- step (throttle, factor or code, challenge), so this adds no deadlock cycle. Four statements
-- on the usual path: each statement inside a function costs an executor start, which the
-- benchmark's profile showed as the function's main cost.
CREATE FUNCTION tessera_commit_totp_step(
    p_challenge_id   TEXT,
    p_factor_id      TEXT,
    p_step           BIGINT,
    p_now            BIGINT,
    s_id             TEXT,
    s_user_id        TEXT,
    s_token_hash     BYTEA,
    s_state          TEXT,
    s_amr            TEXT,
    s_created_at     BIGINT,
    s_last_seen_at   BIGINT,
    s_expires_at     BIGINT,
    s_reauth_until   BIGINT,
    s_ip             TEXT,
    s_user_agent     TEXT,
    s_mfa_method     TEXT,
    e_user_id        TEXT,
    e_kind           TEXT,
    e_at             BIGINT,
    e_ip             TEXT,
    e_user_agent     TEXT,
    e_actor_id       TEXT,
    e_details        TEXT,
    OUT outcome      TEXT,
    OUT locked_until BIGINT
) LANGUAGE plpgsql AS $$
DECLARE
    v_throttled BOOLEAN;
BEGIN
    SELECT t.locked_until INTO locked_until
      FROM second_factor_throttle t WHERE t.user_id = s_user_id FOR UPDATE;
    v_throttled := FOUND;
    IF locked_until IS NOT NULL AND p_now < locked_until THEN
        outcome := 'locked';
        RETURN;
    END IF;
    locked_until := NULL;

    UPDATE factors SET last_step = p_step, last_used_at = p_now
     WHERE id = p_factor_id AND user_id = s_user_id
       AND (last_step IS NULL OR last_step < p_step);
    IF NOT FOUND THEN
        outcome := 'replayed';
        RETURN;
    END IF;

    UPDATE mfa_challenges SET completed_at = p_now
     WHERE id = p_challenge_id AND completed_at IS NULL AND expires_at > p_now;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the challenge is no longer open' USING ERRCODE = 'TS001';
    END IF;

    WITH session AS (
        INSERT INTO sessions (id, user_id, token_hash, state, amr, created_at, last_seen_at,
                              expires_at, reauth_until, ip, user_agent, mfa_method)
        VALUES (s_id, s_user_id, s_token_hash, s_state, s_amr, s_created_at, s_last_seen_at,
                s_expires_at, s_reauth_until, s_ip, s_user_agent, s_mfa_method)
    )
    INSERT INTO security_events (user_id, kind, at, ip, user_agent, actor_id, details)
    VALUES (e_user_id, e_kind, e_at, e_ip, e_user_agent, e_actor_id, e_details);

    IF v_throttled THEN
        DELETE FROM second_factor_throttle WHERE user_id = s_user_id;
    END IF;
    outcome := 'committed';
END
$$;

-- Group commit: several passed steps (a JSON array of tessera_commit_totp_step's arguments plus
-- `idx`) in one call and one transaction, each in its own subtransaction (the BEGIN …
-- EXCEPTION block), so one step's refusal or conflict undoes only that step. Steps run in user
-- order: two batches (from two instances) take their row locks in the same order and cannot
-- deadlock. The store keeps batches under 64 steps, PostgreSQL's per-transaction cache of
-- subtransaction ids. Byte strings travel hex-encoded.
CREATE FUNCTION tessera_commit_totp_steps(p_steps JSONB)
RETURNS TABLE (idx BIGINT, outcome TEXT, locked_until BIGINT) LANGUAGE plpgsql AS $$
DECLARE
    s RECORD;
BEGIN
    FOR s IN
        SELECT * FROM jsonb_to_recordset(p_steps) AS x(
            idx BIGINT, challenge_id TEXT, factor_id TEXT, step BIGINT, now BIGINT,
            s_id TEXT, s_user_id TEXT, s_token_hash TEXT, s_state TEXT, s_amr TEXT,
            s_created_at BIGINT, s_last_seen_at BIGINT, s_expires_at BIGINT,
            s_reauth_until BIGINT, s_ip TEXT, s_user_agent TEXT, s_mfa_method TEXT,
            e_user_id TEXT, e_kind TEXT, e_at BIGINT, e_ip TEXT, e_user_agent TEXT,
            e_actor_id TEXT, e_details TEXT)
        ORDER BY x.s_user_id, x.idx
    LOOP
        idx := s.idx;
        BEGIN
            SELECT r.outcome, r.locked_until INTO outcome, locked_until
              FROM tessera_commit_totp_step(
                  s.challenge_id, s.factor_id, s.step, s.now, s.s_id, s.s_user_id,
                  decode(s.s_token_hash, 'hex'), s.s_state, s.s_amr, s.s_created_at,
                  s.s_last_seen_at, s.s_expires_at, s.s_reauth_until, s.s_ip, s.s_user_agent,
                  s.s_mfa_method, s.e_user_id, s.e_kind, s.e_at, s.e_ip, s.e_user_agent,
                  s.e_actor_id, s.e_details) r;
        EXCEPTION
            WHEN SQLSTATE 'TS001' THEN
                outcome := 'challenge_closed';
                locked_until := NULL;
            WHEN unique_violation THEN
                outcome := 'conflict';
                locked_until := NULL;
        END;
        RETURN NEXT;
    END LOOP;
END
$$;

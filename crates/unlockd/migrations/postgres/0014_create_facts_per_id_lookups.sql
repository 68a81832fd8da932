-- The create's facts function again (0013), with the account's unlocks and in-flight guards
-- looked up id by id (a correlated subquery per requested id, one primary-key probe each)
-- instead of joined (scalar subqueries, not EXISTS, which PostgreSQL may run as one hashed
-- pass over all the account's rows). With statistics that say those tables are small (a new database, or
-- this machine's PostgreSQL without autovacuum), the join was planned as a hash join that
-- read every unlock and every guard of the account and hashed them, on every create: perf
-- showed MultiExecHash, heap_hot_search_buffer and visibility checks on top, and one busy
-- account's creates slowed down as its guards grew (153 creates/s with one account against
-- 561/s spread over 16). A subquery in the select list is never turned into a join, so each
-- id costs one probe of (account_id, kind, personnel_id) whatever the statistics say.
CREATE OR REPLACE FUNCTION unlockd_locked_create_facts(
    p_event_ref TEXT, p_ids TEXT[], p_injected BIGINT, p_account TEXT, p_kind TEXT)
RETURNS TABLE (f_tag TEXT, f_id TEXT, f_text TEXT, f_a BIGINT, f_b BIGINT, f_c BIGINT)
LANGUAGE plpgsql VOLATILE
SET plan_cache_mode = force_custom_plan
AS $$
DECLARE
    v_event TEXT;
BEGIN
    SELECT ev.id INTO v_event FROM events ev
    WHERE ev.id = p_event_ref OR ev.event_id = p_event_ref
    ORDER BY (ev.id = p_event_ref) DESC, ev.id LIMIT 1;
    IF v_event IS NULL THEN
        RETURN;
    END IF;
    -- NO KEY UPDATE leaves inserts that reference the account (grants, tasks) unblocked.
    PERFORM 1 FROM accounts a WHERE a.id = p_account FOR NO KEY UPDATE;
    RETURN QUERY
    WITH bk AS (SELECT cb.id, cb.kind, cb.expires_at, cb.created_at, cb.balance
                FROM credit_buckets cb
                WHERE cb.account_id = p_account AND cb.balance > 0 ORDER BY cb.id FOR UPDATE),
    per_id AS (
        SELECT want.id,
               (SELECT true FROM personnel p WHERE p.id = want.id) AS present,
               (SELECT true FROM personnel_events pe
                WHERE pe.event_id = v_event AND pe.personnel_id = want.id LIMIT 1) AS linked,
               (SELECT u.status = 'unlocked' FROM unlocks u
                WHERE u.account_id = p_account AND u.kind = p_kind
                  AND u.personnel_id = want.id) AS unlocked,
               (SELECT f.task_id FROM inflight f
                WHERE f.account_id = p_account AND f.kind = p_kind
                  AND f.personnel_id = want.id) AS in_flight_task
        FROM unnest(p_ids) AS want(id))
    SELECT 'n'::text, ''::text, NULL::text, unlockd_now_ms(p_injected), NULL::bigint, NULL::bigint
    UNION ALL SELECT 'v', v_event, NULL, NULL, NULL, NULL
    UNION ALL SELECT 'e', per_id.id, NULL, NULL, NULL, NULL FROM per_id WHERE per_id.present IS TRUE
    UNION ALL SELECT 'l', per_id.id, NULL, NULL, NULL, NULL FROM per_id WHERE per_id.linked IS TRUE
    UNION ALL SELECT 'b', bk.id, bk.kind, bk.expires_at, bk.created_at, bk.balance FROM bk
    UNION ALL SELECT 'u', per_id.id, NULL, NULL, NULL, NULL FROM per_id WHERE per_id.unlocked IS TRUE
    UNION ALL SELECT 'f', per_id.id, per_id.in_flight_task, NULL, NULL, NULL
        FROM per_id WHERE per_id.in_flight_task IS NOT NULL;
END
$$;

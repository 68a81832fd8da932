-- The create's facts function again (0010), planned afresh on every call. PL/pgSQL caches
-- a generic plan after a few calls, made with the statistics of that moment: on a new
-- database (or without autovacuum's ANALYZE) that plan read every in-flight guard and
-- unlock of the account, and every link of the event, and filtered them by the ids, so a
-- busy account's creates slowed down as its guards grew (perf: texteq and
-- ExecEvalScalarArrayOp on top of PostgreSQL's profile). A custom plan sees the ids and the
-- tables' current size; and each id is looked up by its whole key (a join with the ids)
-- rather than the account's or event's rows being filtered by an id list.
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
                WHERE cb.account_id = p_account AND cb.balance > 0 ORDER BY cb.id FOR UPDATE)
    SELECT 'n'::text, ''::text, NULL::text, unlockd_now_ms(p_injected), NULL::bigint, NULL::bigint
    UNION ALL SELECT 'v', v_event, NULL, NULL, NULL, NULL
    UNION ALL SELECT 'e', p.id, NULL, NULL, NULL, NULL
        FROM unnest(p_ids) AS want(id) JOIN personnel p ON p.id = want.id
    UNION ALL SELECT 'l', pe.personnel_id, NULL, NULL, NULL, NULL
        FROM unnest(p_ids) AS want(id)
        JOIN personnel_events pe ON pe.event_id = v_event AND pe.personnel_id = want.id
    UNION ALL SELECT 'b', bk.id, bk.kind, bk.expires_at, bk.created_at, bk.balance FROM bk
    UNION ALL SELECT 'u', u.personnel_id, NULL, NULL, NULL, NULL
        FROM unnest(p_ids) AS want(id)
        JOIN unlocks u ON u.account_id = p_account AND u.kind = p_kind AND u.personnel_id = want.id
        WHERE u.status = 'unlocked'
    UNION ALL SELECT 'f', f.personnel_id, f.task_id, NULL, NULL, NULL
        FROM unnest(p_ids) AS want(id)
        JOIN inflight f ON f.account_id = p_account AND f.kind = p_kind AND f.personnel_id = want.id;
END
$$;

-- A create's facts in one round trip: resolve the event, lock the account, read the
-- account's facts. Being a VOLATILE PL/pgSQL function, each statement in it takes a new
-- snapshot, so the facts read after the lock is granted include everything the previous
-- holder of the lock committed (a single statement would read them on the snapshot taken
-- before it waited). Rows are tagged like the client-side statements they replace:
-- 'n' the database's time, 'v' the event, 'e' the id exists, 'l' linked to the event,
-- 'b' a spendable bucket (locked, in id order), 'u' already unlocked, 'f' in flight.
CREATE FUNCTION unlockd_locked_create_facts(
    p_event_ref TEXT, p_ids TEXT[], p_injected BIGINT, p_account TEXT, p_kind TEXT)
RETURNS TABLE (f_tag TEXT, f_id TEXT, f_text TEXT, f_a BIGINT, f_b BIGINT, f_c BIGINT)
LANGUAGE plpgsql VOLATILE AS $$
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
    UNION ALL SELECT 'e', p.id, NULL, NULL, NULL, NULL FROM personnel p WHERE p.id = ANY(p_ids)
    UNION ALL SELECT 'l', pe.personnel_id, NULL, NULL, NULL, NULL FROM personnel_events pe
        WHERE pe.event_id = v_event AND pe.personnel_id = ANY(p_ids)
    UNION ALL SELECT 'b', bk.id, bk.kind, bk.expires_at, bk.created_at, bk.balance FROM bk
    UNION ALL SELECT 'u', u.personnel_id, NULL, NULL, NULL, NULL FROM unlocks u
        WHERE u.account_id = p_account AND u.kind = p_kind AND u.status = 'unlocked'
          AND u.personnel_id = ANY(p_ids)
    UNION ALL SELECT 'f', f.personnel_id, f.task_id, NULL, NULL, NULL FROM inflight f
        WHERE f.account_id = p_account AND f.kind = p_kind AND f.personnel_id = ANY(p_ids);
END
$$;

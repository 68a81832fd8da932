-- State shared by every process on this database: rate-limit buckets, and a change feed
-- for tasks (LISTEN unlockd_tasks) so that long polls and idle workers of one process wake
-- when another process changes a task. Both are hints and limits, not billing data.

-- One token bucket per scope and key (`key:<id>`, `ip:<addr>`); the refill rule is the
-- domain's (`domain::rate::take_token`), applied under this row's lock. Unlogged: no WAL,
-- no fsync; after a server crash the buckets start full again.
CREATE UNLOGGED TABLE rate_buckets (
    bucket     TEXT COLLATE "C" PRIMARY KEY,
    tokens     DOUBLE PRECISION,     -- NULL: never taken from (a full bucket)
    updated_ms BIGINT,
    per_minute BIGINT NOT NULL
);
CREATE INDEX rate_buckets_by_age ON rate_buckets (updated_ms);

-- `work:<task>` when a task becomes claimable (created, or its lease given back);
-- `task:<task>` when its state or progress changes (lease renewals say nothing).
-- Notifications are sent at commit, and only then.
CREATE FUNCTION tasks_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM pg_notify('unlockd_tasks', 'work:' || NEW.id);
    ELSE
        IF NEW.status IS DISTINCT FROM OLD.status OR NEW.updated_at IS DISTINCT FROM OLD.updated_at THEN
            PERFORM pg_notify('unlockd_tasks', 'task:' || NEW.id);
        END IF;
        IF NEW.status = 'processing' AND NEW.lease_owner IS NULL AND OLD.lease_owner IS NOT NULL THEN
            PERFORM pg_notify('unlockd_tasks', 'work:' || NEW.id);
        END IF;
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER tasks_notify AFTER INSERT OR UPDATE ON tasks
    FOR EACH ROW EXECUTE FUNCTION tasks_notify();

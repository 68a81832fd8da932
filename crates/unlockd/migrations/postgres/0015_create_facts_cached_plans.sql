-- The create's facts function keeps its statements' plans (PostgreSQL's default plan cache
-- mode) instead of planning them afresh on every call. 0010 forced custom plans so the
-- planner saw each call's ids; since 0014 every per-id lookup is a scalar subquery (one
-- primary-key probe whatever the values), so a generic plan is the same plan, and planning
-- it on every create showed in perf of one account's creates (parser and planner functions
-- among PostgreSQL's top samples).
ALTER FUNCTION unlockd_locked_create_facts(TEXT, TEXT[], BIGINT, TEXT, TEXT) RESET plan_cache_mode;

-- Lease and expiry times come from the database's clock, so workers on hosts whose clocks
-- disagree still agree on when a lease or a bucket runs out. `injected` is a test clock's
-- time (NULL in production). statement_timestamp() is one value for the whole statement.
CREATE FUNCTION unlockd_now_ms(injected BIGINT) RETURNS BIGINT
    LANGUAGE sql STABLE
    AS 'SELECT COALESCE(injected, (extract(epoch FROM statement_timestamp()) * 1000)::bigint)';

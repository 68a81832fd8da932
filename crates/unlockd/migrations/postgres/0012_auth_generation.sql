-- A counter that moves whenever a key or an account's disabled flag changes, in the same
-- transaction as the change, whichever process makes it: servers cache key lookups and
-- forget them when they see it move (store/auth_cache.rs).
CREATE TABLE auth_generation (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    generation BIGINT NOT NULL
);
INSERT INTO auth_generation (id, generation) VALUES (1, 0);

CREATE FUNCTION unlockd_bump_auth_generation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE auth_generation SET generation = generation + 1 WHERE id = 1;
    RETURN NULL;
END;
$$;

CREATE TRIGGER api_keys_change_auth AFTER UPDATE OF digest, account_id, revoked_at OR DELETE
    ON api_keys FOR EACH STATEMENT EXECUTE FUNCTION unlockd_bump_auth_generation();

CREATE TRIGGER accounts_change_auth AFTER UPDATE OF id, disabled_at OR DELETE
    ON accounts FOR EACH STATEMENT EXECUTE FUNCTION unlockd_bump_auth_generation();

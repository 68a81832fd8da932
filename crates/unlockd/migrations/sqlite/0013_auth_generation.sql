-- A counter that moves whenever a key or an account's disabled flag changes, in the same
-- transaction as the change, whichever process makes it: servers cache key lookups and
-- forget them when they see it move (store/auth_cache.rs).
CREATE TABLE auth_generation (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    generation INTEGER NOT NULL
);
INSERT INTO auth_generation (id, generation) VALUES (1, 0);

CREATE TRIGGER api_keys_change_auth AFTER UPDATE OF digest, account_id, revoked_at ON api_keys
BEGIN
    UPDATE auth_generation SET generation = generation + 1 WHERE id = 1;
END;

CREATE TRIGGER api_keys_delete_auth AFTER DELETE ON api_keys
BEGIN
    UPDATE auth_generation SET generation = generation + 1 WHERE id = 1;
END;

CREATE TRIGGER accounts_change_auth AFTER UPDATE OF id, disabled_at ON accounts
BEGIN
    UPDATE auth_generation SET generation = generation + 1 WHERE id = 1;
END;

CREATE TRIGGER accounts_delete_auth AFTER DELETE ON accounts
BEGIN
    UPDATE auth_generation SET generation = generation + 1 WHERE id = 1;
END;

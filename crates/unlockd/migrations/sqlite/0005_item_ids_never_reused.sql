-- Task item ids are never handed out twice. Without AUTOINCREMENT, SQLite gives a new row
-- max(id) + 1, so once pruning removed the newest items their ids came back while the
-- ledger still named them: the next hold from the same bucket broke the one-hold-per-item
-- rule and `ledger verify` joined old entries to new items. The table is rebuilt with
-- AUTOINCREMENT, and its sequence continues above every id the ledger has ever seen.

CREATE TABLE task_items_v2 (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id      TEXT NOT NULL REFERENCES tasks (id),
    position     INTEGER NOT NULL,
    personnel_id TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('pending', 'processing', 'unlocked', 'failed')),
    value        TEXT,
    error_code   TEXT,
    charged      INTEGER NOT NULL DEFAULT 0,
    updated_at   INTEGER NOT NULL,
    UNIQUE (task_id, personnel_id)
);
INSERT INTO task_items_v2 (id, task_id, position, personnel_id, status, value, error_code, charged, updated_at)
    SELECT id, task_id, position, personnel_id, status, value, error_code, charged, updated_at FROM task_items;
DROP TABLE task_items;
ALTER TABLE task_items_v2 RENAME TO task_items;

DELETE FROM sqlite_sequence WHERE name IN ('task_items', 'task_items_v2');
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'task_items', MAX(
        COALESCE((SELECT MAX(id) FROM task_items), 0),
        COALESCE((SELECT MAX(item_id) FROM ledger), 0));

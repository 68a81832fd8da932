-- One row that /readyz rewrites: readiness means a write can be committed (a full disk, a
-- read-only server or a standby fails it), not only that reads work.
CREATE TABLE readiness (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    checked_at BIGINT NOT NULL
);
INSERT INTO readiness (id, checked_at) VALUES (1, 0);

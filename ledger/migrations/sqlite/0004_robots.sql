-- Robots: the security team's long-lived registry credentials for machines (issue 21 #4).
-- SQLite dialect. Keep equivalent to ../postgres/0004_robots.sql.
--
-- The ledger signs a robot's token once, when it is created, and never stores it: a row
-- holds what listing and revoking need. Deleting a robot also revokes its subject
-- ('robot:' || id) in the revocations table, in the same transaction, so every gateway
-- refuses it within one refresh of the feed. Last use comes from the issuances table
-- (subject, time), which issuances_subject_time indexes.

CREATE TABLE robots (
    id           TEXT   NOT NULL PRIMARY KEY,            -- 32 hex digits; sub = 'robot:' || id
    name         TEXT   NOT NULL,
    tenant       TEXT,
    plans        TEXT   NOT NULL,                        -- JSON array of plan names
    repositories TEXT   NOT NULL,                        -- JSON array of {type?, pattern, actions}
    created_at   BIGINT NOT NULL,
    created_by   TEXT   NOT NULL,
    expires_at   BIGINT NOT NULL,
    deleted_at   BIGINT,
    deleted_by   TEXT
);

CREATE UNIQUE INDEX robots_active_name ON robots (name) WHERE deleted_at IS NULL;
CREATE INDEX robots_created ON robots (created_at, id);

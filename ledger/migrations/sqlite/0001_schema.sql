-- Issuance ledger schema, SQLite dialect. Keep equivalent to ../postgres/0001_schema.sql
-- (same tables, columns, indexes; a test compares the names).

CREATE TABLE issuances (
    id               TEXT    NOT NULL PRIMARY KEY,  -- minted token jti, or a request id for a refusal
    time             INTEGER NOT NULL,              -- decision time, unix seconds
    decision         TEXT    NOT NULL CHECK (decision IN ('issued', 'rejected')),
    reason           TEXT,
    subject          TEXT,
    client_id        TEXT,
    plan             TEXT,
    license          TEXT,
    tenant           TEXT,
    service          TEXT,
    requested        TEXT    NOT NULL DEFAULT '[]', -- JSON array of scope strings
    granted          TEXT    NOT NULL DEFAULT '[]', -- JSON array of scope strings
    iat              INTEGER,
    exp              INTEGER,
    kid              TEXT,
    binding          TEXT,                          -- sender constraint: jkt | x5t#S256 | none (optionally :thumbprint)
    "grant"          TEXT    CHECK ("grant" IN ('get', 'password', 'refresh_token')),
    refresh_token_id TEXT,
    gateway          TEXT,
    received_at      INTEGER NOT NULL               -- when the ledger stored it, unix seconds
);

CREATE INDEX issuances_time          ON issuances (time, id);
CREATE INDEX issuances_subject_time  ON issuances (subject, time, id);
CREATE INDEX issuances_license_time  ON issuances (license, time, id);
CREATE INDEX issuances_service_time  ON issuances (service, time, id);
CREATE INDEX issuances_decision_time ON issuances (decision, time, id);

CREATE TABLE revocations (
    id         TEXT    NOT NULL PRIMARY KEY,
    kind       TEXT    NOT NULL CHECK (kind IN ('license', 'subject', 'refreshToken', 'tenant')),
    value      TEXT    NOT NULL,
    reason     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    created_by TEXT    NOT NULL,
    deleted_at INTEGER,
    deleted_by TEXT
);

-- One active revocation per (kind, value).
CREATE UNIQUE INDEX revocations_active ON revocations (kind, value) WHERE deleted_at IS NULL;

CREATE TABLE revocation_events (
    id            TEXT    NOT NULL PRIMARY KEY,
    revocation_id TEXT    NOT NULL REFERENCES revocations (id),
    action        TEXT    NOT NULL CHECK (action IN ('create', 'delete')),
    kind          TEXT    NOT NULL,
    value         TEXT    NOT NULL,
    actor         TEXT    NOT NULL,               -- the admin token's sub
    reason        TEXT,
    at            INTEGER NOT NULL
);

CREATE INDEX revocation_events_revocation ON revocation_events (revocation_id, at);
CREATE INDEX revocation_events_at         ON revocation_events (at);

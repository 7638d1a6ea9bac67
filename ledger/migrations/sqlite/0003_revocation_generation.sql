-- A counter every revocation create and lift moves, in its own transaction (issue 25 #4).
-- SQLite dialect. Keep equivalent to ../postgres/0003_revocation_generation.sql.
--
-- The ledger rebuilds the digest feed (GET /v1/revocations/feed?form=digests) only when
-- the generation changed, and every write takes this row first: on PostgreSQL that orders
-- concurrent creates, so the bound on active revocations (--max-revocations) holds
-- exactly (SQLite's write transactions are serial already). Whoever writes the
-- revocations table by hand (a bulk import) adds 1 to generation in the same transaction.

CREATE TABLE revocation_generation (
    id         INTEGER NOT NULL PRIMARY KEY,             -- always 1: one row
    generation BIGINT  NOT NULL                          -- moves on every create and lift
);

INSERT INTO revocation_generation (id, generation) VALUES (1, 0);

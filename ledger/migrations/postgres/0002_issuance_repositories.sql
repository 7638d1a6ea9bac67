-- The repositories each issuance names, for GET /v1/issuances?repository=NAME (issue 25:
-- the search used to look for `"repository:NAME:` inside the stored JSON text, so any
-- scope text holding it matched). PostgreSQL dialect. Keep equivalent to
-- ../sqlite/0002_issuance_repositories.sql (a test compares the names, and one compares
-- this backfill with what ingest writes).
--
-- A scope names repository NAME when it is `TYPE:NAME:ACTIONS` with TYPE `repository` or
-- `repository(CLASS)` (CLASS: ASCII letters and digits), NAME between the first and the
-- last `:` and not empty: as the filter parses scopes (`model::scope_repository`).

CREATE TABLE issuance_repositories (
    repository    TEXT    COLLATE "C" NOT NULL,          -- a repository a requested or granted scope names
    issuance_time BIGINT  NOT NULL,                      -- issuances.time: the index serves the newest-first order
    issuance_id   TEXT    COLLATE "C" NOT NULL REFERENCES issuances (id)
);

CREATE UNIQUE INDEX issuance_repositories_key ON issuance_repositories (repository, issuance_time, issuance_id);

-- The issuances stored before this migration.
WITH scopes (id, time, scope) AS (
    SELECT i.id, i.time, s FROM issuances AS i, json_array_elements_text(CAST(i.requested AS json)) AS s
    UNION ALL
    SELECT i.id, i.time, s FROM issuances AS i, json_array_elements_text(CAST(i.granted AS json)) AS s
),
cuts (id, time, scope, first_colon, last_colon) AS (
    SELECT id, time, scope, strpos(scope, ':'), length(scope) - strpos(reverse(scope), ':') + 1
    FROM scopes
    WHERE strpos(scope, ':') > 0
),
parts (id, time, type, name) AS (
    SELECT id, time, substr(scope, 1, first_colon - 1),
           substr(scope, first_colon + 1, last_colon - first_colon - 1)
    FROM cuts
    WHERE last_colon > first_colon + 1
)
INSERT INTO issuance_repositories (repository, issuance_time, issuance_id)
SELECT DISTINCT name, time, id FROM parts
WHERE type = 'repository'
   OR type ~ '^repository\([A-Za-z0-9]+\)$';

-- The repositories each issuance names, for GET /v1/issuances?repository=NAME (issue 25:
-- the search used to look for `"repository:NAME:` inside the stored JSON text, so any
-- scope text holding it matched). SQLite dialect. Keep equivalent to
-- ../postgres/0002_issuance_repositories.sql (a test compares the names, and one compares
-- this backfill with what ingest writes).
--
-- A scope names repository NAME when it is `TYPE:NAME:ACTIONS` with TYPE `repository` or
-- `repository(CLASS)` (CLASS: ASCII letters and digits), NAME between the first and the
-- last `:` and not empty: as the filter parses scopes (`model::scope_repository`).

CREATE TABLE issuance_repositories (
    repository    TEXT    NOT NULL,                      -- a repository a requested or granted scope names
    issuance_time INTEGER NOT NULL,                      -- issuances.time: the index serves the newest-first order
    issuance_id   TEXT    NOT NULL REFERENCES issuances (id)
);

CREATE UNIQUE INDEX issuance_repositories_key ON issuance_repositories (repository, issuance_time, issuance_id);

-- The issuances stored before this migration. `rtrim(s, replace(s, ':', ''))` is `s` up to
-- its last `:` (SQLite has no reverse search), so its length is the last colon's position.
WITH scopes (id, time, scope) AS (
    SELECT i.id, i.time, j.value FROM issuances AS i, json_each(i.requested) AS j
    UNION ALL
    SELECT i.id, i.time, j.value FROM issuances AS i, json_each(i.granted) AS j
),
cuts (id, time, scope, first_colon, last_colon) AS (
    SELECT id, time, scope, instr(scope, ':'), length(rtrim(scope, replace(scope, ':', '')))
    FROM scopes
    WHERE instr(scope, ':') > 0
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
   OR (type GLOB 'repository(?*)'
       AND substr(type, 12, length(type) - 12) NOT GLOB '*[^A-Za-z0-9]*');

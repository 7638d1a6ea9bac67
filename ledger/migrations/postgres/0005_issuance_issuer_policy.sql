-- The issuer that verified each caller's token and the trust policy that matched
-- (issue 21 #7): the records of gateways with several issuers carry them.
-- PostgreSQL dialect. Keep equivalent to ../sqlite/0005_issuance_issuer_policy.sql.
--
-- Both optional: records stored before this migration, and the records of one-Authority
-- gateways (which do not name the issuer), leave them NULL. Searches filter on them
-- (issuer, policy) through the time index of the other filters; no index of their own.

ALTER TABLE issuances ADD COLUMN issuer TEXT;
ALTER TABLE issuances ADD COLUMN policy TEXT;

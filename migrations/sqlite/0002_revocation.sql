-- Revocation (issue 3); see migrations/postgres/0002_revocation.sql for the why.
-- aws_revocation_pending: revocation sets it, the push to AWS IoT clears it once AWS has marked
-- the certificate REVOKED. SQLite cannot add a table constraint to an existing table, so the
-- CHECK that the PostgreSQL schema adds as a table constraint is a column constraint here (in
-- SQLite the two behave the same).
ALTER TABLE issued_certificates
    ADD COLUMN aws_revocation_pending BOOLEAN NOT NULL DEFAULT 0
        CHECK (status = 'revoked' OR NOT aws_revocation_pending);

CREATE INDEX issued_certificates_aws_revocation_pending ON issued_certificates (revoked_at)
    WHERE aws_revocation_pending;

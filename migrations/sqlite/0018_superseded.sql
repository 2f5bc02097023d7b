-- Renewal (EST simplereenroll): see migrations/postgres/0018_superseded.sql for the why.
--
-- SQLite cannot change a CHECK constraint, so the table is rebuilt. Migrations run in a
-- transaction with foreign keys on, where they cannot be switched off; so the rows of the two
-- tables that refer to it (thing_claims, idempotency_keys) wait in temporary tables while it is
-- rebuilt, and come back (checked against the new table) once it is in place.
CREATE TEMP TABLE thing_claims_0018 AS SELECT * FROM thing_claims;
CREATE TEMP TABLE idempotency_keys_0018 AS SELECT * FROM idempotency_keys;
DELETE FROM thing_claims;
DELETE FROM idempotency_keys;
CREATE TABLE issued_certificates_0018 (
    serial                  TEXT PRIMARY KEY CHECK (length(serial) = 40),
    ca_id                   TEXT NOT NULL REFERENCES certificate_authorities (id),
    thing_name              TEXT NOT NULL,
    country                 TEXT,
    subject                 TEXT NOT NULL,
    key_algorithm           TEXT NOT NULL,
    spki_sha256             TEXT NOT NULL,
    aws_certificate_id      TEXT NOT NULL UNIQUE,
    certificate_der         BLOB NOT NULL,
    not_before              TEXT NOT NULL,
    not_after               TEXT NOT NULL,
    issued_at               TEXT NOT NULL,
    station                 TEXT NOT NULL,
    request_id              TEXT,
    status                  TEXT NOT NULL DEFAULT 'active'
        CHECK (status IN ('active', 'revoked', 'superseded')),
    revoked_at              TEXT,
    revocation_reason       TEXT,
    aws_revocation_pending  BOOLEAN NOT NULL DEFAULT 0
        CHECK (status = 'revoked' OR NOT aws_revocation_pending),
    aws_status              TEXT,
    aws_first_seen_at       TEXT,
    aws_synced_at           TEXT,
    revocation_job          TEXT,
    channel                 TEXT NOT NULL DEFAULT 'api',
    superseded_at           TEXT,
    superseded_by           TEXT,
    CHECK ((status = 'revoked') = (revoked_at IS NOT NULL)),
    CHECK ((superseded_at IS NULL) = (superseded_by IS NULL)
           AND (status <> 'superseded' OR superseded_by IS NOT NULL))
);
INSERT INTO issued_certificates_0018 (serial, ca_id, thing_name, country, subject, key_algorithm,
    spki_sha256, aws_certificate_id, certificate_der, not_before, not_after, issued_at, station,
    request_id, status, revoked_at, revocation_reason, aws_revocation_pending, aws_status,
    aws_first_seen_at, aws_synced_at, revocation_job, channel)
SELECT serial, ca_id, thing_name, country, subject, key_algorithm, spki_sha256,
    aws_certificate_id, certificate_der, not_before, not_after, issued_at, station, request_id,
    status, revoked_at, revocation_reason, aws_revocation_pending, aws_status, aws_first_seen_at,
    aws_synced_at, revocation_job, channel
FROM issued_certificates;
DROP TABLE issued_certificates;
ALTER TABLE issued_certificates_0018 RENAME TO issued_certificates;
CREATE INDEX issued_certificates_issued_at ON issued_certificates (issued_at DESC, serial DESC);
CREATE INDEX issued_certificates_thing_name ON issued_certificates (thing_name, issued_at DESC);
CREATE INDEX issued_certificates_country ON issued_certificates (country, issued_at DESC);
CREATE INDEX issued_certificates_station ON issued_certificates (station, issued_at DESC);
CREATE INDEX issued_certificates_ca ON issued_certificates (ca_id, issued_at DESC);
CREATE INDEX issued_certificates_revoked ON issued_certificates (revoked_at) WHERE status = 'revoked';
CREATE INDEX issued_certificates_aws_revocation_pending ON issued_certificates (revoked_at)
    WHERE aws_revocation_pending;
CREATE INDEX issued_certificates_aws_status
    ON issued_certificates (aws_status, issued_at DESC, serial DESC);
CREATE INDEX issued_certificates_revocation_job ON issued_certificates (revocation_job, revoked_at)
    WHERE revocation_job IS NOT NULL;
INSERT INTO thing_claims SELECT * FROM temp.thing_claims_0018;
INSERT INTO idempotency_keys SELECT * FROM temp.idempotency_keys_0018;
DROP TABLE temp.thing_claims_0018;
DROP TABLE temp.idempotency_keys_0018;

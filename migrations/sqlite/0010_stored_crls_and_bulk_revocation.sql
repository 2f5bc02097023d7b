-- Stored CRLs and bulk revocation; see migrations/postgres/0010_stored_crls_and_bulk_revocation.sql
-- for the why.
CREATE TABLE ca_crls (
    ca_id                  TEXT PRIMARY KEY REFERENCES certificate_authorities (id),
    revocation_generation  INTEGER NOT NULL DEFAULT 0,
    last_crl_number        INTEGER NOT NULL DEFAULT 0,
    crl_der                BLOB,
    crl_number             INTEGER,
    built_generation       INTEGER,
    this_update            TEXT,
    next_update            TEXT,
    revoked_count          INTEGER,
    base_number            INTEGER,
    base_this_update       TEXT,
    delta_der              BLOB,
    delta_number           INTEGER,
    delta_base_number      INTEGER,
    delta_built_generation INTEGER,
    delta_this_update      TEXT,
    delta_next_update      TEXT,
    CHECK ((crl_der IS NULL) = (crl_number IS NULL)),
    CHECK ((delta_der IS NULL) = (delta_number IS NULL))
);

CREATE TABLE revocation_jobs (
    id               TEXT PRIMARY KEY,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    finished_at      TEXT,
    actor            TEXT NOT NULL,
    request_id       TEXT,
    idempotency_key  TEXT UNIQUE,
    filter           TEXT NOT NULL,
    reason           TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('running', 'succeeded')),
    matched          INTEGER NOT NULL,
    revoked          INTEGER NOT NULL DEFAULT 0,
    CHECK ((status = 'succeeded') = (finished_at IS NOT NULL))
);
CREATE INDEX revocation_jobs_running ON revocation_jobs (created_at) WHERE status = 'running';

ALTER TABLE issued_certificates ADD COLUMN revocation_job TEXT;
CREATE INDEX issued_certificates_revocation_job ON issued_certificates (revocation_job, revoked_at)
    WHERE revocation_job IS NOT NULL;

-- Stored CRLs and bulk revocation.
--
-- ca_crls: one row per CA that has revoked certificates or has served a CRL. GET
-- /v1/cas/{id}/crl answers from crl_der (one primary-key read), so anonymous clients never make
-- the service read the ledger or sign. Every revocation bumps revocation_generation in its own
-- transaction; a stored CRL built from an older generation is rebuilt before it is served
-- again, and a background job rebuilds CRLs before their next_update.
--
-- last_crl_number is the cRLNumber (RFC 5280 section 5.2.3) last handed out. It is allocated
-- with one UPDATE ... RETURNING, so replicas sharing the database never sign two CRLs with one
-- number. The first number is the Unix time of the first build, so that numbers stay above the
-- ones earlier versions derived from the clock.
CREATE TABLE ca_crls (
    ca_id                  text PRIMARY KEY REFERENCES certificate_authorities (id),
    revocation_generation  bigint NOT NULL DEFAULT 0,
    last_crl_number        bigint NOT NULL DEFAULT 0,
    -- The stored CRL and what it covers; NULL until the first build.
    crl_der                bytea,
    crl_number             bigint,
    built_generation       bigint,
    this_update            timestamptz,
    next_update            timestamptz,
    revoked_count          bigint,
    -- The complete CRL that delta CRLs currently build on (RFC 5280 section 5.2.4): chosen
    -- once per refresh period, so that clients fetch the complete CRL rarely and the small delta
    -- often. A delta lists the revocations since base_this_update.
    base_number            bigint,
    base_this_update       timestamptz,
    -- The stored delta CRL, like the complete one; delta_base_number is the base it is on.
    delta_der              bytea,
    delta_number           bigint,
    delta_base_number      bigint,
    delta_built_generation bigint,
    delta_this_update      timestamptz,
    delta_next_update      timestamptz,
    CHECK ((crl_der IS NULL) = (crl_number IS NULL)),
    CHECK ((delta_der IS NULL) = (delta_number IS NULL))
);

-- A bulk revocation: a filter, a reason, and its progress. The job revokes in batches, each
-- batch one transaction that also adds its count to `revoked`, so a job interrupted by a restart
-- resumes where its last committed batch ended and counts every certificate once.
CREATE TABLE revocation_jobs (
    id               text PRIMARY KEY,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    finished_at      timestamptz,
    actor            text NOT NULL,
    request_id       text,
    -- A retried request with the same Idempotency-Key answers with this job.
    idempotency_key  text UNIQUE,
    filter           text NOT NULL,            -- JSON, as validated
    reason           text NOT NULL,
    status           text NOT NULL CHECK (status IN ('running', 'succeeded')),
    matched          bigint NOT NULL,          -- active certificates matching at creation
    revoked          bigint NOT NULL DEFAULT 0,
    CHECK ((status = 'succeeded') = (finished_at IS NOT NULL))
);
CREATE INDEX revocation_jobs_running ON revocation_jobs (created_at) WHERE status = 'running';

-- Which job revoked a certificate (NULL for single revocations). Adding a nullable column
-- rewrites nothing. The partial index lets each batch find the rows it has just revoked (to free
-- their thing claims and mark their CAs' CRLs stale) without scanning the ledger.
ALTER TABLE issued_certificates ADD COLUMN revocation_job text;
CREATE INDEX issued_certificates_revocation_job ON issued_certificates (revocation_job, revoked_at)
    WHERE revocation_job IS NOT NULL;

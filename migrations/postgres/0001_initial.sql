-- factory-ca ledger, PostgreSQL. Column names and types of issued_certificates are a documented,
-- stable interface: dashboards and BI tools read them directly.

-- The CAs this service knows. The private key is not here: key_file names a file under the
-- service's data directory (owner-only), so a database dump never contains a CA key.
CREATE TABLE certificate_authorities (
    id                  text PRIMARY KEY,            -- 'ca-' + first 16 hex of SHA-256(cert DER)
    subject             text NOT NULL,
    key_algorithm       text NOT NULL,               -- ecdsa-p256, rsa-2048, ...
    certificate_pem     text NOT NULL,
    aws_certificate_id  text NOT NULL UNIQUE,        -- SHA-256 of the certificate DER
    key_file            text NOT NULL,               -- relative to data_dir
    source              text NOT NULL CHECK (source IN ('generated', 'imported')),
    is_issuing          boolean NOT NULL DEFAULT false,
    not_before          timestamptz NOT NULL,
    not_after           timestamptz NOT NULL,
    created_at          timestamptz NOT NULL
);
-- Exactly one issuing CA at a time; rotation flips the flag in one transaction.
CREATE UNIQUE INDEX certificate_authorities_one_issuing
    ON certificate_authorities (is_issuing) WHERE is_issuing;

-- Every certificate that left the service. A row is committed before the certificate is sent.
CREATE TABLE issued_certificates (
    serial              text PRIMARY KEY CHECK (serial ~ '^[0-9a-f]{40}$'),
    ca_id               text NOT NULL REFERENCES certificate_authorities (id),
    thing_name          text NOT NULL,
    country             text,
    subject             text NOT NULL,
    key_algorithm       text NOT NULL,
    spki_sha256         text NOT NULL,
    aws_certificate_id  text NOT NULL UNIQUE,
    certificate_der     bytea NOT NULL,
    not_before          timestamptz NOT NULL,
    not_after           timestamptz NOT NULL,
    issued_at           timestamptz NOT NULL,
    station             text NOT NULL,
    request_id          text,
    status              text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked')),
    revoked_at          timestamptz,
    revocation_reason   text,
    CHECK ((status = 'revoked') = (revoked_at IS NOT NULL))
);
-- Dashboard and list queries: newest first, optionally narrowed by one of these columns.
-- The serial breaks ties so that keyset pagination is total.
CREATE INDEX issued_certificates_issued_at ON issued_certificates (issued_at DESC, serial DESC);
CREATE INDEX issued_certificates_thing_name ON issued_certificates (thing_name, issued_at DESC);
CREATE INDEX issued_certificates_country ON issued_certificates (country, issued_at DESC);
CREATE INDEX issued_certificates_station ON issued_certificates (station, issued_at DESC);
CREATE INDEX issued_certificates_ca ON issued_certificates (ca_id, issued_at DESC);
CREATE INDEX issued_certificates_revoked ON issued_certificates (revoked_at) WHERE status = 'revoked';

-- Which certificate currently holds each thing name. With duplicate_thing_name = "reject" an
-- insert only replaces a claim whose certificate has expired; revocation deletes the claim. The
-- primary key makes "one active certificate per thing" a database guarantee, also across
-- replicas.
CREATE TABLE thing_claims (
    thing_name  text PRIMARY KEY,
    serial      text NOT NULL REFERENCES issued_certificates (serial),
    not_after   timestamptz NOT NULL
);

-- Idempotency-Key header: one certificate per (station, key), forever.
CREATE TABLE idempotency_keys (
    station          text NOT NULL,
    idempotency_key  text NOT NULL,
    csr_sha256       text NOT NULL,
    serial           text NOT NULL REFERENCES issued_certificates (serial),
    created_at       timestamptz NOT NULL,
    PRIMARY KEY (station, idempotency_key)
);

-- API tokens, stored as SHA-256 of the secret; the secret itself is shown once at creation.
CREATE TABLE api_tokens (
    id            bigserial PRIMARY KEY,
    name          text NOT NULL,
    role          text NOT NULL CHECK (role IN ('station', 'viewer', 'admin')),
    token_sha256  text NOT NULL UNIQUE,
    created_at    timestamptz NOT NULL,
    revoked_at    timestamptz
);
-- A name belongs to at most one live token; revoked ones stay for the audit trail.
CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens (name) WHERE revoked_at IS NULL;

-- Every admin action, from the API or the CLI.
CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL,
    actor       text NOT NULL,        -- token name, or 'cli' for the command line
    action      text NOT NULL,        -- e.g. token.create, ca.import
    target      text,
    outcome     text NOT NULL CHECK (outcome IN ('success', 'failure')),
    detail      text,
    request_id  text
);
CREATE INDEX audit_log_at ON audit_log (at DESC, id DESC);

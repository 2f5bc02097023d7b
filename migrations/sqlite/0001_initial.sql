-- factory-ca ledger, SQLite (the embedded default). Same tables and columns as the PostgreSQL
-- schema; timestamps are RFC 3339 text in UTC, which sorts chronologically.

CREATE TABLE certificate_authorities (
    id                  TEXT PRIMARY KEY,
    subject             TEXT NOT NULL,
    key_algorithm       TEXT NOT NULL,
    certificate_pem     TEXT NOT NULL,
    aws_certificate_id  TEXT NOT NULL UNIQUE,
    key_file            TEXT NOT NULL,
    source              TEXT NOT NULL CHECK (source IN ('generated', 'imported')),
    is_issuing          BOOLEAN NOT NULL DEFAULT 0,
    not_before          TEXT NOT NULL,
    not_after           TEXT NOT NULL,
    created_at          TEXT NOT NULL
);
CREATE UNIQUE INDEX certificate_authorities_one_issuing
    ON certificate_authorities (is_issuing) WHERE is_issuing;

CREATE TABLE issued_certificates (
    serial              TEXT PRIMARY KEY CHECK (length(serial) = 40),
    ca_id               TEXT NOT NULL REFERENCES certificate_authorities (id),
    thing_name          TEXT NOT NULL,
    country             TEXT,
    subject             TEXT NOT NULL,
    key_algorithm       TEXT NOT NULL,
    spki_sha256         TEXT NOT NULL,
    aws_certificate_id  TEXT NOT NULL UNIQUE,
    certificate_der     BLOB NOT NULL,
    not_before          TEXT NOT NULL,
    not_after           TEXT NOT NULL,
    issued_at           TEXT NOT NULL,
    station             TEXT NOT NULL,
    request_id          TEXT,
    status              TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked')),
    revoked_at          TEXT,
    revocation_reason   TEXT,
    CHECK ((status = 'revoked') = (revoked_at IS NOT NULL))
);
CREATE INDEX issued_certificates_issued_at ON issued_certificates (issued_at DESC, serial DESC);
CREATE INDEX issued_certificates_thing_name ON issued_certificates (thing_name, issued_at DESC);
CREATE INDEX issued_certificates_country ON issued_certificates (country, issued_at DESC);
CREATE INDEX issued_certificates_station ON issued_certificates (station, issued_at DESC);
CREATE INDEX issued_certificates_ca ON issued_certificates (ca_id, issued_at DESC);
CREATE INDEX issued_certificates_revoked ON issued_certificates (revoked_at) WHERE status = 'revoked';

CREATE TABLE thing_claims (
    thing_name  TEXT PRIMARY KEY,
    serial      TEXT NOT NULL REFERENCES issued_certificates (serial),
    not_after   TEXT NOT NULL
);

CREATE TABLE idempotency_keys (
    station          TEXT NOT NULL,
    idempotency_key  TEXT NOT NULL,
    csr_sha256       TEXT NOT NULL,
    serial           TEXT NOT NULL REFERENCES issued_certificates (serial),
    created_at       TEXT NOT NULL,
    PRIMARY KEY (station, idempotency_key)
);

CREATE TABLE api_tokens (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('station', 'viewer', 'admin')),
    token_sha256  TEXT NOT NULL UNIQUE,
    created_at    TEXT NOT NULL,
    revoked_at    TEXT
);
CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens (name) WHERE revoked_at IS NULL;

CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          TEXT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT,
    outcome     TEXT NOT NULL CHECK (outcome IN ('success', 'failure')),
    detail      TEXT,
    request_id  TEXT
);
CREATE INDEX audit_log_at ON audit_log (at DESC, id DESC);

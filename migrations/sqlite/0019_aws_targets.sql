-- Registration targets: one registration row per (CA, target); the rows of before belong to
-- the target `default`. See the PostgreSQL migration for the why.
CREATE TABLE ca_aws_registrations_by_target (
    ca_id               TEXT NOT NULL REFERENCES certificate_authorities (id),
    target              TEXT NOT NULL,
    aws_certificate_id  TEXT NOT NULL,
    certificate_arn     TEXT NOT NULL,
    mode                TEXT NOT NULL CHECK (mode IN ('default', 'sni_only')),
    status              TEXT NOT NULL CHECK (status IN ('ACTIVE', 'INACTIVE')),
    auto_registration   BOOLEAN NOT NULL,
    template_kind       TEXT CHECK (template_kind IN ('inline', 'named')),
    template_body       TEXT,
    template_name       TEXT,
    role_arn            TEXT,
    registered_at       TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    PRIMARY KEY (ca_id, target),
    UNIQUE (target, aws_certificate_id),
    CHECK ((template_kind = 'inline') = (template_body IS NOT NULL)),
    CHECK ((template_kind = 'named') = (template_name IS NOT NULL))
);
INSERT INTO ca_aws_registrations_by_target (ca_id, target, aws_certificate_id, certificate_arn,
    mode, status, auto_registration, template_kind, template_body, template_name, role_arn,
    registered_at, updated_at)
SELECT ca_id, 'default', aws_certificate_id, certificate_arn, mode, status, auto_registration,
    template_kind, template_body, template_name, role_arn, registered_at, updated_at
FROM ca_aws_registrations;
DROP TABLE ca_aws_registrations;
ALTER TABLE ca_aws_registrations_by_target RENAME TO ca_aws_registrations;

CREATE TABLE aws_target_attempts (
    ca_id               TEXT NOT NULL REFERENCES certificate_authorities (id),
    target              TEXT NOT NULL,
    operation           TEXT NOT NULL,
    attempted_at        TEXT NOT NULL,
    ok                  BOOLEAN NOT NULL,
    error_kind          TEXT,
    error_code          TEXT,
    error_message       TEXT,
    PRIMARY KEY (ca_id, target),
    CHECK (ok = (error_kind IS NULL))
);

CREATE TABLE aws_revocation_targets (
    serial              TEXT NOT NULL REFERENCES issued_certificates (serial),
    target              TEXT NOT NULL,
    pushed_at           TEXT NOT NULL,
    PRIMARY KEY (serial, target)
);

-- AWS IoT registration of our CAs; see the PostgreSQL migration for the why.
CREATE TABLE ca_aws_registrations (
    ca_id               TEXT PRIMARY KEY REFERENCES certificate_authorities (id),
    aws_certificate_id  TEXT NOT NULL UNIQUE,
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
    CHECK ((template_kind = 'inline') = (template_body IS NOT NULL)),
    CHECK ((template_kind = 'named') = (template_name IS NOT NULL))
);

-- AWS IoT registration of our CAs (issue 3). One row per CA that is registered in AWS IoT:
-- what AWS told us when we registered it and what we last set, so that a repeated register
-- call is idempotent and GET .../aws can name drift between this and DescribeCACertificate.
CREATE TABLE ca_aws_registrations (
    ca_id               text PRIMARY KEY REFERENCES certificate_authorities (id),
    aws_certificate_id  text NOT NULL UNIQUE,
    certificate_arn     text NOT NULL,
    mode                text NOT NULL CHECK (mode IN ('default', 'sni_only')),
    status              text NOT NULL CHECK (status IN ('ACTIVE', 'INACTIVE')),
    auto_registration   boolean NOT NULL,
    -- The attached JITP template: inline (template_body + role_arn) or named (template_name).
    template_kind       text CHECK (template_kind IN ('inline', 'named')),
    template_body       text,
    template_name       text,
    role_arn            text,
    registered_at       timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL,
    CHECK ((template_kind = 'inline') = (template_body IS NOT NULL)),
    CHECK ((template_kind = 'named') = (template_name IS NOT NULL))
);

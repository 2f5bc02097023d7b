-- Registration targets: a CA may be registered in several (region, account) targets
-- ([aws.targets.<name>]). The registration becomes one row per (CA, target); the rows of the
-- single [aws] section of before belong to the target `default`. AWS names a CA certificate by
-- its fingerprint, so the same certificate id appears once per target.
ALTER TABLE ca_aws_registrations ADD COLUMN target text NOT NULL DEFAULT 'default';
ALTER TABLE ca_aws_registrations ALTER COLUMN target DROP DEFAULT;
ALTER TABLE ca_aws_registrations DROP CONSTRAINT ca_aws_registrations_pkey;
ALTER TABLE ca_aws_registrations DROP CONSTRAINT ca_aws_registrations_aws_certificate_id_key;
ALTER TABLE ca_aws_registrations ADD PRIMARY KEY (ca_id, target);
ALTER TABLE ca_aws_registrations ADD CONSTRAINT ca_aws_registrations_target_certificate
    UNIQUE (target, aws_certificate_id);

-- The last AWS operation per (CA, target) and, when it failed, what failed: the kind
-- (throttled, unreachable, unavailable, access_denied, rejected, ...), AWS's error code and
-- message. Kept for targets the CA is not (yet) registered in, so that a failed registration
-- is visible.
CREATE TABLE aws_target_attempts (
    ca_id               text NOT NULL REFERENCES certificate_authorities (id),
    target              text NOT NULL,
    operation           text NOT NULL,
    attempted_at        timestamptz NOT NULL,
    ok                  boolean NOT NULL,
    error_kind          text,
    error_code          text,
    error_message       text,
    PRIMARY KEY (ca_id, target),
    CHECK (ok = (error_kind IS NULL))
);

-- A revocation told to some targets of its CA but not yet all: one row per target that has it.
-- When every target the CA is registered in has it, aws_revocation_pending is cleared and the
-- rows are removed.
CREATE TABLE aws_revocation_targets (
    serial              text NOT NULL REFERENCES issued_certificates (serial),
    target              text NOT NULL,
    pushed_at           timestamptz NOT NULL,
    PRIMARY KEY (serial, target)
);

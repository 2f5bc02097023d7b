-- What AWS IoT knows of each issued certificate; see the PostgreSQL migration for the why.
ALTER TABLE issued_certificates ADD COLUMN aws_status TEXT;
ALTER TABLE issued_certificates ADD COLUMN aws_first_seen_at TEXT;
ALTER TABLE issued_certificates ADD COLUMN aws_synced_at TEXT;

CREATE INDEX issued_certificates_aws_status ON issued_certificates (aws_status, issued_at DESC);

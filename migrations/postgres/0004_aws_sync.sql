-- What AWS IoT knows of each issued certificate (issue 3, registration sync). ListCertificatesByCA
-- returns the certificates whose device connected at least once (JITP registered them), so a
-- row with aws_status NULL is a device that never connected. aws_first_seen_at is AWS's
-- creation date of the certificate: when the device first connected.
ALTER TABLE issued_certificates
    ADD COLUMN aws_status text,
    ADD COLUMN aws_first_seen_at timestamptz,
    ADD COLUMN aws_synced_at timestamptz;

CREATE INDEX issued_certificates_aws_status ON issued_certificates (aws_status, issued_at DESC);

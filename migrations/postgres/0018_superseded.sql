-- Renewal (EST simplereenroll): a certificate renewed by its device is `superseded` by the new
-- one, which takes over its thing claim. A superseded certificate is not revoked: it stays valid
-- until it expires or an admin revokes it (it may then become `revoked`; `superseded_by` stays,
-- as the record of the renewal). The change is covered by the CA's hash chain (a `superseded`
-- record, see docs/certificates.md).
ALTER TABLE issued_certificates DROP CONSTRAINT issued_certificates_status_check;
ALTER TABLE issued_certificates ADD CONSTRAINT issued_certificates_status_check
    CHECK (status IN ('active', 'revoked', 'superseded'));
ALTER TABLE issued_certificates ADD COLUMN superseded_at TIMESTAMPTZ;
ALTER TABLE issued_certificates ADD COLUMN superseded_by TEXT;
ALTER TABLE issued_certificates ADD CONSTRAINT issued_certificates_superseded_by
    CHECK ((superseded_at IS NULL) = (superseded_by IS NULL)
           AND (status <> 'superseded' OR superseded_by IS NOT NULL));

-- Revocation (issue 3). Revoking a certificate sets status = 'revoked', revoked_at and
-- revocation_reason (RFC 5280 CRLReason in snake_case) and deletes its thing claim, in one
-- transaction; the CRL at /v1/cas/{id}/crl is built from these rows.
--
-- AWS IoT keeps its own copy of every registered certificate, so revoking in the ledger does not
-- stop a device from connecting until AWS is told too. aws_revocation_pending records that AWS
-- has not been told yet: revocation sets it, and the push to AWS IoT clears it once AWS has
-- marked the certificate REVOKED. Only a revoked certificate can have a revocation to push.
ALTER TABLE issued_certificates
    ADD COLUMN aws_revocation_pending boolean NOT NULL DEFAULT false,
    ADD CONSTRAINT issued_certificates_aws_revocation_pending_revoked
        CHECK (status = 'revoked' OR NOT aws_revocation_pending);

-- The push to AWS looks for pending rows; there are few at any time, so the index stays small.
CREATE INDEX issued_certificates_aws_revocation_pending ON issued_certificates (revoked_at)
    WHERE aws_revocation_pending;

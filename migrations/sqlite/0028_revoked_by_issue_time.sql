-- The revoked certificates in issue order, for `GET /v1/certificates?status=revoked`: a page
-- is a backward scan of this small index instead of a sort of every revoked row (see the
-- PostgreSQL migration of this number).
CREATE INDEX issued_certificates_revoked_issued_at
    ON issued_certificates (issued_at, serial) WHERE status = 'revoked';

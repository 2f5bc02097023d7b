-- The interface each certificate was requested through: `api` (POST /v1/certificates) or `est`
-- (RFC 7030 enrollment under /.well-known/est). Rows from before EST were all requested
-- through the JSON API, hence the default.
ALTER TABLE issued_certificates ADD COLUMN channel TEXT NOT NULL DEFAULT 'api';

-- Server-side dashboard sessions. The session cookie holds a random id; only its SHA-256 is
-- stored here, with the token that signed in and an expiry. Signing out deletes the row, so a
-- copied cookie stops working at once; revoking the token ends its sessions (the lookup joins
-- the live token); expired rows are deleted at the next sign-in.
CREATE TABLE dashboard_sessions (
    session_sha256  TEXT PRIMARY KEY,
    token_id        INTEGER NOT NULL REFERENCES api_tokens (id) ON DELETE CASCADE,
    created_at      TEXT NOT NULL,
    expires_at      TEXT NOT NULL
);
CREATE INDEX dashboard_sessions_expires_at ON dashboard_sessions (expires_at);

-- `?aws_status=never_seen` (and any aws_status filter) pages newest first by
-- (issued_at, serial): with serial in the index the page is an index range read, not a sort
-- of every matching row.
DROP INDEX issued_certificates_aws_status;
CREATE INDEX issued_certificates_aws_status
    ON issued_certificates (aws_status, issued_at DESC, serial DESC);

-- Server-side dashboard sessions. The session cookie holds a random id; only its SHA-256 is
-- stored here, with the token that signed in and an expiry. Signing out deletes the row, so a
-- copied cookie stops working at once; revoking the token ends its sessions (the lookup joins
-- the live token); expired rows are deleted at the next sign-in.
CREATE TABLE dashboard_sessions (
    session_sha256  text PRIMARY KEY,
    token_id        bigint NOT NULL REFERENCES api_tokens (id) ON DELETE CASCADE,
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL
);
CREATE INDEX dashboard_sessions_expires_at ON dashboard_sessions (expires_at);

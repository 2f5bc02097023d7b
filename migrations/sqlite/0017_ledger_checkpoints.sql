-- Signed checkpoints of the ledger's hash chains; see
-- migrations/postgres/0017_ledger_checkpoints.sql for the why.
CREATE TABLE ledger_checkpoints (
    ca_id       TEXT NOT NULL,
    seq         INTEGER NOT NULL CHECK (seq > 0),
    head_hash   BLOB NOT NULL,
    issued      INTEGER NOT NULL,
    revoked     INTEGER NOT NULL,
    created_at  TEXT NOT NULL,
    key_id      TEXT NOT NULL,
    signature   BLOB NOT NULL,
    PRIMARY KEY (ca_id, seq)
);

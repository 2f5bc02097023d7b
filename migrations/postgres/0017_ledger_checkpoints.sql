-- Signed checkpoints of the ledger's hash chains (docs/certificates.md, "Checkpoints").
--
-- A checkpoint states, signed by the ledger audit key (keys/ledger-audit.key.pem, never a CA
-- key), that the chain of `ca_id` had `seq` records ending in `head_hash`, `issued` of them
-- issuances and `revoked` revocations, at `created_at`. `key_id` is the SHA-256 of the audit
-- public key's SubjectPublicKeyInfo DER; `signature` is DER ECDSA P-256 with SHA-256 over the
-- canonical text of src/services/ledger.rs (`checkpoint_message`).
--
-- A checkpoint is written in a transaction that holds the CA's `ledger_heads` row lock (the
-- lock every append takes), so it names a head that was committed and no append can slip in
-- between reading the head and recording it; two replicas checkpointing at once are serialised
-- on that lock, and the second sees the first's checkpoint and makes none. The primary key
-- refuses two checkpoints at one position.
--
-- No foreign key, like ledger_chain: checkpoints outlive whatever is done to the rows.
CREATE TABLE ledger_checkpoints (
    ca_id       TEXT NOT NULL,
    seq         BIGINT NOT NULL CHECK (seq > 0),
    head_hash   BYTEA NOT NULL,
    issued      BIGINT NOT NULL,
    revoked     BIGINT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    key_id      TEXT NOT NULL,
    signature   BYTEA NOT NULL,
    PRIMARY KEY (ca_id, seq)
);

-- The tamper-evident ledger (docs/certificates.md, "The ledger's proofs").
--
-- Every issuance and every revocation appends one record to its CA's hash chain, in the
-- transaction that writes the ledger row: `seq` counts from 1 per CA, `prev_hash` is the hash of
-- record seq - 1 (32 zero bytes for seq 1), and `hash` is SHA-256 over prev_hash, seq and the
-- canonical encoding of the ledger row. `ledger_heads` holds each CA's last seq and hash; every
-- writer locks its CA's head row (INSERT .. ON CONFLICT DO UPDATE) before appending, so
-- concurrent writers, group-commit batches and replicas produce one order per CA.
--
-- No foreign keys on purpose: the chain must outlive a deleted certificate row, so that
-- `factory-ca ledger verify` can name it.
CREATE TABLE ledger_heads (
    ca_id  TEXT PRIMARY KEY,
    seq    BIGINT NOT NULL,
    hash   BYTEA NOT NULL
);

CREATE TABLE ledger_chain (
    ca_id      TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    serial     TEXT NOT NULL,
    prev_hash  BYTEA NOT NULL,
    hash       BYTEA NOT NULL,
    PRIMARY KEY (ca_id, seq)
);
CREATE INDEX ledger_chain_serial ON ledger_chain (serial, kind);

-- Certificates recorded before this migration are adopted into their CAs' chains once, by the
-- first `migrate` after it (issued_at order, then revoked_at order); this row says it is due.
CREATE TABLE ledger_adoption (id INTEGER PRIMARY KEY CHECK (id = 1));
INSERT INTO ledger_adoption (id) VALUES (1);

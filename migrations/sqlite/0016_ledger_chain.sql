-- The tamper-evident ledger; see migrations/postgres/0016_ledger_chain.sql for the why.
CREATE TABLE ledger_heads (
    ca_id  TEXT PRIMARY KEY,
    seq    INTEGER NOT NULL,
    hash   BLOB NOT NULL
);

CREATE TABLE ledger_chain (
    ca_id      TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    serial     TEXT NOT NULL,
    prev_hash  BLOB NOT NULL,
    hash       BLOB NOT NULL,
    PRIMARY KEY (ca_id, seq)
);
CREATE INDEX ledger_chain_serial ON ledger_chain (serial, kind);

-- Certificates recorded before this migration are adopted into their CAs' chains once, by the
-- first `migrate` after it (issued_at order, then revoked_at order); this row says it is due.
CREATE TABLE ledger_adoption (id INTEGER PRIMARY KEY CHECK (id = 1));
INSERT INTO ledger_adoption (id) VALUES (1);

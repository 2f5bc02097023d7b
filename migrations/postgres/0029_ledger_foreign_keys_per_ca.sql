-- The ledger's insert path without a foreign-key check per certificate (docs/benchmarks.md,
-- "Foreign keys on the insert path").
--
-- PostgreSQL checks a foreign key with one query per inserted row. Two of them ran for every
-- certificate: issued_certificates.ca_id (which also locked the CA's row, from every writer at
-- once) and thing_claims.serial (deferrable since 0006, so queued until the statement's end).
-- Together they cost PostgreSQL 12 to 26 microseconds of CPU per certificate (measured pair by
-- pair).
--
-- What they guaranteed stays guaranteed, more cheaply:
-- - "A ledger row names a CA that exists" moves to the CA's hash-chain head. Every ledger row is
--   written in the statement (or transaction) that appends its chain record and moves its CA's
--   head, so a row for an unknown CA fails on this key when its head is created, once per CA,
--   and a CA with a chain cannot be deleted.
-- - A thing claim is written in the same statement or transaction as its certificate, by the
--   only two writers (src/store/ledger_writer.rs); nothing deletes ledger rows. Tampering is
--   `factory-ca ledger verify`'s to find.
-- The foreign key of idempotency_keys stays: one statement refuses a batch through it.
--
-- SQLite keeps its foreign keys: it checks them by an index lookup inside the insert, not by a
-- query.
ALTER TABLE ledger_heads
    ADD CONSTRAINT ledger_heads_ca_id_fkey FOREIGN KEY (ca_id) REFERENCES certificate_authorities (id);
ALTER TABLE issued_certificates DROP CONSTRAINT issued_certificates_ca_id_fkey;
ALTER TABLE thing_claims DROP CONSTRAINT thing_claims_serial_fkey;

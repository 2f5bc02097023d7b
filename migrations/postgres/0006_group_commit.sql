-- Group commit (issue 6): the batching ledger writer (src/store/ledger_writer.rs) decides which
-- rows of a batch win their Idempotency-Key and thing claim *before* it inserts their
-- certificates, so that a losing row never has a certificate row to delete (a delete from
-- issued_certificates would scan both referencing tables, which have no index on serial). It
-- therefore inserts idempotency_keys and thing_claims rows whose certificate follows later in
-- the same transaction, and defers these two foreign keys to COMMIT with SET CONSTRAINTS.
--
-- DEFERRABLE INITIALLY IMMEDIATE changes nothing for any other transaction: they are still
-- checked at the end of each statement unless a transaction asks otherwise. Either way a
-- transaction that breaks them cannot commit, so the database stays the source of truth.
-- Altering the deferrability validates nothing and rewrites nothing.
ALTER TABLE thing_claims ALTER CONSTRAINT thing_claims_serial_fkey DEFERRABLE INITIALLY IMMEDIATE;
ALTER TABLE idempotency_keys
    ALTER CONSTRAINT idempotency_keys_serial_fkey DEFERRABLE INITIALLY IMMEDIATE;

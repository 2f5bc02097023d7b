-- The ledger's AWS certificate ids in a hash index instead of a unique B-tree (docs/benchmarks.md,
-- "Bytes on disk per certificate").
--
-- The id is the SHA-256 of the certificate's DER, as 64 hex characters. It is looked up only by
-- equality (an AWS sync page, a revocation answer), never in order or by prefix. The B-tree of
-- the UNIQUE constraint kept the whole 65-byte text of every row, at a random place (96 to 124
-- bytes per certificate); a hash index keeps a 4-byte hash code per row and rechecks the text in
-- the heap.
--
-- Nothing relied on the constraint: two rows with one id would be two certificates with one DER,
-- and each DER holds its serial, unique by the primary key. SQLite keeps its unique index.
CREATE INDEX issued_certificates_aws_certificate_id
    ON issued_certificates USING hash (aws_certificate_id);
ALTER TABLE issued_certificates DROP CONSTRAINT issued_certificates_aws_certificate_id_key;

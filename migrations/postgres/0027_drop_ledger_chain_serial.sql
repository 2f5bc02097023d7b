-- The chain's index by serial goes (docs/benchmarks.md, "Bytes on disk per certificate").
--
-- ledger_chain_serial (serial, kind) took 69 to 90 bytes per certificate and one insertion at a
-- random place of a B-tree per record appended, for two readers only, neither of them issuance:
-- `ledger verify`, which looked each ledger row's records up in it, and the one-time adoption
-- of rows written before the chain (0016). `ledger verify` now counts the records of each kind
-- as it walks the chain and compares with counts of the rows (one pass each, docs/certificates.md
-- "Verifying"); adoption makes an index of its own for its run and drops it after.
DROP INDEX IF EXISTS ledger_chain_serial;

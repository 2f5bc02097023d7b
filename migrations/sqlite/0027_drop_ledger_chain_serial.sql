-- The chain's index by serial goes; see migrations/postgres/0027_drop_ledger_chain_serial.sql
-- for the why.
DROP INDEX IF EXISTS ledger_chain_serial;

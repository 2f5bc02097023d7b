-- Certificate serials and the ledger's SHA-256 values as their bytes instead of hex text
-- (docs/benchmarks.md, "Bytes on disk per certificate").
--
-- A serial is in the ledger's heap, its primary key, the six indexes that end with it, the
-- thing claims, the idempotency keys, the hash chain and the AWS status tables. As text each
-- copy took 41 bytes; as bytea it takes 21 (and index entries shrink by a whole 8-byte step).
-- The SPKI hash and the AWS certificate id (SHA-256 of the DER) took 65 bytes each in the heap;
-- as bytea 33. The API and the hash chain's payloads keep the hex text: the store converts
-- when it binds and reads these values (src/store/hex_columns.rs). Lowercase hex sorts as the
-- bytes do, so pages and cursors keep their order. SQLite keeps the text.
--
-- On an existing ledger this rewrites the tables and their indexes once, under an exclusive
-- lock: plan a window (docs/operations.md, "Upgrades that rewrite the ledger").

ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_serial_fkey;
ALTER TABLE aws_revocation_targets DROP CONSTRAINT aws_revocation_targets_serial_fkey;
ALTER TABLE certificate_aws_status DROP CONSTRAINT certificate_aws_status_serial_fkey;
ALTER TABLE issued_certificates DROP CONSTRAINT issued_certificates_serial_check;

ALTER TABLE issued_certificates
    ALTER COLUMN serial TYPE bytea USING decode(serial, 'hex'),
    ALTER COLUMN superseded_by TYPE bytea USING decode(superseded_by, 'hex'),
    ADD CONSTRAINT issued_certificates_serial_check CHECK (octet_length(serial) = 20),
    ADD CONSTRAINT issued_certificates_superseded_by_length
        CHECK (octet_length(superseded_by) = 20),
    ALTER COLUMN spki_sha256 TYPE bytea USING decode(spki_sha256, 'hex'),
    ALTER COLUMN aws_certificate_id TYPE bytea USING decode(aws_certificate_id, 'hex'),
    ADD CONSTRAINT issued_certificates_spki_sha256_length
        CHECK (octet_length(spki_sha256) = 32),
    ADD CONSTRAINT issued_certificates_aws_certificate_id_length
        CHECK (octet_length(aws_certificate_id) = 32);
ALTER TABLE thing_claims ALTER COLUMN serial TYPE bytea USING decode(serial, 'hex');
ALTER TABLE idempotency_keys ALTER COLUMN serial TYPE bytea USING decode(serial, 'hex');
ALTER TABLE ledger_chain ALTER COLUMN serial TYPE bytea USING decode(serial, 'hex');
ALTER TABLE aws_revocation_targets ALTER COLUMN serial TYPE bytea USING decode(serial, 'hex');
ALTER TABLE certificate_aws_status ALTER COLUMN serial TYPE bytea USING decode(serial, 'hex');

ALTER TABLE idempotency_keys ADD CONSTRAINT idempotency_keys_serial_fkey
    FOREIGN KEY (serial) REFERENCES issued_certificates (serial)
    DEFERRABLE INITIALLY IMMEDIATE;
ALTER TABLE aws_revocation_targets ADD CONSTRAINT aws_revocation_targets_serial_fkey
    FOREIGN KEY (serial) REFERENCES issued_certificates (serial);
ALTER TABLE certificate_aws_status ADD CONSTRAINT certificate_aws_status_serial_fkey
    FOREIGN KEY (serial) REFERENCES issued_certificates (serial);

-- For SQL readers (Grafana, BI tools) that want the text the API shows: every column of
-- issued_certificates, in its order, with the values above as hex text. A migration that adds a
-- column to the table recreates this view with it (a route test compares the two).
CREATE VIEW issued_certificates_hex AS
SELECT encode(serial, 'hex') AS serial, ca_id, thing_name, country, subject, key_algorithm,
    encode(spki_sha256, 'hex') AS spki_sha256,
    encode(aws_certificate_id, 'hex') AS aws_certificate_id,
    certificate_der, not_before, not_after, issued_at, station, request_id, status, revoked_at,
    revocation_reason, aws_revocation_pending, aws_status, aws_first_seen_at, aws_synced_at,
    revocation_job, channel, superseded_at, encode(superseded_by, 'hex') AS superseded_by
FROM issued_certificates;

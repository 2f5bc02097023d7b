-- Ledger indexes in the order rows arrive (docs/benchmarks.md, "Bytes on disk per certificate").
--
-- Five indexes of issued_certificates lead, after at most one equality column, with issued_at,
-- and were declared DESC. A new certificate is the newest, so it went to the leftmost leaf of
-- its range, and a B-tree leaf that is not the rightmost splits 50/50: these indexes stayed about
-- half empty (153 bytes per certificate each, measured on 100,000 rows). Ascending, new rows go
-- to the rightmost leaf, which PostgreSQL splits at its fill factor (90 %): 87.5 bytes each,
-- about 330 bytes (15 %) less per certificate for the ledger as a whole, and a page split every
-- ~90 rows instead of every ~45. Every query orders all of its columns the same way, so it reads
-- the same index backwards for newest first (the plans in docs/query-plans.md: "Index Scan" and
-- "Index Scan Backward" trade places).
--
-- On an existing ledger this rebuilds the five indexes and holds issuance for as long as that
-- takes, which grows with the size of the ledger: run it in a quiet hour. issued_certificates_thing_name_c keeps its order: its leading column, the thing name, is
-- not in arrival order, so the direction of issued_at does not change where rows go.
DROP INDEX issued_certificates_issued_at;
CREATE INDEX issued_certificates_issued_at
    ON issued_certificates (issued_at, serial) INCLUDE (status, not_after);
DROP INDEX issued_certificates_country;
CREATE INDEX issued_certificates_country ON issued_certificates (country, issued_at, serial);
DROP INDEX issued_certificates_station;
CREATE INDEX issued_certificates_station ON issued_certificates (station, issued_at, serial);
DROP INDEX issued_certificates_ca;
CREATE INDEX issued_certificates_ca ON issued_certificates (ca_id, issued_at, serial);
DROP INDEX issued_certificates_aws_status;
CREATE INDEX issued_certificates_aws_status
    ON issued_certificates (aws_status, issued_at, serial);

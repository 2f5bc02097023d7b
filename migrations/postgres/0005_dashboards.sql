-- Dashboards (issue 4): durable rejection counts, and indexes for the stats and list queries.

-- Refused signing requests (4xx answers to POST /v1/certificates), counted per UTC hour.
-- The service aggregates them in memory and adds its counts here every few seconds (and on
-- shutdown), so a flood of bad requests costs one upsert per key and flush, not a row each.
CREATE TABLE rejection_counts (
    bucket   timestamptz NOT NULL,   -- start of the UTC hour
    station  text NOT NULL,          -- token or client-certificate name; '' when unauthenticated
    code     text NOT NULL,          -- the API error code, e.g. invalid_csr
    ca_id    text NOT NULL,          -- the issuing CA at the time
    count    bigint NOT NULL CHECK (count > 0),
    PRIMARY KEY (bucket, station, code, ca_id)
);

-- Thing-name search (`q`, a prefix) and exact match share one index in byte order, so that a
-- prefix is a range whatever the database's collation.
DROP INDEX issued_certificates_thing_name;
CREATE INDEX issued_certificates_thing_name_c
    ON issued_certificates ((thing_name COLLATE "C"), issued_at DESC, serial DESC);

-- Stats grouped by country/station/CA over a time range read these without touching the table.
DROP INDEX issued_certificates_country;
DROP INDEX issued_certificates_station;
DROP INDEX issued_certificates_ca;
CREATE INDEX issued_certificates_country ON issued_certificates (country, issued_at DESC, serial DESC);
CREATE INDEX issued_certificates_station ON issued_certificates (station, issued_at DESC, serial DESC);
CREATE INDEX issued_certificates_ca ON issued_certificates (ca_id, issued_at DESC, serial DESC);
-- Stats by day/hour/status over a range: the time index also carries what decides the status.
DROP INDEX issued_certificates_issued_at;
CREATE INDEX issued_certificates_issued_at
    ON issued_certificates (issued_at DESC, serial DESC) INCLUDE (status, not_after);
-- Revocations in a range, with the keys they are grouped by.
DROP INDEX issued_certificates_revoked;
CREATE INDEX issued_certificates_revoked ON issued_certificates (revoked_at)
    INCLUDE (ca_id, station, country) WHERE status = 'revoked';

-- Daily certificate counters for GET /v1/stats. The hourly counters (0025) hold about 40 rows
-- for each hour of a year of issuance (one per CA, station, country and hour of expiry), so an
-- all-time count read ~350,000 of them (200-560 ms at one million certificates,
-- docs/benchmarks.md). These two tables hold the same counts per UTC day: stats read whole
-- days here, whole hours from the hourly counters and partial hours from the ledger. The same
-- transactions that add to the hourly counters add to these, in the same statement order.

-- Certificates per UTC day of issuance. expires_bucket (the day of not_after) decides
-- "expired" for every day but the current one; for the certificates that expire today the
-- hourly counters (and, for this hour, the ledger) are read.
CREATE TABLE certificate_counts_daily (
    bucket          timestamptz NOT NULL,   -- start of the UTC day of issued_at
    ca_id           text NOT NULL,
    station         text NOT NULL,
    country         text NOT NULL,          -- '' for a certificate without country
    expires_bucket  timestamptz NOT NULL,   -- start of the UTC day of not_after
    issued          bigint NOT NULL,
    superseded      bigint NOT NULL,
    revoked         bigint NOT NULL,
    PRIMARY KEY (bucket, ca_id, station, country, expires_bucket)
);

-- Revocations per UTC day of revoked_at.
CREATE TABLE revocation_counts_daily (
    bucket   timestamptz NOT NULL,          -- start of the UTC day of revoked_at
    ca_id    text NOT NULL,
    station  text NOT NULL,
    country  text NOT NULL,                 -- '' for a certificate without country
    count    bigint NOT NULL,
    PRIMARY KEY (bucket, ca_id, station, country)
);

-- Folded from the hourly counters, which the service keeps exact: they are ~35 times fewer
-- rows than the ledger, and a day is a whole number of UTC hours.
INSERT INTO certificate_counts_daily
    (bucket, ca_id, station, country, expires_bucket, issued, superseded, revoked)
SELECT date_trunc('day', bucket AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', ca_id, station, country,
    date_trunc('day', expires_bucket AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
    SUM(issued), SUM(superseded), SUM(revoked)
FROM certificate_counts GROUP BY 1, 2, 3, 4, 5;

INSERT INTO revocation_counts_daily (bucket, ca_id, station, country, count)
SELECT date_trunc('day', bucket AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', ca_id, station, country,
    SUM(count)
FROM revocation_counts GROUP BY 1, 2, 3, 4;

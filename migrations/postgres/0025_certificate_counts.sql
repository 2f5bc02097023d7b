-- Certificate counters for GET /v1/stats. At ten million certificates the aggregates over
-- issued_certificates took 0.2-1.0 s for a week and 6.9 s (or the statement timeout) for all
-- time. These two tables hold the same counts per UTC hour; the transactions that write the
-- ledger (issuance, renewal, revocation, bulk revocation) keep them exact, with one upsert per
-- key and transaction. Stats read whole hours here and only the partial hours at the edges of
-- a range from the ledger (docs/query-plans.md).

-- Certificates per hour of issuance and the dimensions stats group by. expires_bucket (the
-- hour of not_after) decides "expired" for every hour but the current one, for which the
-- ledger is read. Of the `issued` certificates, `superseded` are superseded now (and not
-- revoked) and `revoked` are revoked; the others are active.
CREATE TABLE certificate_counts (
    bucket          timestamptz NOT NULL,   -- start of the UTC hour of issued_at
    ca_id           text NOT NULL,
    station         text NOT NULL,
    country         text NOT NULL,          -- '' for a certificate without country
    expires_bucket  timestamptz NOT NULL,   -- start of the UTC hour of not_after
    issued          bigint NOT NULL,
    superseded      bigint NOT NULL,
    revoked         bigint NOT NULL,
    PRIMARY KEY (bucket, ca_id, station, country, expires_bucket)
);

-- Revocations per hour of revoked_at.
CREATE TABLE revocation_counts (
    bucket   timestamptz NOT NULL,          -- start of the UTC hour of revoked_at
    ca_id    text NOT NULL,
    station  text NOT NULL,
    country  text NOT NULL,                 -- '' for a certificate without country
    count    bigint NOT NULL,
    PRIMARY KEY (bucket, ca_id, station, country)
);

-- The counts of the ledger as it is. This reads the whole ledger once (the same statements took
-- 8 s for 1,000,000 rows on a busy 2-core machine, docs/benchmarks.md); issuance waits for it.
INSERT INTO certificate_counts
    (bucket, ca_id, station, country, expires_bucket, issued, superseded, revoked)
SELECT date_trunc('hour', issued_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', ca_id, station,
    COALESCE(country, ''), date_trunc('hour', not_after AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
    COUNT(*), COUNT(*) FILTER (WHERE status = 'superseded'),
    COUNT(*) FILTER (WHERE status = 'revoked')
FROM issued_certificates GROUP BY 1, 2, 3, 4, 5;

INSERT INTO revocation_counts (bucket, ca_id, station, country, count)
SELECT date_trunc('hour', revoked_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', ca_id, station,
    COALESCE(country, ''), COUNT(*)
FROM issued_certificates WHERE status = 'revoked' GROUP BY 1, 2, 3, 4;

-- Daily certificate counters for GET /v1/stats: see
-- migrations/postgres/0026_certificate_counts_daily.sql for the reasoning. Times are
-- fixed-width RFC 3339 text, so the day of a time is its first 10 characters.

CREATE TABLE certificate_counts_daily (
    bucket          text NOT NULL,
    ca_id           text NOT NULL,
    station         text NOT NULL,
    country         text NOT NULL,
    expires_bucket  text NOT NULL,
    issued          integer NOT NULL,
    superseded      integer NOT NULL,
    revoked         integer NOT NULL,
    PRIMARY KEY (bucket, ca_id, station, country, expires_bucket)
) WITHOUT ROWID;

CREATE TABLE revocation_counts_daily (
    bucket   text NOT NULL,
    ca_id    text NOT NULL,
    station  text NOT NULL,
    country  text NOT NULL,
    count    integer NOT NULL,
    PRIMARY KEY (bucket, ca_id, station, country)
) WITHOUT ROWID;

INSERT INTO certificate_counts_daily
    (bucket, ca_id, station, country, expires_bucket, issued, superseded, revoked)
SELECT substr(bucket, 1, 10) || 'T00:00:00.000000Z', ca_id, station, country,
    substr(expires_bucket, 1, 10) || 'T00:00:00.000000Z',
    SUM(issued), SUM(superseded), SUM(revoked)
FROM certificate_counts GROUP BY 1, 2, 3, 4, 5;

INSERT INTO revocation_counts_daily (bucket, ca_id, station, country, count)
SELECT substr(bucket, 1, 10) || 'T00:00:00.000000Z', ca_id, station, country, SUM(count)
FROM revocation_counts GROUP BY 1, 2, 3, 4;

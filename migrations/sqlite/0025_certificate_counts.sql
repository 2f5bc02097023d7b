-- Certificate counters for GET /v1/stats: see migrations/postgres/0025_certificate_counts.sql
-- for the reasoning. Times are fixed-width RFC 3339 text, so the hour of a time is its first
-- 13 characters.

CREATE TABLE certificate_counts (
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

CREATE TABLE revocation_counts (
    bucket   text NOT NULL,
    ca_id    text NOT NULL,
    station  text NOT NULL,
    country  text NOT NULL,
    count    integer NOT NULL,
    PRIMARY KEY (bucket, ca_id, station, country)
) WITHOUT ROWID;

INSERT INTO certificate_counts
    (bucket, ca_id, station, country, expires_bucket, issued, superseded, revoked)
SELECT substr(issued_at, 1, 13) || ':00:00.000000Z', ca_id, station, COALESCE(country, ''),
    substr(not_after, 1, 13) || ':00:00.000000Z', COUNT(*),
    SUM(status = 'superseded'), SUM(status = 'revoked')
FROM issued_certificates GROUP BY 1, 2, 3, 4, 5;

INSERT INTO revocation_counts (bucket, ca_id, station, country, count)
SELECT substr(revoked_at, 1, 13) || ':00:00.000000Z', ca_id, station, COALESCE(country, ''),
    COUNT(*)
FROM issued_certificates WHERE status = 'revoked' GROUP BY 1, 2, 3, 4;

-- Dashboards (issue 4): durable rejection counts, and indexes for the stats and list queries.
-- See migrations/postgres/0005_dashboards.sql for the reasoning.

CREATE TABLE rejection_counts (
    bucket   text NOT NULL,
    station  text NOT NULL,
    code     text NOT NULL,
    ca_id    text NOT NULL,
    count    integer NOT NULL CHECK (count > 0),
    PRIMARY KEY (bucket, station, code, ca_id)
) WITHOUT ROWID;

-- SQLite compares text bytewise (BINARY) by default: a thing-name prefix is a range on the
-- existing (thing_name, issued_at) index, and the stats queries use the existing
-- (x, issued_at) indexes.

-- A sync under way (ListCertificatesByCA, page by page): where it stands, so that a sync
-- interrupted by a restart, an outage or throttling resumes at the page it reached instead of
-- starting over. One row per (CA, AWS target) while a sync is unfinished; removed when it ends.
CREATE TABLE aws_sync_progress (
    ca_id               TEXT NOT NULL REFERENCES certificate_authorities (id),
    target              TEXT NOT NULL,
    -- The registration the marker belongs to; a different one starts over.
    aws_certificate_id  TEXT NOT NULL,
    -- The marker of the next page to ask for.
    marker              TEXT NOT NULL,
    pages               INTEGER NOT NULL,
    listed              INTEGER NOT NULL,
    matched             INTEGER NOT NULL,
    not_in_ledger       INTEGER NOT NULL,
    unknown_status      INTEGER NOT NULL,
    started_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    PRIMARY KEY (ca_id, target)
);

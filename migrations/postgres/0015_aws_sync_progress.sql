-- A sync under way (ListCertificatesByCA, page by page): where it stands, so that a sync
-- interrupted by a restart, an outage or throttling resumes at the page it reached instead of
-- starting over. One row per (CA, AWS target) while a sync is unfinished; removed when it ends.
CREATE TABLE aws_sync_progress (
    ca_id               text NOT NULL REFERENCES certificate_authorities (id),
    target              text NOT NULL,
    -- The registration the marker belongs to; a different one starts over.
    aws_certificate_id  text NOT NULL,
    -- The marker of the next page to ask for.
    marker              text NOT NULL,
    pages               bigint NOT NULL,
    listed              bigint NOT NULL,
    matched             bigint NOT NULL,
    not_in_ledger       bigint NOT NULL,
    unknown_status      bigint NOT NULL,
    started_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL,
    PRIMARY KEY (ca_id, target)
);

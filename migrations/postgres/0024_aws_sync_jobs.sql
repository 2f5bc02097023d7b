-- The latest sync of each (CA, AWS target): whether it is running, finished or failed, what it
-- found, and which process holds it. A sync is run by one process at a time: the one whose
-- lease has not expired (it renews the lease while it works; a process that dies leaves a lease
-- that expires, and another process, or the same one after a restart, takes the sync over and
-- resumes it at the page `aws_sync_progress` keeps). While a sync runs, its counts are those of
-- `aws_sync_progress`; the row here gets the final ones when it ends.
CREATE TABLE aws_sync_jobs (
    ca_id               text NOT NULL REFERENCES certificate_authorities (id),
    target              text NOT NULL,
    state               text NOT NULL CHECK (state IN ('running', 'finished', 'failed')),
    -- Who started it (a token name, or system:sync for the periodic sync) and the request.
    actor               text NOT NULL,
    request_id          text,
    started_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL,
    finished_at         timestamptz,
    pages               bigint NOT NULL DEFAULT 0,
    listed              bigint NOT NULL DEFAULT 0,
    matched             bigint NOT NULL DEFAULT 0,
    not_in_ledger       bigint NOT NULL DEFAULT 0,
    unknown_status      bigint NOT NULL DEFAULT 0,
    -- What failed (state failed): the kind, AWS's error code when it sent one, the message.
    error_kind          text,
    error_code          text,
    error_message       text,
    -- The process running it and until when its claim holds; null while nobody runs it.
    lease_owner         text,
    lease_expires_at    timestamptz,
    PRIMARY KEY (ca_id, target)
);

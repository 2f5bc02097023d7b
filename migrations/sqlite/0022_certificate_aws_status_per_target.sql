-- AWS IoT's view of each certificate, per registration target; the aws_status of
-- issued_certificates stays as the summary over the targets. See the PostgreSQL migration for
-- the why.
CREATE TABLE certificate_aws_status (
    serial              TEXT NOT NULL REFERENCES issued_certificates (serial),
    target              TEXT NOT NULL,
    aws_status          TEXT NOT NULL,
    aws_first_seen_at   TEXT,
    recorded_at         TEXT NOT NULL,
    issued_at           TEXT NOT NULL,
    PRIMARY KEY (serial, target)
);
CREATE INDEX certificate_aws_status_target
    ON certificate_aws_status (target, aws_status, issued_at, serial);
CREATE INDEX certificate_aws_status_status
    ON certificate_aws_status (aws_status, issued_at, serial);

INSERT INTO certificate_aws_status (serial, target, aws_status, aws_first_seen_at,
    recorded_at, issued_at)
SELECT c.serial,
    COALESCE((SELECT r.target FROM ca_aws_registrations r WHERE r.ca_id = c.ca_id
              ORDER BY CASE WHEN r.target = 'default' THEN 0 ELSE 1 END, r.target LIMIT 1),
             'default'),
    c.aws_status, c.aws_first_seen_at, COALESCE(c.aws_synced_at, c.issued_at), c.issued_at
FROM issued_certificates c
WHERE c.aws_status IS NOT NULL;

-- AWS IoT's view of each certificate, per registration target. A CA registered in several
-- targets (regions, accounts) has its device certificates listed by each: the device connects
-- in one of them, is REVOKED in all of them. The single aws_status of issued_certificates was
-- overwritten by whichever target synced last; it stays, as a summary over the targets that
-- the store keeps in step with these rows (docs/jitp.md, "One certificate, several targets"):
-- ACTIVE when any target reports ACTIVE, REVOKED only when every target that has seen the
-- certificate reports REVOKED, null when none has seen it.
--
-- A row exists once a target has reported the certificate (a sync listed it, or a revocation
-- push made it REVOKED there); no row: that target has never seen it.
CREATE TABLE certificate_aws_status (
    serial              text NOT NULL REFERENCES issued_certificates (serial),
    target              text NOT NULL,
    aws_status          text NOT NULL,
    -- AWS's creation date of the certificate in this target (when the device first connected
    -- there); null when AWS learnt of it from a revocation push.
    aws_first_seen_at   timestamptz,
    recorded_at         timestamptz NOT NULL,
    -- The certificate's issued_at, copied (it never changes), so that `?aws_target=&aws_status=`
    -- pages newest first by (issued_at, serial) from this index alone, as the single-target
    -- filter does from issued_certificates_aws_status, instead of reading every row of the
    -- status to sort them. Ascending, for the reason of 0021.
    issued_at           timestamptz NOT NULL,
    PRIMARY KEY (serial, target)
);
-- `?aws_target=T&aws_status=S`: one target's rows of a status, in page order.
CREATE INDEX certificate_aws_status_target
    ON certificate_aws_status (target, aws_status, issued_at, serial);
-- `?aws_status=S` without aws_target (S other than ACTIVE, which the summary answers):
-- every target's rows of a status, in page order. The primary key serves the health
-- counts, which start from the revoked certificates and look each up by serial.
CREATE INDEX certificate_aws_status_status
    ON certificate_aws_status (aws_status, issued_at, serial);

-- The status of before belongs to the target the CA's registration describes it by: `default`
-- (the [aws] section) when the CA is registered there, else its first target by name, else
-- `default` (a CA no longer registered anywhere).
INSERT INTO certificate_aws_status (serial, target, aws_status, aws_first_seen_at,
    recorded_at, issued_at)
SELECT c.serial,
    COALESCE((SELECT r.target FROM ca_aws_registrations r WHERE r.ca_id = c.ca_id
              ORDER BY CASE WHEN r.target = 'default' THEN 0 ELSE 1 END, r.target LIMIT 1),
             'default'),
    c.aws_status, c.aws_first_seen_at, COALESCE(c.aws_synced_at, c.issued_at), c.issued_at
FROM issued_certificates c
WHERE c.aws_status IS NOT NULL;

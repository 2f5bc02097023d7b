-- scripts/bench-ledger.sh: appends the rows it filled (thing names `fill-...`) to their CAs'
-- hash chains, as src/store/chain.rs links records: hash = SHA-256(prev_hash || seq as 8 bytes
-- big-endian || payload), the payload being the canonical encoding of the ledger row (each
-- field a 4-byte big-endian length and its bytes, FF FF FF FF when absent; text as UTF-8; an
-- instant as its Unix time in microseconds, in decimal). Order: per CA, issuances in
-- (issued_at, serial) order, then revocations in (revoked_at, serial) order, after the
-- records the CA's chain already has: the order in which `factory-ca migrate` adopts
-- unchained rows. `factory-ca ledger verify` checks the result like any other chain. The
-- serial and the SHA-256 values are bytes in their columns (migration 0031) and hex text in
-- the payload.
--
-- A benchmark fixture only: the service never runs this.

CREATE FUNCTION pg_temp.append(ca text, kind text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    r record;
    h bytea;
    s bigint;
    n bigint := 0;
    a_seq bigint[] := '{}';
    a_serial bytea[] := '{}';
    a_prev bytea[] := '{}';
    a_hash bytea[] := '{}';
    next_hash bytea;
BEGIN
    SELECT seq, hash INTO s, h FROM ledger_heads WHERE ca_id = ca FOR UPDATE;
    IF NOT FOUND THEN
        s := 0;
        h := '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
        INSERT INTO ledger_heads (ca_id, seq, hash) VALUES (ca, 0, h);
    END IF;
    -- The payload expressions are spelled out: calls of SQL functions here cost 50 times more.
    FOR r IN EXECUTE CASE kind
        WHEN 'issued' THEN
            $q$SELECT serial, int4send(6) || convert_to('issued', 'UTF8')
                || int4send(octet_length(ca_id)) || convert_to(ca_id, 'UTF8')
                || int4send(2 * octet_length(serial)) || convert_to(encode(serial, 'hex'), 'UTF8')
                || int4send(octet_length(thing_name)) || convert_to(thing_name, 'UTF8')
                || CASE WHEN country IS NULL THEN '\xffffffff'::bytea ELSE int4send(octet_length(country)) || convert_to(country, 'UTF8') END
                || int4send(octet_length(subject)) || convert_to(subject, 'UTF8')
                || int4send(octet_length(key_algorithm)) || convert_to(key_algorithm, 'UTF8')
                || int4send(2 * octet_length(spki_sha256)) || convert_to(encode(spki_sha256, 'hex'), 'UTF8')
                || int4send(2 * octet_length(aws_certificate_id)) || convert_to(encode(aws_certificate_id, 'hex'), 'UTF8')
                || int4send(length(certificate_der)) || certificate_der
                || int4send(octet_length(((extract(epoch FROM not_before) * 1000000)::bigint)::text)) || convert_to(((extract(epoch FROM not_before) * 1000000)::bigint)::text, 'UTF8')
                || int4send(octet_length(((extract(epoch FROM not_after) * 1000000)::bigint)::text)) || convert_to(((extract(epoch FROM not_after) * 1000000)::bigint)::text, 'UTF8')
                || int4send(octet_length(((extract(epoch FROM issued_at) * 1000000)::bigint)::text)) || convert_to(((extract(epoch FROM issued_at) * 1000000)::bigint)::text, 'UTF8')
                || int4send(octet_length(station)) || convert_to(station, 'UTF8')
                || CASE WHEN request_id IS NULL THEN '\xffffffff'::bytea ELSE int4send(octet_length(request_id)) || convert_to(request_id, 'UTF8') END
                || int4send(octet_length(channel)) || convert_to(channel, 'UTF8') AS payload
             FROM issued_certificates WHERE ca_id = $1 AND thing_name LIKE 'fill-%'
             ORDER BY issued_at, serial$q$
        ELSE
            $q$SELECT serial, int4send(7) || convert_to('revoked', 'UTF8')
                || int4send(octet_length(ca_id)) || convert_to(ca_id, 'UTF8')
                || int4send(2 * octet_length(serial)) || convert_to(encode(serial, 'hex'), 'UTF8')
                || int4send(octet_length(((extract(epoch FROM revoked_at) * 1000000)::bigint)::text)) || convert_to(((extract(epoch FROM revoked_at) * 1000000)::bigint)::text, 'UTF8')
                || CASE WHEN revocation_reason IS NULL THEN '\xffffffff'::bytea ELSE int4send(octet_length(revocation_reason)) || convert_to(revocation_reason, 'UTF8') END AS payload
             FROM issued_certificates WHERE ca_id = $1 AND thing_name LIKE 'fill-%'
               AND status = 'revoked'
             ORDER BY revoked_at, serial$q$
        END USING ca
    LOOP
        s := s + 1;
        next_hash := sha256(h || int8send(s) || r.payload);
        a_seq := a_seq || s;
        a_serial := a_serial || r.serial;
        a_prev := a_prev || h;
        a_hash := a_hash || next_hash;
        h := next_hash;
        n := n + 1;
        IF cardinality(a_seq) >= 10000 THEN
            INSERT INTO ledger_chain (ca_id, seq, kind, serial, prev_hash, hash)
            SELECT ca, q, kind, x, p, hh FROM unnest(a_seq, a_serial, a_prev, a_hash) AS u(q, x, p, hh);
            a_seq := '{}'; a_serial := '{}'; a_prev := '{}'; a_hash := '{}';
        END IF;
    END LOOP;
    INSERT INTO ledger_chain (ca_id, seq, kind, serial, prev_hash, hash)
    SELECT ca, q, kind, x, p, hh FROM unnest(a_seq, a_serial, a_prev, a_hash) AS u(q, x, p, hh);
    UPDATE ledger_heads SET seq = s, hash = h WHERE ca_id = ca;
    RETURN n;
END
$$;

SET synchronous_commit = off;
SET work_mem = '256MB';
DO $$
DECLARE
    ca text;
BEGIN
    FOR ca IN SELECT id FROM certificate_authorities ORDER BY id LOOP
        PERFORM pg_temp.append(ca, 'issued');
        PERFORM pg_temp.append(ca, 'revoked');
    END LOOP;
END
$$;

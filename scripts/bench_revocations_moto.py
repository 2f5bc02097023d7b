"""The boto3 side of scripts/bench-revocations.sh: talks to the moto emulator directly, never
through factory-ca, so that what it reports is an independent check.

  ceiling URL SECS
      moto's own capacity on this machine: UpdateCertificate and RegisterCertificate calls per
      second, one client thread and four, SECS seconds each. Runs in its own region
      (ap-northeast-1), so that the certificates it makes are not the benchmark's.
  connect URL REGION CA_PEM_FILE HEX_DER_FILE THREADS
      registers each certificate of HEX_DER_FILE (one DER in hex per line) as ACTIVE under the CA,
      as JITP does when a device connects. Prints one JSON object: registered, errors, seconds.
  check URL REGION CA_CERTIFICATE_ID IDS_FILE
      ListCertificates and ListCertificatesByCA (nextMarker is followed when there is one):
      checks that every certificate id of IDS_FILE (one per line) is in the account and
      REVOKED, and counts those listed under the CA. Prints one JSON object: counts
      by status, missing and not-revoked ids (the first 5), how many are listed under the CA.

Every loop is bounded: by the size of its input or by SECS. AWS credentials are moto's
placeholders; nothing leaves loopback.
"""
import base64
import datetime
import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")


def client(url, region, pool=8, attempts=1):
    """A boto3 AWS IoT client of moto; `attempts` > 1 retries throttled calls (moto started with
    --iot-throttle)."""
    return boto3.client(
        "iot",
        region_name=region,
        endpoint_url=url,
        config=Config(
            max_pool_connections=pool,
            retries={"max_attempts": attempts, "mode": "adaptive" if attempts > 1 else "standard"},
            connect_timeout=10,
            read_timeout=120,
        ),
    )


def self_signed(n):
    """n throwaway self-signed certificates (PEM), for the ceiling measurement only."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    out = []
    for i in range(n):
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"ceiling-{i}")])
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .sign(key, hashes.SHA256())
        )
        out.append(cert.public_bytes(serialization.Encoding.PEM).decode())
    return out


def timed_calls(threads, secs, call):
    """Runs `call(i)` on `threads` threads for `secs` seconds; returns (calls, errors, seconds)."""
    stop = time.monotonic() + secs
    counts = [0] * threads
    errors = [0] * threads

    def worker(t):
        i = t
        while time.monotonic() < stop:
            try:
                call(i)
                counts[t] += 1
            except ClientError:
                errors[t] += 1
            i += threads

    started = time.monotonic()
    ts = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(secs + 60)
    return sum(counts), sum(errors), time.monotonic() - started


def ceiling(url, secs):
    region = "ap-northeast-1"
    iot = client(url, region, pool=8)
    result = {}
    for threads in (1, 4):
        # RegisterCertificate (without a CA: moto does the same work), each a new certificate.
        pems = self_signed(int(secs * 1500) + 100)
        n, errors, took = timed_calls(
            threads,
            secs,
            lambda i: iot.register_certificate_without_ca(
                certificatePem=pems[i % len(pems)], status="ACTIVE"
            ),
        )
        result[f"register_{threads}"] = {"calls": n, "errors": errors, "per_sec": n / took}
        ids = [c["certificateId"] for c in iot.list_certificates(pageSize=250)["certificates"]]
        n, errors, took = timed_calls(
            threads,
            secs,
            lambda i: iot.update_certificate(
                certificateId=ids[i % len(ids)], newStatus="REVOKED" if i % 2 else "ACTIVE"
            ),
        )
        result[f"update_{threads}"] = {"calls": n, "errors": errors, "per_sec": n / took}
    print(json.dumps(result))


def connect(url, region, ca_pem_file, der_file, threads):
    # Exactly as factory-ca stores and registers it (one final newline; psql adds another):
    # moto ties a certificate to its CA only when the CA's PEM matches character for character.
    ca_pem = open(ca_pem_file).read().rstrip("\n") + "\n"
    ders = [line.strip() for line in open(der_file) if line.strip()]
    iot = client(url, region, pool=threads, attempts=10)
    errors = []

    def register(hex_der):
        pem = (
            "-----BEGIN CERTIFICATE-----\n"
            + base64.encodebytes(bytes.fromhex(hex_der)).decode()
            + "-----END CERTIFICATE-----\n"
        )
        try:
            iot.register_certificate(
                certificatePem=pem, caCertificatePem=ca_pem, status="ACTIVE"
            )
            return True
        except ClientError as e:
            errors.append(e.response["Error"]["Code"])
            return False

    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        registered = sum(pool.map(register, ders))
    took = time.monotonic() - started
    print(
        json.dumps(
            {
                "registered": registered,
                "errors": len(errors),
                "error_codes": sorted(set(errors)),
                "seconds": round(took, 1),
                "per_sec": round(registered / took, 1) if took > 0 else None,
            }
        )
    )
    return 0 if not errors else 1


def list_all(call, **args):
    """Every certificate of a listing, following nextMarker (moto answers ListCertificates in one
    page; scripts/moto_server.py pages ListCertificatesByCA); bounded by 10,000 pages."""
    status = {}
    marker = None
    for _ in range(10_000):
        if marker:
            args["marker"] = marker
        page = call(pageSize=250, **args)
        for c in page["certificates"]:
            status[c["certificateId"]] = c["status"]
        marker = page.get("nextMarker")
        if not marker:
            break
    return status


def check(url, region, ca_id, ids_file):
    expected = {line.strip() for line in open(ids_file) if line.strip()}
    iot = client(url, region, attempts=10)
    started = time.monotonic()
    # Every certificate of the account (ListCertificates) and those listed under the CA
    # (ListCertificatesByCA, what a sync reads).
    status = list_all(iot.list_certificates)
    under_ca = list_all(iot.list_certificates_by_ca, caCertificateId=ca_id)
    by_status = {}
    for i in expected & status.keys():
        by_status[status[i]] = by_status.get(status[i], 0) + 1
    missing = sorted(expected - status.keys())
    not_revoked = sorted(i for i in expected & status.keys() if status[i] != "REVOKED")
    not_under_ca = sorted(expected - under_ca.keys())
    # What moto has of certificates it does not list under the CA (the first 5).
    described = []
    for certificate_id in not_under_ca[:5]:
        try:
            d = iot.describe_certificate(certificateId=certificate_id)["certificateDescription"]
            described.append({"status": d.get("status"), "caCertificateId": d.get("caCertificateId")})
        except ClientError as e:
            described.append({"error": e.response["Error"]["Code"]})
    print(
        json.dumps(
            {
                "expected": len(expected),
                "in_account": len(expected & status.keys()),
                "by_status": by_status,
                "missing": len(missing),
                "missing_first": missing[:5],
                "not_revoked": len(not_revoked),
                "not_revoked_first": not_revoked[:5],
                "listed_under_ca": len(expected & under_ca.keys()),
                "not_under_ca_described": described,
                "seconds": round(time.monotonic() - started, 1),
            }
        )
    )
    return 0 if not missing and not not_revoked else 1


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, args = argv[1], argv[2:]
    if cmd == "ceiling" and len(args) == 2:
        ceiling(args[0], float(args[1]))
        return 0
    if cmd == "connect" and len(args) == 5:
        return connect(args[0], args[1], args[2], args[3], int(args[4]))
    if cmd == "check" and len(args) == 4:
        return check(*args)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))

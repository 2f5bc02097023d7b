"""Starts the moto AWS emulator on 127.0.0.1:<port> for the AWS IoT and AWS KMS tests.

`iot.use_valid_cert` makes moto compute certificate ids as the SHA-256 of the certificate DER,
as AWS IoT does.

moto 5.2's KMS `Sign` differs from AWS KMS in two ways that matter to CA keys, so this script
makes it keep AWS's rules (the AWS KMS API reference, Sign):
- it ignores `MessageType`: a `DIGEST` is hashed again and signed as if it were the message.
  Here a `DIGEST` is signed as the digest it is (its length must be the algorithm's hash
  length), and a `RAW` message is limited to 4,096 bytes, as AWS does.
- it signs with keys that are disabled or pending deletion. Here `Sign` and `GetPublicKey` on
  such a key fail with `DisabledException` or `KMSInvalidStateException`, as AWS's do.

moto 5.2 finds an AWS IoT certificate by id (DescribeCertificate, and UpdateCertificate through
it) by scanning every certificate of the region: at 45,000 certificates an UpdateCertificate took
54 ms, at 100,000 it would take well over 100 ms, so moto rather than the caller set the pace of
a large revocation backlog. Here the lookup goes straight to moto's own index of certificates
by id (the same answer, the same ResourceNotFoundException).

moto 5.2 answers ListCertificatesByCA with every certificate of the CA in one page. Here it pages
as AWS IoT does (the AWS IoT API reference, ListCertificatesByCA): `pageSize` from 1 to 250
(outside that, InvalidRequestException), 25 when absent as for AWS IoT's other certificate lists,
oldest first, and `nextMarker` (an opaque base64 string) until the last page; a marker this
server did not hand out is an InvalidRequestException.

`--kms-as-shipped` leaves moto's KMS as it is (the test that shows what the service does with
an endpoint that signs a digest as a message uses it).

`--iot-throttle RATE[:BURST]` makes moto's AWS IoT throttle as AWS does over an account's API
rate: one token bucket for every AWS IoT call (RATE per second, BURST at once, default 1); a
call over it is answered HTTP 429 `ThrottlingException` and counted on stderr, one line
`moto_server: throttled <n so far>` each (scripts/bench-revocations.sh uses it).

`--iot-latency MS` makes every AWS IoT answer take MS milliseconds more, as AWS's do over the
network (a round trip of tens of milliseconds from a factory to its region); the calls still
overlap (moto's server answers each request on its own thread).

Usage: python scripts/moto_server.py PORT [--kms-as-shipped] [--iot-throttle RATE[:BURST]]
       [--iot-latency MS]
"""
import base64
import json
import sys
import threading
import time

from moto.core.config import default_user_config

default_user_config["iot"] = {"use_valid_cert": True}

from moto.server import main  # noqa: E402  (after the configuration on purpose)


def keep_aws_kms_rules() -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, utils
    from moto.core.exceptions import JsonRESTError
    from moto.kms import models, responses
    from moto.kms.exceptions import ValidationException

    class KmsRuleError(JsonRESTError):
        code = 400

    def usable(key):
        if key.key_state == "Disabled":
            raise KmsRuleError("DisabledException", f"{key.arn} is disabled.")
        if key.key_state != "Enabled":
            raise KmsRuleError("KMSInvalidStateException", f"{key.arn} is {key.key_state}.")

    hash_of = {
        "ECDSA_SHA_256": hashes.SHA256,
        "ECDSA_SHA_384": hashes.SHA384,
        "ECDSA_SHA_512": hashes.SHA512,
        "RSASSA_PKCS1_V1_5_SHA_256": hashes.SHA256,
        "RSASSA_PKCS1_V1_5_SHA_384": hashes.SHA384,
        "RSASSA_PKCS1_V1_5_SHA_512": hashes.SHA512,
    }

    shipped_get_public_key = models.KmsBackend.get_public_key

    def get_public_key(self, key_id):
        usable(self.describe_key(key_id))
        return shipped_get_public_key(self, key_id)

    def sign(self):
        key_id = self._get_param("KeyId")
        message = self._get_param("Message")
        message_type = self._get_param("MessageType") or "RAW"
        algorithm = self._get_param("SigningAlgorithm")
        self._validate_key_id(key_id)
        key = self.kms_backend.describe_key(key_id)
        usable(key)
        if algorithm not in (key.signing_algorithms or []):
            raise ValidationException(f"{algorithm} is not a signing algorithm of {key.arn}")
        if algorithm not in hash_of:
            # Other algorithms (PSS, SM2) as moto ships them.
            return shipped_sign(self)
        digest = hash_of[algorithm]()
        if message_type == "RAW":
            if not 1 <= len(message) <= 4096:
                raise ValidationException("a RAW message is 1 to 4096 bytes")
            h = hashes.Hash(digest)
            h.update(message)
            message = h.finalize()
        elif message_type != "DIGEST":
            raise ValidationException(f"MessageType {message_type} is not RAW or DIGEST")
        if len(message) != digest.digest_size:
            raise ValidationException(
                f"a {algorithm} DIGEST is {digest.digest_size} bytes, not {len(message)}"
            )
        prehashed = utils.Prehashed(digest)
        private = key.private_key.private_key
        if algorithm.startswith("ECDSA"):
            signature = private.sign(message, ec.ECDSA(prehashed))
        else:
            signature = private.sign(message, padding.PKCS1v15(), prehashed)
        return json.dumps(
            {
                "KeyId": key.arn,
                "Signature": base64.b64encode(signature).decode(),
                "SigningAlgorithm": algorithm,
            }
        )

    shipped_sign = responses.KmsResponse.sign
    models.KmsBackend.get_public_key = get_public_key
    responses.KmsResponse.sign = sign


def find_iot_certificates_by_id() -> None:
    from moto.iot import models
    from moto.iot.exceptions import ResourceNotFoundException

    def describe_certificate(self, certificate_id):
        cert = self.certificates.get(certificate_id)
        if cert is None:
            raise ResourceNotFoundException()
        return cert

    models.IoTBackend.describe_certificate = describe_certificate


def page_certificates_by_ca() -> None:
    from moto.core.responses import ActionResult
    from moto.iot.exceptions import InvalidRequestException
    from moto.iot.responses import IoTResponse

    default_page, max_page = 25, 250

    def list_certificates_by_ca(self):
        ca_certificate_id = self._get_param("caCertificateId")
        page_size = self._get_int_param("pageSize", default_page)
        if not 1 <= page_size <= max_page:
            raise InvalidRequestException(f"pageSize must be from 1 to {max_page}")
        marker = self._get_param("marker")
        start = 0
        if marker:
            try:
                start = int(base64.b64decode(marker, validate=True).decode())
            except ValueError:
                raise InvalidRequestException(f"marker {marker!r} is not valid") from None
            if start < 0:
                raise InvalidRequestException(f"marker {marker!r} is not valid")
        # The backend keeps certificates in creation order.
        certificates = self.iot_backend.list_certificates_by_ca(ca_certificate_id)
        page = certificates[start : start + page_size]
        result = {"certificates": [c.to_dict() for c in page]}
        if start + page_size < len(certificates):
            result["nextMarker"] = base64.b64encode(str(start + page_size).encode()).decode()
        return ActionResult(result)

    IoTResponse.list_certificates_by_ca = list_certificates_by_ca


def throttle_iot(rate: float, burst: int) -> None:
    from moto.iot.responses import IoTResponse

    lock = threading.Lock()
    state = {"tokens": float(burst), "at": time.monotonic(), "throttled": 0}
    shipped_dispatch = IoTResponse._dispatch

    def dispatch(self, request, full_url, headers):
        with lock:
            now = time.monotonic()
            state["tokens"] = min(burst, state["tokens"] + (now - state["at"]) * rate)
            state["at"] = now
            allowed = state["tokens"] >= 1.0
            if allowed:
                state["tokens"] -= 1.0
            else:
                state["throttled"] += 1
                print(f"moto_server: throttled {state['throttled']}", file=sys.stderr, flush=True)
        if not allowed:
            return (
                429,
                {"x-amzn-ErrorType": "ThrottlingException", "Content-Type": "application/json"},
                json.dumps({"message": "Rate exceeded"}),
            )
        return shipped_dispatch(self, request, full_url, headers)

    IoTResponse._dispatch = dispatch


def delay_iot(seconds: float) -> None:
    from moto.iot.responses import IoTResponse

    shipped_dispatch = IoTResponse._dispatch

    def dispatch(self, request, full_url, headers):
        time.sleep(seconds)
        return shipped_dispatch(self, request, full_url, headers)

    IoTResponse._dispatch = dispatch


find_iot_certificates_by_id()
page_certificates_by_ca()
args = sys.argv[1:]
if "--iot-latency" in args:
    at = args.index("--iot-latency")
    delay_iot(float(args[at + 1]) / 1000.0)
    del args[at : at + 2]
if "--iot-throttle" in args:
    at = args.index("--iot-throttle")
    rate, _, burst = args[at + 1].partition(":")
    throttle_iot(float(rate), int(burst or 1))
    del args[at : at + 2]
if "--kms-as-shipped" in args:
    args.remove("--kms-as-shipped")
else:
    keep_aws_kms_rules()

main(["-H", "127.0.0.1", "-p", args[0]])

"""Starts the moto AWS emulator on 127.0.0.1:<port> for the AWS IoT tests.

`iot.use_valid_cert` makes moto compute certificate ids as the SHA-256 of the certificate DER,
as AWS IoT does. Usage: python scripts/moto_server.py PORT
"""
import sys

from moto.core.config import default_user_config

default_user_config["iot"] = {"use_valid_cert": True}

from moto.server import main  # noqa: E402  (after the configuration on purpose)

main(["-H", "127.0.0.1", "-p", sys.argv[1]])

#!/usr/bin/env bash
# Runs the whole test suite: unit tests, and the integration tests on SQLite and on PostgreSQL
# (a fresh database per test on the server named by TEST_POSTGRES_URL, default the local
# trust-auth one), the openssl, rustls-webpki and Mosquitto verifier tests, and the
# aws-sdk-iot tests against the moto emulator (installed into .venv on first run), and the
# dashboard in headless Chromium through chromedriver (its screenshot goes to
# target/test-artifacts/dashboard.png).
# Extra arguments go to `cargo test` (e.g. a test name filter).
set -euo pipefail
cd "$(dirname "$0")/.."

export TEST_POSTGRES_URL="${TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}"
export PATH="$PATH:/usr/sbin:/sbin"

missing=()
for tool in openssl mosquitto mosquitto_pub psql chromium chromedriver; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "scripts/test.sh: missing ${missing[*]}; on Debian: apt-get install openssl mosquitto mosquitto-clients postgresql chromium chromium-driver" >&2
  exit 1
fi
if ! psql "$TEST_POSTGRES_URL/postgres" -w -Atqc 'SELECT 1' >/dev/null 2>&1; then
  echo "scripts/test.sh: PostgreSQL is not reachable at $TEST_POSTGRES_URL" >&2
  echo "  start it (pg_ctlcluster 15 main start) or set TEST_POSTGRES_URL" >&2
  exit 1
fi

# The moto AWS emulator for the aws-sdk-iot tests, in a virtualenv of its own.
MOTO_VERSION=5.2.5
if ! .venv/bin/python -c "import moto, sys; sys.exit(moto.__version__ != '$MOTO_VERSION')" 2>/dev/null; then
  echo "scripts/test.sh: installing moto[server]==$MOTO_VERSION into .venv"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
fi
export MOTO_PYTHON="$PWD/.venv/bin/python"

# This run's test databases carry a prefix of their own, so that runs from several checkouts can
# share one server: only ours are dropped at the end.
export TEST_POSTGRES_DB_PREFIX="factory_ca_test_$$_"
drop_test_databases() {
  psql "$TEST_POSTGRES_URL/postgres" -w -Atqc \
    "SELECT datname FROM pg_database WHERE datname LIKE 'factory\_ca\_test\_$$\_%'" |
    while read -r db; do
      psql "$TEST_POSTGRES_URL/postgres" -w -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null
    done
}
drop_test_databases
trap drop_test_databases EXIT

cargo test --locked "$@"

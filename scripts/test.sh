#!/usr/bin/env bash
# Runs the whole test suite: the unit tests, tests/routes and tests/security (the server in
# process, on SQLite and on PostgreSQL: a fresh database per test on the server named by
# TEST_POSTGRES_URL, default the local one), and the system tests of tests/system (Chromium and
# chromedriver, Mosquitto, curl, the moto AWS emulator, a private PostgreSQL cluster, a
# million-row ledger). Plain `cargo test` runs all but the system tests.
#
# It sets itself up. As root on Debian it installs the packages the tests need and starts the
# local PostgreSQL when it does not answer; otherwise it prints the one command to run and
# stops. On its first run it installs moto into .venv (from PyPI).
# Extra arguments go to `cargo test` (e.g. a test name filter).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"

# What the tests run, as Debian packages. softhsm2, opensc and wrk are for the PKCS#11 and
# load tests; procps brings the `kill` the shutdown tests signal with.
PACKAGES=(openssl mosquitto mosquitto-clients postgresql postgresql-client chromium
  chromium-driver python3-venv softhsm2 opensc wrk curl procps)

is_root() { [ "$(id -u)" -eq 0 ]; }

if command -v apt-get >/dev/null && command -v dpkg-query >/dev/null; then
  missing=()
  for package in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'ok installed' ||
      missing+=("$package")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    if ! is_root; then
      echo "scripts/test.sh: missing Debian packages; run:" >&2
      echo "  sudo apt-get install -y ${missing[*]}" >&2
      exit 1
    fi
    echo "scripts/test.sh: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
else
  missing=()
  for tool in openssl mosquitto mosquitto_pub psql pg_ctl chromium chromedriver python3 \
    softhsm2-util pkcs11-tool wrk curl kill; do
    command -v "$tool" >/dev/null || missing+=("$tool")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "scripts/test.sh: missing ${missing[*]}; install what Debian calls:" >&2
    echo "  apt-get install -y ${PACKAGES[*]}" >&2
    exit 1
  fi
fi

# PostgreSQL: the local server unless TEST_POSTGRES_URL names another.
if [ -z "${TEST_POSTGRES_URL:-}" ]; then
  if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
    version=$(ls /etc/postgresql 2>/dev/null | sort -n | tail -1)
    if ! is_root || [ -z "$version" ]; then
      echo "scripts/test.sh: PostgreSQL does not answer at 127.0.0.1:5432; start it:" >&2
      echo "  sudo pg_ctlcluster ${version:-<version>} main start" >&2
      echo "  (or set TEST_POSTGRES_URL to a server where user postgres may create databases)" >&2
      exit 1
    fi
    echo "scripts/test.sh: starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start
    for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
  fi
  TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:5432"
  answers() { psql "$1/postgres" -w -Atqc 'SELECT 1' >/dev/null 2>&1; }
  if ! answers "$TEST_POSTGRES_URL"; then
    # A fresh Debian install asks for a password on TCP (scram-sha-256 in pg_hba.conf): the
    # tests use the password 'postgres', set here once.
    TEST_POSTGRES_URL="postgres://postgres:postgres@127.0.0.1:5432"
    if ! answers "$TEST_POSTGRES_URL"; then
      if ! is_root; then
        echo "scripts/test.sh: PostgreSQL asks user postgres for a password; give it one:" >&2
        echo "  sudo -u postgres psql -c \"ALTER USER postgres PASSWORD 'postgres'\"" >&2
        exit 1
      fi
      runuser -u postgres -- psql -qc "ALTER USER postgres PASSWORD 'postgres'"
    fi
  fi
fi
export TEST_POSTGRES_URL
if ! psql "$TEST_POSTGRES_URL/postgres" -w -Atqc 'SELECT 1' >/dev/null 2>&1; then
  echo "scripts/test.sh: PostgreSQL is not reachable at $TEST_POSTGRES_URL" >&2
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

# The #[route] attribute of the HTTP handlers (macros/): its own crate, its own unit tests.
cargo test --locked -p factory-ca-macros
cargo test --locked --features system-tests,certificate-provider "$@"

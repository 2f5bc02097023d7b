#!/usr/bin/env bash
# Issuance throughput and latency by CA key backend (docs/benchmarks.md, "CA key backends"):
# an ECDSA P-256 CA whose key is a file, one whose key is in a SoftHSM2 token, and one whose key
# is in AWS KMS as the moto emulator serves it, back to back in one run. For each, a fresh
# PostgreSQL database and data directory, `factory-ca serve`, and `factory-ca bench` at each
# connection count. Prints a markdown table on stdout; progress goes to stderr.
#
# Needs: jq, psql, curl, softhsm2-util, a PostgreSQL server with trust auth for user postgres,
# and a Python with moto[server] and boto3 (MOTO_PYTHON, default .venv/bin/python, which
# scripts/test.sh installs). Every run is bounded in time; databases, token, emulator and data
# are removed on exit.
#
#   BENCH_BIN             the factory-ca binary (default: this checkout's release build, built or
#                         brought up to date first); a debug binary works and its figures say so
#   BENCH_PROFILE         what the report calls the build (default: debug when BENCH_BIN is
#                         under a debug/ folder, else release)
#   BENCH_REQUESTS        certificates per run (default 2000)
#   BENCH_CONNECTIONS     connection counts (default "1 16")
#   BENCH_BACKENDS        key backends (default "file pkcs11 awskms")
#   BENCH_POSTGRES_URL    server URL without database (default postgres://postgres@127.0.0.1:5432)
#   BENCH_DURATION_LIMIT  hard stop of one bench run in seconds (default 300)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/bench.sh

N=${BENCH_REQUESTS:-2000}
PG=${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}
LIMIT=${BENCH_DURATION_LIMIT:-300}
PYTHON=${MOTO_PYTHON:-.venv/bin/python}
MODULE=/usr/lib/softhsm/libsofthsm2.so
read -r -a CONNECTIONS <<<"${BENCH_CONNECTIONS:-1 16}"
read -r -a BACKENDS <<<"${BENCH_BACKENDS:-file pkcs11 awskms}"
STAMP=$(date -u +%Y%m%d%H%M%S)
WORK=$(mktemp -d -t factory-ca-bench-keys.XXXXXX)
DATABASES=()
SERVER_PID=""
MOTO_PID=""

cleanup() {
    stop_pid "$SERVER_PID"
    stop_pid "$MOTO_PID"
    drop_databases "${DATABASES[@]}"
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM


BIN=$(release_bin)
PROFILE=${BENCH_PROFILE:-release}
[[ -z ${BENCH_PROFILE:-} && $BIN == */debug/* ]] && PROFILE=debug
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
# Without this the per-station rate limit, when the service has one, would cap a benchmark
# that runs as one station at that limit instead of at the service's capacity.
EXTRA_ENV=()
if grep -q '^station_rate_per_sec' config/default.toml 2>/dev/null; then
    EXTRA_ENV+=(FACTORY_CA_SERVER__STATION_RATE_PER_SEC=0)
fi

# The emulator's dummy credentials, in the standard chain's variables (the service reads them).
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_EC2_METADATA_DISABLED=true
unset AWS_PROFILE AWS_SESSION_TOKEN

MOTO_URL=""
KMS_KEY=""
start_moto() {
    local port
    port=$(free_port)
    MOTO_URL="http://127.0.0.1:$port"
    "$PYTHON" scripts/moto_server.py "$port" >"$WORK/moto.log" 2>&1 &
    MOTO_PID=$!
    for _ in $(seq 1 300); do
        curl -s --max-time 1 -o /dev/null "$MOTO_URL" && break
        sleep 0.2
    done
    KMS_KEY=$("$PYTHON" -c "
import boto3
kms = boto3.client('kms', endpoint_url='$MOTO_URL', region_name='us-east-1')
print(kms.create_key(KeySpec='ECC_NIST_P256', KeyUsage='SIGN_VERIFY')['KeyMetadata']['KeyId'])")
}

PIN=bench-user-pin
start_softhsm() {
    mkdir -p "$WORK/tokens"
    printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
        "$WORK/tokens" >"$WORK/softhsm2.conf"
    export SOFTHSM2_CONF=$WORK/softhsm2.conf
    softhsm2-util --init-token --free --label bench --so-pin 12345678 --pin "$PIN" >/dev/null
}

ROWS=()
for backend in "${BACKENDS[@]}"; do
    db="factory_ca_bench_keys_${STAMP}_$backend"
    timeout 60 psql "$PG/postgres" -qX -v ON_ERROR_STOP=1 -c "CREATE DATABASE $db" >/dev/null
    DATABASES+=("$db")
    data="$WORK/data-$backend"
    mkdir -p "$data"
    port=$(free_port)
    url="http://127.0.0.1:$port"
    env_server=(
        FACTORY_CA_DATABASE__URL="$PG/$db"
        FACTORY_CA_DATA_DIR="$data"
        FACTORY_CA_SERVER__LISTEN="127.0.0.1:$port"
        FACTORY_CA_LOG__LEVEL=warn
        FACTORY_CA_CA__CREATE_ON_FIRST_START=false
        "${EXTRA_ENV[@]}"
    )
    case $backend in
        file) key_args=() ;;
        pkcs11)
            start_softhsm
            env_server+=(FACTORY_CA_PKCS11__MODULE="$MODULE" FACTORY_CA_PKCS11__PIN_ENV=BENCH_PIN)
            export BENCH_PIN=$PIN
            key_args=(--key-uri "pkcs11:token=bench;object=issuing")
            ;;
        awskms)
            start_moto
            env_server+=(FACTORY_CA_AWS__KMS_ENDPOINT_URL="$MOTO_URL")
            key_args=(--key-uri "awskms:$KMS_KEY")
            ;;
        *) log "unknown backend $backend"; exit 2 ;;
    esac
    env "${env_server[@]}" timeout 120 "$BIN" ca create --algorithm ecdsa-p256 \
        --common-name "Bench $backend CA" --country JP "${key_args[@]}" >&2
    token=$(env "${env_server[@]}" timeout 60 "$BIN" token create --role station --name bench)
    log "$backend: starting the service on $url (database $db)"
    env "${env_server[@]}" "$BIN" serve >"$WORK/serve-$backend.out" 2>"$WORK/serve-$backend.err" &
    SERVER_PID=$!
    wait_ready "$SERVER_PID" "$url" "$WORK/serve-$backend.err" 60
    for c in "${CONNECTIONS[@]}"; do
        out="$WORK/$backend-$c.json"
        log "$backend: $N certificates over $c connection(s)"
        cpu0=$(proc_cpu "$SERVER_PID")
        moto_cpu0=$([[ -n $MOTO_PID ]] && proc_cpu "$MOTO_PID" || echo 0)
        rc=0
        BENCH_STATION_TOKEN="$token" timeout $((LIMIT + 120)) "$BIN" bench --url "$url" \
            --requests "$N" --concurrency "$c" --duration-limit "$LIMIT" \
            --token-env BENCH_STATION_TOKEN --json >"$out" 2>"$WORK/$backend-$c.err" || rc=$?
        cpu=$(awk -v a="$cpu0" -v b="$(proc_cpu "$SERVER_PID")" 'BEGIN { print b - a }')
        moto_cpu=$(awk -v a="$moto_cpu0" -v b="$([[ -n $MOTO_PID ]] && proc_cpu "$MOTO_PID" || echo 0)" 'BEGIN { print b - a }')
        if ! jq -e . "$out" >/dev/null 2>&1; then
            tail -n 20 "$WORK/$backend-$c.err" >&2
            ROWS+=("| $backend | $c | $N | failed (exit $rc) | | | | | | | |")
            continue
        fi
        ROWS+=("$(jq -r --arg b "$backend" --arg cpu "$cpu" --arg moto "$moto_cpu" '
            def f(d): . * pow(10; d) | round / pow(10; d);
            def per(x): if .succeeded > 0 then (x * 1e6 / .succeeded | round | tostring) else "-" end;
            ((.failed + .not_sent) | tostring) as $n_err
            | (if (.errors | length) > 0
               then " (" + (.errors | to_entries | map("\(.key): \(.value)") | join(", ")) + ")"
               else "" end) as $codes
            | "| \($b) | \(.concurrency) | \(.requests) | \(.throughput | round) | \(.latency_ms.p50 | f(2)) | \(.latency_ms.p90 | f(2)) | \(.latency_ms.p99 | f(2)) | \(.latency_ms.max | f(2)) | \($n_err)\($codes) | \(per($cpu | tonumber)) | "
              + (if $b == "awskms" then per($moto | tonumber) else "-" end) + " |"
            ' "$out")")
    done
    stop_pid "$SERVER_PID"
    SERVER_PID=""
    if [[ $backend == awskms ]]; then
        stop_pid "$MOTO_PID"
        MOTO_PID=""
    fi
done

echo
echo "Machine: $(nproc) cores ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), load average before the run $LOAD_BEFORE;"
echo "factory-ca $PROFILE build; PostgreSQL $(timeout 60 psql "$PG/postgres" -qAtX -c 'SHOW server_version'), group commit on;"
echo "ECDSA P-256 CA keys; $N requests per run; ECDSA P-256 device keys; $(date -u +%Y-%m-%dT%H:%MZ)."
echo
echo "| key backend | connections | requests | certs/s | p50 ms | p90 ms | p99 ms | max ms | errors | service CPU µs/cert | moto CPU µs/cert |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
printf '%s\n' "${ROWS[@]}"

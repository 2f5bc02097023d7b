#!/usr/bin/env bash
# Instructions per certificate of the service, counted by valgrind's callgrind: a figure that
# other programs on the machine do not change, for comparing two builds back to back
# (docs/benchmarks.md). Starts `factory-ca serve` under callgrind on a fresh PostgreSQL database
# (group commit on, ECDSA P-256 CA unless CALLGRIND_ALGORITHM says otherwise), warms it up, zeroes
# the counters, sends CALLGRIND_REQUESTS distinct CSRs with `factory-ca bench`, dumps the
# counters and prints the instructions per certificate and the functions that spent the most
# (inclusive and self).
#
#   BENCH_BIN               the factory-ca release binary (required)
#   CALLGRIND_REQUESTS      certificates counted (default 2000)
#   CALLGRIND_CONNECTIONS   concurrent connections (default 16)
#   CALLGRIND_ALGORITHM     CA algorithm (default ecdsa-p256)
#   CALLGRIND_OUT           keep the callgrind output file here (default: a temporary file)
#   CALLGRIND_ENV           extra environment for the service, e.g. LD_PRELOAD=... (optional)
#   BENCH_POSTGRES_URL      server URL without database (default postgres://postgres@127.0.0.1:5432)
#   BENCH_POSTGRES_PARAMS   connection parameters (default "sslmode=disable", as scripts/bench.sh:
#                           sqlx's default "prefer" would count TLS to PostgreSQL, which the
#                           native figures leave out)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/bench.sh

BIN=${BENCH_BIN:?set BENCH_BIN to a factory-ca release binary}
N=${CALLGRIND_REQUESTS:-2000}
C=${CALLGRIND_CONNECTIONS:-16}
ALG=${CALLGRIND_ALGORITHM:-ecdsa-p256}
PG=${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}
PG_PARAMS=${BENCH_POSTGRES_PARAMS-sslmode=disable}
for tool in valgrind callgrind_control callgrind_annotate psql curl python3; do
    command -v "$tool" >/dev/null || { echo "bench-callgrind.sh needs $tool" >&2; exit 2; }
done
WORK=$(mktemp -d -t factory-ca-callgrind.XXXXXX)
DB="factory_ca_callgrind_$(date -u +%Y%m%d%H%M%S)_$$"
OUT=${CALLGRIND_OUT:-$WORK/callgrind.out}
PID=""
cleanup() {
    stop_pid "$PID" TERM 60
    drop_databases "$DB"
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

timeout 60 psql "$PG/postgres" -qX -v ON_ERROR_STOP=1 -c "CREATE DATABASE $DB" >/dev/null
port=$(free_port)
url="http://127.0.0.1:$port"
env_server=(
    FACTORY_CA_DATABASE__URL="$PG/$DB${PG_PARAMS:+?$PG_PARAMS}"
    FACTORY_CA_DATA_DIR="$WORK/data"
    FACTORY_CA_CA__ALGORITHM="$ALG"
    FACTORY_CA_SERVER__LISTEN="127.0.0.1:$port"
    FACTORY_CA_LOG__LEVEL=warn
    FACTORY_CA_SERVER__STATION_RATE_PER_SEC=0
    # Under valgrind the first connection can take longer than the default 5 s on a busy
    # machine.
    FACTORY_CA_DATABASE__CONNECT_TIMEOUT_SECS=60
)
read -r -a extra <<<"${CALLGRIND_ENV:-}"
mkdir -p "$WORK/data"
log "starting the service under callgrind on $url"
env "${env_server[@]}" "${extra[@]}" valgrind --tool=callgrind --callgrind-out-file="$OUT" \
    --dump-instr=no --collect-jumps=no "$BIN" serve >"$WORK/serve.out" 2>"$WORK/serve.err" &
PID=$!
wait_ready "$PID" "$url" "$WORK/serve.err"
token=$(env "${env_server[@]}" timeout 120 "$BIN" token create --role station --name callgrind)
bench() { # requests, prefix
    BENCH_TOKEN="$token" timeout 1800 "$BIN" bench --url "$url" --requests "$1" --concurrency "$C" \
        --prefix "$2" --duration-limit 1700 --token-env BENCH_TOKEN --json
}
log "warming up (300 certificates)"
bench 300 warm >/dev/null
callgrind_control -z "$PID" >/dev/null
log "counting $N certificates over $C connections"
bench "$N" counted >"$WORK/bench.json"
callgrind_control -d "$PID" >/dev/null
sleep 1
dump=$(ls -t "$OUT".* 2>/dev/null | head -n 1 || true)
[[ -n $dump ]] || { log "callgrind wrote no dump"; exit 1; }
succeeded=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["succeeded"])' "$WORK/bench.json")
total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }')
echo "certificates: $succeeded; instructions: $total; per certificate: $((total / succeeded))"
echo
echo "Inclusive, top 40:"
callgrind_annotate --inclusive=yes "$dump" 2>/dev/null | sed -n '/^Ir/,$p' | sed -n '1,42p'
echo
echo "Self per certificate, top 40:"
python3 scripts/lib/callgrind_self.py "$succeeded" 40 "$dump"

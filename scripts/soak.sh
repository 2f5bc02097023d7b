#!/usr/bin/env bash
# Memory soak (docs/benchmarks.md): the release service on a fresh PostgreSQL database under continuous
# load from `factory-ca bench` for SOAK_SECS (default 600), sampling the service's resident
# memory every 5 seconds. Prints the samples' summary (first, last, peak RSS and VmHWM), the
# certificates issued and the errors. Everything is bounded in time; the database is dropped on
# exit.
#
#   SOAK_SECS            how long the load runs (default 600)
#   SOAK_CONNECTIONS     concurrent connections (default 64)
#   SOAK_BATCH           certificates per bench round (default 20000; each round pre-generates
#                        its CSRs, so memory of the load generator stays bounded too)
#   BENCH_BIN            an already built binary (default: build target/release/factory-ca)
#   BENCH_POSTGRES_URL   server URL without database (default postgres://postgres@127.0.0.1:5432)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/bench.sh

SECS=${SOAK_SECS:-600}
CONNS=${SOAK_CONNECTIONS:-64}
BATCH=${SOAK_BATCH:-20000}
PG=${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}
WORK=$(mktemp -d -t factory-ca-soak.XXXXXX)
DB="factory_ca_soak_$(date -u +%Y%m%d%H%M%S)"
SERVER_PID=""


cleanup() {
    stop_server
    drop_databases "$DB"
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

BIN=$(release_bin)

timeout 60 psql "$PG/postgres" -qAtX -v ON_ERROR_STOP=1 -c "CREATE DATABASE $DB" >/dev/null
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port"
env_server=(
    FACTORY_CA_DATABASE__URL="$PG/$DB"
    FACTORY_CA_DATA_DIR="$WORK/data"
    FACTORY_CA_SERVER__LISTEN="127.0.0.1:$port"
    FACTORY_CA_SERVER__STATION_RATE_PER_SEC=0
    FACTORY_CA_LOG__LEVEL=warn
)
env "${env_server[@]}" "$BIN" serve >"$WORK/serve.out" 2>"$WORK/serve.err" &
SERVER_PID=$!
wait_ready "$SERVER_PID" "$url" "$WORK/serve.err" 60
token=$(env "${env_server[@]}" timeout 60 "$BIN" token create --role station --name soak)

rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$SERVER_PID/status"; }
hwm_kib() { awk '/^VmHWM/ { print $2 }' "/proc/$SERVER_PID/status"; }

first=$(rss_kib)
log "service up on $url, RSS $((first / 1024)) MiB; loading for $SECS s at $CONNS connections"
(
    while sleep 5; do
        echo "$(date +%s) $(rss_kib)"
    done
) >"$WORK/rss.txt" 2>/dev/null &
SAMPLER=$!

deadline=$((SECONDS + SECS))
issued=0
errors=0
rounds=0
while ((SECONDS < deadline)); do
    left=$((deadline - SECONDS))
    rounds=$((rounds + 1))
    out="$WORK/round-$rounds.json"
    SOAK_STATION_TOKEN="$token" timeout $((left + 120)) "$BIN" bench --url "$url" \
        --requests "$BATCH" --concurrency "$CONNS" --duration-limit "$((left + 60))" \
        --prefix "soak-$rounds" --token-env SOAK_STATION_TOKEN --json >"$out" 2>/dev/null || true
    if jq -e . "$out" >/dev/null 2>&1; then
        issued=$((issued + $(jq -r .succeeded "$out")))
        errors=$((errors + $(jq -r '.failed + .not_sent' "$out")))
        log "round $rounds: $(jq -r '"\(.succeeded) issued, \(.throughput | round)/s, p99 \(.latency_ms.p99) ms"' "$out"), RSS $(($(rss_kib) / 1024)) MiB"
    else
        log "round $rounds produced no result"
        errors=$((errors + 1))
    fi
done
kill "$SAMPLER" 2>/dev/null || true
wait "$SAMPLER" 2>/dev/null || true

last=$(rss_kib)
hwm=$(hwm_kib)
peak=$(awk 'BEGIN { m = 0 } { if ($2 > m) m = $2 } END { print m }' "$WORK/rss.txt")
samples=$(wc -l <"$WORK/rss.txt")
ledger=$(timeout 60 psql "$PG/$DB" -qAtX -c "SELECT count(*) FROM issued_certificates")
# Memory growth over the second half of the run: a leak shows as a steady climb there.
half=$(awk -v n="$samples" 'NR == int(n / 2) + 1 { print $2 }' "$WORK/rss.txt")
echo "| seconds | connections | certificates issued | in the ledger | errors | RSS at start | RSS at half time | RSS at end | peak RSS sampled | VmHWM |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
echo "| $SECS | $CONNS | $issued | $ledger | $errors | $((first / 1024)) MiB | $((${half:-0} / 1024)) MiB | $((last / 1024)) MiB | $((peak / 1024)) MiB | $((hwm / 1024)) MiB |"
((errors == 0))

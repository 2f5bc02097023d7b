#!/usr/bin/env bash
# PostgreSQL's instructions per certificate, counted by valgrind's callgrind: the database's
# side of scripts/bench-callgrind.sh (docs/benchmarks.md). Makes a throwaway PostgreSQL cluster
# in a temporary directory and, for each connection count C, runs it twice from the same copy,
# every process of it under callgrind (autovacuum off, so that no background job falls into the
# count; no checkpoint but the shutdown's and no background writer, whose work depends on the
# clock; fsync on): each run starts `factory-ca serve` (release build, not under valgrind) with
# group commit batches of at most C rows, warms it up with 300 certificates, sends R
# certificates over C connections with `factory-ca bench`, and stops the service and the
# cluster, whose processes then write their counts. R is CALLGRIND_REQUESTS in the second run
# and a tenth of it in the first, so that the difference between the two is the cost of the
# certificates between them: start-up, warm-up and shutdown cancel out. It prints PostgreSQL's
# instructions per certificate and per committed transaction (how full the batches get depends
# on timing: the transactions show it), then, for the last count, the functions that spent the
# most per certificate (the second run's profile less the first's). Runs of one build differ by
# up to ~10 % (docs/benchmarks.md).
#
#   BENCH_BIN               the factory-ca release binary (required)
#   CALLGRIND_REQUESTS      certificates of the second run (default 2000)
#   CALLGRIND_CONNECTIONS   connection counts (default "1 25")
#   CALLGRIND_ALGORITHM     CA algorithm (default ecdsa-p256)
#   CALLGRIND_TOP           functions listed (default 30)
#   PG_BINDIR               PostgreSQL's server programs (default: the newest
#                           /usr/lib/postgresql/*/bin)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/bench.sh
ROOT=$(pwd)

BIN=${BENCH_BIN:?set BENCH_BIN to a factory-ca release binary}
N=${CALLGRIND_REQUESTS:-2000}
read -r -a CONNECTIONS <<<"${CALLGRIND_CONNECTIONS:-1 25}"
ALG=${CALLGRIND_ALGORITHM:-ecdsa-p256}
TOP=${CALLGRIND_TOP:-30}
BINDIR=${PG_BINDIR:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
for tool in valgrind psql curl python3 "$BINDIR/initdb" "$BINDIR/postgres"; do
    command -v "$tool" >/dev/null || { echo "bench-callgrind-postgres.sh needs $tool" >&2; exit 2; }
done
WORK=$(mktemp -d -t factory-ca-callgrind-pg.XXXXXX)
chmod 755 "$WORK"
PG_PID=""
SERVER_PID=""
# initdb and postgres refuse to run as root: as root, the cluster belongs to `postgres`.
as_owner() {
    if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}
cleanup() {
    stop_pid "$SERVER_PID" TERM 60
    # Under valgrind every process writes its profile on the way out: a fast shutdown can take a
    # while, and nothing of the cluster is kept.
    stop_pid "$PG_PID" INT 30
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$WORK/pg"
[[ $(id -u) == 0 ]] && chown postgres "$WORK/pg"
as_owner "$BINDIR/initdb" -D "$WORK/pg/template" -U postgres -A trust --no-sync >"$WORK/initdb.log"

# One run: a copy of the new cluster under callgrind, the service on it, `warm-up + requests`
# certificates; writes "certificates transactions instructions" to $WORK/<name>.result once
# every process of the cluster has exited.
run() { # connections, requests, name
    local c=$1 requests=$2 name=$3 pg_port port url db=factory_ca token after total f
    as_owner cp -a "$WORK/pg/template" "$WORK/pg/$name"
    as_owner mkdir "$WORK/pg/$name-cg"
    pg_port=$(free_port)
    PG="postgres://postgres@127.0.0.1:$pg_port"
    as_owner valgrind --tool=callgrind --trace-children=yes --dump-instr=no --collect-jumps=no \
        --callgrind-out-file="$WORK/pg/$name-cg/pg.%p" \
        "$BINDIR/postgres" -D "$WORK/pg/$name" -p "$pg_port" -k "$WORK/pg" \
        -c listen_addresses=127.0.0.1 -c autovacuum=off -c fsync=on -c synchronous_commit=on \
        -c checkpoint_timeout=1d -c max_wal_size=10GB -c bgwriter_lru_maxpages=0 \
        >"$WORK/$name-pg.out" 2>"$WORK/$name-pg.err" &
    local launcher=$!
    for _ in $(seq 1 600); do
        kill -0 "$launcher" 2>/dev/null || { tail -n 20 "$WORK/$name-pg.err" >&2; exit 1; }
        psql "$PG/postgres" -qAtX -c 'SELECT 1' >/dev/null 2>&1 && break
        sleep 0.5
    done
    # The postmaster itself, not the runuser or subshell that started it, takes the signal.
    PG_PID=$(head -n 1 "$WORK/pg/$name/postmaster.pid")
    psql_admin "CREATE DATABASE $db" >/dev/null
    port=$(free_port)
    url="http://127.0.0.1:$port"
    local env_server=(
        FACTORY_CA_DATABASE__URL="$PG/$db?sslmode=disable"
        FACTORY_CA_DATA_DIR="$WORK/$name-data"
        FACTORY_CA_CA__ALGORITHM="$ALG"
        FACTORY_CA_SERVER__LISTEN="127.0.0.1:$port"
        FACTORY_CA_LOG__LEVEL=warn
        FACTORY_CA_SERVER__STATION_RATE_PER_SEC=0
        FACTORY_CA_DATABASE__GROUP_COMMIT_MAX_BATCH="$c"
        FACTORY_CA_DATABASE__CONNECT_TIMEOUT_SECS=60
    )
    mkdir -p "$WORK/$name-data"
    env "${env_server[@]}" "$BIN" serve >"$WORK/$name-serve.out" 2>"$WORK/$name-serve.err" &
    SERVER_PID=$!
    wait_ready "$SERVER_PID" "$url" "$WORK/$name-serve.err"
    token=$(env "${env_server[@]}" timeout 300 "$BIN" token create --role station --name callgrind)
    for part in warm:300 counted:"$requests"; do
        BENCH_TOKEN="$token" timeout 3600 "$BIN" bench --url "$url" --requests "${part#*:}" \
            --concurrency "$c" --prefix "$name-${part%%:*}" --duration-limit 3500 \
            --token-env BENCH_TOKEN --json >"$WORK/$name-${part%%:*}.json"
    done
    after=$(psql_db "$db" "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
    stop_pid "$SERVER_PID" TERM 60
    SERVER_PID=""
    stop_pid "$PG_PID" INT 600
    PG_PID=""
    wait "$launcher" 2>/dev/null || true
    total=0
    for f in "$WORK/pg/$name-cg"/pg.*; do
        total=$((total + $(awk '/^(summary|totals):/ { print $2; exit }' "$f")))
    done
    echo "$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["succeeded"])' \
        "$WORK/$name-counted.json") $after $total" >"$WORK/$name.result"
}

echo "| connections | batch at most | certificates | transactions committed | PostgreSQL instructions per certificate | per transaction |"
echo "| --- | --- | --- | --- | --- | --- |"
for c in "${CONNECTIONS[@]}"; do
    log "$c connection(s): $((N / 10)) certificates"
    run "$c" $((N / 10)) "short-$c"
    read -r n1 t1 i1 <"$WORK/short-$c.result"
    log "$c connection(s): $N certificates"
    run "$c" "$N" "long-$c"
    read -r n2 t2 i2 <"$WORK/long-$c.result"
    certificates=$((n2 - n1))
    transactions=$((t2 - t1))
    instructions=$((i2 - i1))
    echo "| $c | $c | $certificates | $transactions | $((instructions / certificates)) | $((instructions / (transactions > 0 ? transactions : 1))) |"
done
echo
echo "Self instructions per certificate by function, every PostgreSQL process: the run of $N"
echo "certificates over $c connection(s) less the run of $((N / 10)), per certificate between them:"
echo
echo '```'
python3 "$ROOT/scripts/lib/callgrind_self.py" "$certificates" "$TOP" "$WORK/pg/long-$c-cg"/pg.* \
    --minus "$WORK/pg/short-$c-cg"/pg.*
echo '```'

#!/usr/bin/env bash
# Issuance benchmark on PostgreSQL (docs/benchmarks.md). Builds in release mode once, measures the signing
# step alone (benches/signing.rs), then for an ECDSA P-256 CA and an RSA-2048 CA starts
# `factory-ca serve` on a fresh database and data dir and runs `factory-ca bench` at 1, 16 and
# 64 connections. Prints a markdown table on stdout; progress goes to stderr.
#
# Needs: cargo, jq, psql, curl, python3 (for a free port), and a PostgreSQL server with trust
# auth for user postgres. Everything is bounded in time; the databases are dropped on exit.
#
#   BENCH_REQUESTS        certificates per run (default 5000; at 1 connection min(N, 2000))
#   BENCH_POSTGRES_URL    server URL without database (default postgres://postgres@127.0.0.1:5432)
#   BENCH_DURATION_LIMIT  hard stop of one bench run in seconds (default 600)
#   BENCH_ALGORITHMS      CA algorithms (default "ecdsa-p256 rsa-2048")
#   BENCH_CONNECTIONS     connection counts (default "1 16 64")
#   BENCH_GROUP_COMMIT    database.group_commit settings to compare, each on a fresh database
#                         (default "on off": with and without group commit, back to back)
#   BENCH_BIN             a factory-ca release binary to use instead of building one (for a
#                         shared tree that other people are editing); skips the signing
#                         micro-benchmark too, whose rows then read n/a
#   BENCH_QUIET_WAIT      seconds to wait before each run for other programs to go idle
#                         (default 300; the machine is shared, and a busy neighbour skews
#                         the figures; the table's "other load" column shows what remained)
set -euo pipefail
cd "$(dirname "$0")/.."

N=${BENCH_REQUESTS:-5000}
N1=$((N < 2000 ? N : 2000))
PG=${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}
LIMIT=${BENCH_DURATION_LIMIT:-600}
QUIET_WAIT=${BENCH_QUIET_WAIT:-300}
read -r -a ALGORITHMS <<<"${BENCH_ALGORITHMS:-ecdsa-p256 rsa-2048}"
read -r -a CONNECTIONS <<<"${BENCH_CONNECTIONS:-1 16 64}"
read -r -a GROUP_COMMIT <<<"${BENCH_GROUP_COMMIT:-on off}"
for gc in "${GROUP_COMMIT[@]}"; do
    [[ $gc == on || $gc == off ]] || { echo "BENCH_GROUP_COMMIT: on or off, not $gc" >&2; exit 2; }
done
STAMP=$(date -u +%Y%m%d%H%M%S)
WORK=$(mktemp -d -t factory-ca-bench.XXXXXX)
DATABASES=()
SERVER_PID=""
FAILED=0

log() { echo "bench.sh: $*" >&2; }

stop_server() {
    [[ -n $SERVER_PID ]] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 400); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        log "the server did not stop within 40 s of SIGTERM; killing it"
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

cleanup() {
    stop_server
    for db in "${DATABASES[@]}"; do
        timeout 60 psql "$PG/postgres" -qX -v ON_ERROR_STOP=1 \
            -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 ||
            log "could not drop database $db"
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits (bounded) until the machine is idle: under 0.25 cores busy over two seconds.
wait_until_quiet() {
    local waited=0 b0 b1 cores
    while :; do
        b0=$(machine_busy)
        sleep 2
        b1=$(machine_busy)
        cores=$(awk -v a="$b0" -v b="$b1" 'BEGIN { printf "%.2f", (b - a) / 2 }')
        awk -v c="$cores" 'BEGIN { exit !(c < 0.25) }' && return 0
        if ((waited >= QUIET_WAIT)); then
            log "the machine is still busy ($cores cores used by other programs); running anyway"
            return 0
        fi
        ((waited % 30 == 0)) && log "waiting for other programs to go idle ($cores cores busy)"
        waited=$((waited + 2))
    done
}

psql_admin() { timeout 60 psql "$PG/postgres" -qAtX -v ON_ERROR_STOP=1 -c "$1"; }

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Seconds of CPU (user + system) a process has used, from /proc/<pid>/stat (USER_HZ = 100).
proc_cpu() { sed 's/.*) //' "/proc/$1/stat" | awk '{ printf "%.2f", ($12 + $13) / 100 }'; }
# Busy seconds of the whole machine, all cores (user, nice, system, irq, softirq).
machine_busy() { awk '/^cpu / { printf "%.2f", ($2 + $3 + $4 + $7 + $8) / 100 }' /proc/stat; }
# Seconds of CPU used so far by every PostgreSQL process (backends, WAL writer, checkpointer).
postgres_cpu() {
    local total=0 f
    for f in /proc/[0-9]*/stat; do
        read -r line <"$f" 2>/dev/null || continue
        [[ $line == *"(postgres)"* ]] || continue
        total=$((total + $(awk '{ sub(/.*\) /, ""); print $12 + $13 }' <<<"$line")))
    done
    awk -v t="$total" 'BEGIN { printf "%.2f", t / 100 }'
}

# --- Build once -----------------------------------------------------------------------------
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
BIN=${BENCH_BIN:-$TARGET_DIR/release/factory-ca}
if [[ -z ${BENCH_BIN:-} ]]; then
    log "building the release binary and the signing benchmark (once)"
    timeout 3600 cargo build --release --bin factory-ca >&2
    timeout 3600 cargo bench --bench signing --no-run >&2
fi

# --- The signing step alone ---------------------------------------------------------------
if [[ -z ${BENCH_BIN:-} ]]; then
    wait_until_quiet
    log "micro-benchmark of the signing step (criterion, one thread)"
    timeout 900 cargo bench --bench signing -- --noplot --warm-up-time 2 --measurement-time 5 \
        >"$WORK/criterion.txt" 2>&1 || {
        cat "$WORK/criterion.txt" >&2
        log "the signing micro-benchmark failed"
        exit 1
    }
else
    : >"$WORK/criterion.txt"
fi
grep -E '^signing/|time:|thrpt:' "$WORK/criterion.txt" >&2 || true
# Time per operation in nanoseconds: the estimate criterion prints (slope, else mean).
signing_ns() {
    local f="$TARGET_DIR/criterion/signing/$1/new/estimates.json"
    [[ -f $f ]] && jq -r '(.slope // .mean).point_estimate' "$f" || echo ""
}
declare -A SIGN_NS SIGN_RATE
for alg in "${ALGORITHMS[@]}"; do
    ns=$(signing_ns "$alg-ca")
    SIGN_NS[$alg]=$ns
    SIGN_RATE[$alg]=$([[ -n $ns ]] && awk -v ns="$ns" 'BEGIN { printf "%.0f", 1e9 / ns }' || echo "")
done
PARSE_NS=$(signing_ns parse-verify-ecdsa-p256-csr)
# Raw signature speed of this machine, for scale (published reference figures come from it).
OPENSSL_SPEED=""
if command -v openssl >/dev/null; then
    OPENSSL_SPEED=$(timeout 60 openssl speed -seconds 2 rsa2048 ecdsap256 2>/dev/null || true)
fi

# Without this the per-station rate limit, when the service has one, would cap a benchmark
# that runs as one station at that limit instead of at the service's capacity.
EXTRA_ENV=()
if grep -q '^station_rate_per_sec' config/default.toml 2>/dev/null; then
    EXTRA_ENV+=(FACTORY_CA_SERVER__STATION_RATE_PER_SEC=0)
fi

ROWS=()
NOTES=()
for alg in "${ALGORITHMS[@]}"; do
    for gc in "${GROUP_COMMIT[@]}"; do
        gc_bool=$([[ $gc == on ]] && echo true || echo false)
        db="factory_ca_bench_${STAMP}_${alg//-/_}_gc_$gc"
        psql_admin "CREATE DATABASE $db" >/dev/null
        DATABASES+=("$db")
        data="$WORK/data-$alg-$gc"
        mkdir -p "$data"
        port=$(free_port)
        url="http://127.0.0.1:$port"
        env_server=(
            FACTORY_CA_DATABASE__URL="$PG/$db"
            FACTORY_CA_DATA_DIR="$data"
            FACTORY_CA_CA__ALGORITHM="$alg"
            FACTORY_CA_SERVER__LISTEN="127.0.0.1:$port"
            FACTORY_CA_LOG__LEVEL=warn
            FACTORY_CA_DATABASE__GROUP_COMMIT="$gc_bool"
            "${EXTRA_ENV[@]}"
        )
        log "$alg: starting the service on $url (database $db)"
        # stderr holds the bootstrap admin token; it stays in $WORK, which is removed on exit.
        env "${env_server[@]}" "$BIN" serve >"$WORK/serve-$alg-$gc.out" 2>"$WORK/serve-$alg-$gc.err" &
        SERVER_PID=$!
        ready=""
        for _ in $(seq 1 600); do
            if ! kill -0 "$SERVER_PID" 2>/dev/null; then
                break
            fi
            if curl -fsS --max-time 2 "$url/readyz" >/dev/null 2>&1; then
                ready=1
                break
            fi
            sleep 0.1
        done
        if [[ -z $ready ]]; then
            tail -n 20 "$WORK/serve-$alg-$gc.err" >&2
            log "$alg: the service did not become ready within 60 s"
            exit 1
        fi
        token=$(env "${env_server[@]}" timeout 60 "$BIN" token create --role station --name bench)

        for c in "${CONNECTIONS[@]}"; do
            n=$N
            if ((c == 1)); then n=$N1; fi
            out="$WORK/$alg-$gc-$c.json"
            wait_until_quiet
            log "$alg, group commit $gc: $n certificates over $c connection(s)"
            server_cpu0=$(proc_cpu "$SERVER_PID")
            pg_cpu0=$(postgres_cpu)
            busy0=$(machine_busy)
            wall0=$(date +%s.%N)
            rc=0
            # The token goes to the bench by environment only; it is never printed.
            BENCH_STATION_TOKEN="$token" timeout $((LIMIT + 120)) "$BIN" bench \
                --url "$url" --requests "$n" --concurrency "$c" --duration-limit "$LIMIT" \
                --token-env BENCH_STATION_TOKEN --json >"$out" 2>"$WORK/$alg-$gc-$c.err" || rc=$?
            wall=$(awk -v a="$wall0" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
            busy=$(awk -v a="$busy0" -v b="$(machine_busy)" 'BEGIN { print b - a }')
            server_cpu=$(awk -v a="$server_cpu0" -v b="$(proc_cpu "$SERVER_PID")" 'BEGIN { print b - a }')
            pg_cpu=$(awk -v a="$pg_cpu0" -v b="$(postgres_cpu)" 'BEGIN { print b - a }')
            if ! jq -e . "$out" >/dev/null 2>&1; then
                tail -n 20 "$WORK/$alg-$gc-$c.err" >&2
                log "$alg at $c connections: the bench produced no result (exit $rc)"
                ROWS+=("| $alg | $gc | $c | $n | failed (exit $rc) | | | | | | | | | | |")
                FAILED=1
                continue
            fi
            ((rc == 0)) || FAILED=1
            # The CPU split: the service process, PostgreSQL, the load generator during its timed
            # phase; and what the rest of the machine used meanwhile, in cores, which should be ~0
            # (anything else running on the machine distorts the figures).
            ROWS+=("$(jq -r --arg alg "$alg" --arg gc "$gc" --arg rate "${SIGN_RATE[$alg]}" \
                --arg server_cpu "$server_cpu" --arg pg_cpu "$pg_cpu" --arg busy "$busy" \
                --arg wall "$wall" '
                def f(d): . * pow(10; d) | round / pow(10; d);
                def us_per_cert(x): if .succeeded > 0 then (x * 1e6 / .succeeded | round | tostring) else "-" end;
                ((.failed + .not_sent) | tostring) as $n_err
                | (if (.errors | length) > 0
                   then " (" + (.errors | to_entries | map("\(.key): \(.value)") | join(", ")) + ")"
                   else "" end) as $codes
                | (.load_cpu_secs // 0) as $gen
                | ($server_cpu | tonumber) as $srv
                | ($pg_cpu | tonumber) as $pg
                | ((($busy | tonumber) - $srv - $pg - (.process_cpu_secs // 0)) / ($wall | tonumber)
                   | if . < 0 then 0 else . end) as $rest
                | "| \($alg) | \($gc) | \(.concurrency) | \(.requests) | \(.throughput | round) | "
                  + (if $rate != "" then "\(.throughput / ($rate | tonumber) * 100 | f(1))%" else "-" end)
                  + " | \(.latency_ms.p50 | f(2)) | \(.latency_ms.p90 | f(2)) | \(.latency_ms.p99 | f(2)) | \(.latency_ms.max | f(2))"
                  + " | \($n_err)\($codes) | \(us_per_cert($srv)) | \(us_per_cert($pg)) | \(us_per_cert($gen))"
                  + " | \($rest | f(2)) |"
                ' "$out")")
        done
        rss=$(awk '/^VmHWM/ { printf "%.0f MiB", $2 / 1024 }' "/proc/$SERVER_PID/status" 2>/dev/null || echo "?")
        NOTES+=("- $alg CA, group commit $gc: service peak RSS (VmHWM) $rss after all runs.")
        log "$alg: stopping the service"
        stop_server
        if grep -qiE 'panic|error' "$WORK/serve-$alg-$gc.err"; then
            log "$alg: the service logged errors:"
            grep -iE 'panic|error' "$WORK/serve-$alg-$gc.err" | grep -v 'admin token' | tail -n 10 >&2
        fi
    done
done

# --- Report -----------------------------------------------------------------------------------
cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
pg_version=$(psql_admin "SHOW server_version")
pg_sync=$(psql_admin "SHOW synchronous_commit")
pg_fsync=$(psql_admin "SHOW fsync")
echo
echo "Machine: $(nproc) cores ($cpu_model), $(free -g | awk '/^Mem/ { print $2 }') GiB;" \
    "PostgreSQL $pg_version on the same machine (fsync=$pg_fsync, synchronous_commit=$pg_sync)."
echo "The load generator, the service and PostgreSQL share these $(nproc) cores, so every figure"
echo "below is lower than the service alone would reach on its own cores."
echo "Requests per run: $N ($N1 at 1 connection); ECDSA P-256 device keys; $(date -u +%Y-%m-%dT%H:%MZ)."
echo
echo "Signing step alone (parse + verify CSR, policy, sign; one thread, criterion):"
echo
echo "| CA | per op | ops/s (1 core) |"
echo "| --- | --- | --- |"
for alg in "${ALGORITHMS[@]}"; do
    ns=${SIGN_NS[$alg]}
    if [[ -n $ns ]]; then
        awk -v a="$alg" -v ns="$ns" 'BEGIN { printf "| %s | %.1f µs | %.0f |\n", a, ns / 1000, 1e9 / ns }'
    else
        echo "| $alg | n/a | n/a |"
    fi
done
if [[ -n $PARSE_NS ]]; then
    awk -v ns="$PARSE_NS" 'BEGIN { printf "| (parse + verify the CSR only) | %.1f µs | %.0f |\n", ns / 1000, 1e9 / ns }'
fi
if [[ -n $OPENSSL_SPEED ]]; then
    awk '/^rsa 2048 bits/ { printf "| (openssl speed: one RSA-2048 signature) | %.1f µs | %.0f |\n", 1e6 / $6, $6 }
         /ecdsa \(nistp256\)/ { printf "| (openssl speed: one ECDSA P-256 signature) | %.1f µs | %.0f |\n", 1e6 / $7, $7
                                printf "| (openssl speed: one ECDSA P-256 verification) | %.1f µs | %.0f |\n", 1e6 / $8, $8 }' \
        <<<"$OPENSSL_SPEED"
fi
echo
echo "Service on PostgreSQL (every certificate committed before it is sent):"
echo
echo "| CA | group commit | connections | requests | certs/s | vs signing alone (1 core) | p50 ms | p90 ms | p99 ms | max ms | errors | service CPU µs/cert | PostgreSQL CPU µs/cert | load-gen CPU µs/cert | other load (cores) |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
printf '%s\n' "${ROWS[@]}"
echo
printf '%s\n' "${NOTES[@]}"
echo "- CPU per certificate, from /proc over each run: the service process, every PostgreSQL process,"
echo "  and the load generator in its timed phase. \"Other load\" is what the rest of the machine used"
echo "  meanwhile, in cores: anything well above 0 means another program competed and the row is low."
exit "$FAILED"

#!/usr/bin/env bash
# Issuance benchmark on PostgreSQL (docs/benchmarks.md).
#
# Builds the release binary once (or takes BENCH_BIN), then for each CA algorithm starts
# `factory-ca serve` on a fresh database and data dir and drives it with wrk: pre-made, all
# distinct ECDSA P-256 device CSR bodies (`factory-ca bench --write-bodies`, made before each
# run and outside its measurement) replayed over keep-alive connections by scripts/bench-wrk.lua,
# for BENCH_SECS seconds at each connection count, each run after a PostgreSQL CHECKPOINT and
# once the machine is idle. Per run it reports certificates/s, p50/p90/p99, errors, the CPU per
# certificate of the service, of PostgreSQL (every postgres process) and of wrk (from /proc),
# and checks that every certificate answered 2xx is a row of the ledger. Beside it, in the same
# run: `openssl speed -multi 2` (RSA-2048 and ECDSA P-256 signatures/s of this machine) and,
# when `cfssl` is installed (Debian golang-cfssl), CFSSL's `serve` with its PostgreSQL certdb
# under the same load, and the ratio.
#
# Prints a markdown report on stdout; progress goes to stderr. Needs: wrk, jq, psql, curl,
# openssl, python3 (for a free port) and a PostgreSQL server with trust auth for user
# postgres; cfssl is optional. Everything is bounded in time; the databases are dropped on exit.
#
#   BENCH_SECS            seconds of load per run (default 10)
#   BENCH_ALGORITHMS      CA algorithms (default "ecdsa-p256 rsa-2048")
#   BENCH_CONNECTIONS     connection counts (default "1 16 64")
#   BENCH_RSA_CONNECTIONS connection counts for an rsa-* CA (default "64")
#   BENCH_MAX_RATE        certificates/s the body files are sized for (default 15000; a run
#                         faster than this repeats bodies, which shows up as errors)
#   BENCH_GROUP_COMMIT    database.group_commit settings to compare (default "on"; "on off"
#                         runs both, each on a fresh database)
#   BENCH_CFSSL           1 (default) to measure CFSSL too when `cfssl` is installed, 0 not to
#   BENCH_CFSSL_CONNECTIONS  connection counts for CFSSL (default "64")
#   BENCH_POSTGRES_URL    server URL without database (default postgres://postgres@127.0.0.1:5432)
#   BENCH_POSTGRES_PARAMS connection parameters for the service and CFSSL alike, so that both
#                         reach PostgreSQL the same way (default "sslmode=disable": lib/pq has no
#                         "prefer", and sqlx's default "prefer" would give the service TLS where
#                         CFSSL has none; "sslmode=require" measures both over TLS)
#   BENCH_BIN             a factory-ca release binary to use instead of building one
#   BENCH_WRK_THREADS     wrk threads (default 2, at most the connection count)
#   BENCH_SERVER_ENV      extra VAR=value words for the service's environment only (for example
#                         LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2)
#   BENCH_QUIET_WAIT      seconds to wait, at most, before each run for other programs to go
#                         idle (default 60; the "other load" column shows what remained)
#   BENCH_LOG_LEVEL       the service's log.level (default "info", the service's default: a
#                         line per certificate; "warn" measures without them)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/bench.sh
ROOT=$(pwd)

SECS=${BENCH_SECS:-10}
MAX_RATE=${BENCH_MAX_RATE:-15000}
PG=${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}
PG_PARAMS=${BENCH_POSTGRES_PARAMS-sslmode=disable}
QUIET_WAIT=${BENCH_QUIET_WAIT:-60}
WRK_THREADS=${BENCH_WRK_THREADS:-2}
LOG_LEVEL=${BENCH_LOG_LEVEL:-info}
read -r -a ALGORITHMS <<<"${BENCH_ALGORITHMS:-ecdsa-p256 rsa-2048}"
read -r -a CONNECTIONS <<<"${BENCH_CONNECTIONS:-1 16 64}"
read -r -a RSA_CONNECTIONS <<<"${BENCH_RSA_CONNECTIONS:-64}"
read -r -a GROUP_COMMIT <<<"${BENCH_GROUP_COMMIT:-on}"
read -r -a CFSSL_CONNECTIONS <<<"${BENCH_CFSSL_CONNECTIONS:-64}"
for gc in "${GROUP_COMMIT[@]}"; do
    [[ $gc == on || $gc == off ]] || { echo "BENCH_GROUP_COMMIT: on or off, not $gc" >&2; exit 2; }
done
for tool in wrk jq psql curl openssl python3; do
    command -v "$tool" >/dev/null || { echo "bench.sh needs $tool (Debian package ${tool/psql/postgresql-client})" >&2; exit 2; }
done
STAMP=$(date -u +%Y%m%d%H%M%S)
WORK=$(mktemp -d -t factory-ca-bench.XXXXXX)
DATABASES=()
SERVER_PID=""
FAILED=0

cleanup() {
    stop_server
    drop_databases "${DATABASES[@]}"
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Seconds of CPU used so far by every PostgreSQL process (backends, WAL writer, checkpointer),
# with that of the backends that have exited (the postmaster's reaped children: cutime, cstime).
postgres_cpu() {
    local total=0 f line
    for f in /proc/[0-9]*/stat; do
        { read -r line <"$f"; } 2>/dev/null || continue
        [[ $line == *"(postgres)"* ]] || continue
        total=$((total + $(awk '{ sub(/.*\) /, ""); print $12 + $13 + $14 + $15 }' <<<"$line")))
    done
    awk -v t="$total" 'BEGIN { printf "%.2f", t / 100 }'
}

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

# Before each run: PostgreSQL writes its dirty pages out now, so that a run does not pay for the
# checkpoint that the WAL of the run before it started (without it, the second of two
# back-to-back runs was measured slower whichever build it was); then the machine goes idle.
settle_before_run() {
    psql_admin "CHECKPOINT" || log "CHECKPOINT failed; running without it"
    wait_until_quiet
}

# --- Build once -----------------------------------------------------------------------------
BIN=$(release_bin)

# Makes a body file of `n` new CSRs with thing names `<prefix>-<i>`, outside any measurement.
make_bodies() { # file n prefix
    timeout 900 "$BIN" bench --write-bodies "$1" --requests "$2" --prefix "$3" \
        --duration-limit 880 2>>"$WORK/bodies.log" >&2
}

bodies_for() { # connections -> how many bodies a run needs at most
    local c=$1 rate=$MAX_RATE
    ((c == 1 && rate > 3000)) && rate=3000
    echo $((rate * SECS))
}

# One wrk run: result JSON in $WORK/<name>.json, CPU figures in $WORK/<name>.cpu as
# "service postgres wrk other wall". $1 name, $2 URL, $3 path, $4 connections, $5 bodies file,
# $6 pid of the server under test, $7 token (may be empty).
wrk_run() {
    local name=$1 url=$2 path=$3 c=$4 bodies=$5 pid=$6 token=$7
    local threads=$((c < WRK_THREADS ? c : WRK_THREADS))
    local cpu_file="$WORK/$name.wrkcpu"
    local srv0 pg0 busy0 wall0 srv1 pg1 busy1 wall1 rc=0
    srv0=$(proc_cpu "$pid")
    pg0=$(postgres_cpu)
    busy0=$(machine_busy)
    wall0=$(date +%s.%N)
    # The token goes to wrk by environment only; it is never printed.
    BENCH_BODIES="$bodies" BENCH_THREADS="$threads" BENCH_PATH="$path" BENCH_TOKEN="$token" \
        BENCH_CPU_FILE="$cpu_file" BENCH_RESULT="$WORK/$name.json" \
        timeout $((SECS + 120)) wrk -t "$threads" -c "$c" -d "${SECS}s" --timeout 10s \
        -s "$ROOT/scripts/bench-wrk.lua" "$url$path" >"$WORK/$name.wrk.out" 2>&1 || rc=$?
    wall1=$(date +%s.%N)
    busy1=$(machine_busy)
    srv1=$(proc_cpu "$pid")
    pg1=$(postgres_cpu)
    if ((rc != 0)) || ! jq -e . "$WORK/$name.json" >/dev/null 2>&1; then
        cat "$WORK/$name.wrk.out" >&2
        log "$name: wrk failed (exit $rc)"
        return 1
    fi
    local wrk_cpu
    wrk_cpu=$(awk 'NR == FNR { a = $1; next } { printf "%.2f", $1 - a }' \
        "$cpu_file.init" "$cpu_file.done")
    awk -v s0="$srv0" -v s1="$srv1" -v p0="$pg0" -v p1="$pg1" -v b0="$busy0" -v b1="$busy1" \
        -v w0="$wall0" -v w1="$wall1" -v g="$wrk_cpu" 'BEGIN {
            srv = s1 - s0; pg = p1 - p0; wall = w1 - w0
            other = (b1 - b0 - srv - pg - g) / wall; if (other < 0) other = 0
            printf "%.2f %.2f %.2f %.2f %.3f\n", srv, pg, g, other, wall }' >"$WORK/$name.cpu"
}

ROWS=()
NOTES=()
# A row of the table from a finished run. $1 label columns (already "| a | b |"), $2 name,
# $3 ledger rows added during the run.
add_row() {
    local label=$1 name=$2 added=$3
    read -r srv pg gen other wall <"$WORK/$name.cpu"
    ROWS+=("$(jq -r --arg lbl "$label" --argjson added "$added" --argjson srv "$srv" \
        --argjson pg "$pg" --argjson gen "$gen" --argjson other "$other" '
        def f(d): . * pow(10; d) | round / pow(10; d);
        def per(x; n): if n > 0 then (x * 1e6 / n | round | tostring) else "-" end;
        (.errors.connect + .errors.read + .errors.write + .errors.timeout) as $transport
        | (.requests - .errors.status) as $ok
        | "\($lbl) \($ok / .duration_s | round) | \(.latency_ms.p50 | f(2)) | \(.latency_ms.p99 | f(2))"
          + " | \(.errors.status + $transport)"
          + (if .wrapped > 0 then " (bodies repeated)" else "" end)
          + " | \($ok) / \($added)"
          + " | \(per($srv; $added)) | \(per($pg; $added)) | \(per($gen; .requests))"
          + " | \(per($srv + $pg + $gen; $added)) | \($other | f(2)) |"
        ' "$WORK/$name.json")")
}

# Every 2xx must be a committed row; a request still in flight when wrk stopped may have been
# committed without being answered, so the ledger may hold up to one row per connection more.
check_ledger() { # name, rows added, connections
    local ok
    ok=$(jq -r '.requests - .errors.status' "$WORK/$1.json")
    if (($2 < ok)); then
        log "$1: $ok certificates answered 2xx but only $2 rows reached the ledger"
        FAILED=1
    elif (($2 > ok + $3)); then
        log "$1: $2 ledger rows for $ok answers: more than one unanswered row per connection"
        FAILED=1
    fi
}

# --- This machine's signature speed, for scale -----------------------------------------------
log "openssl speed -multi 2 (RSA-2048 and ECDSA P-256 sign and verify)"
OPENSSL_MULTI=$(timeout 120 openssl speed -multi 2 -seconds 3 rsa2048 ecdsap256 2>/dev/null || true)
OPENSSL_ONE=$(timeout 120 openssl speed -seconds 3 ecdsap256 2>/dev/null || true)

# --- factory-ca ------------------------------------------------------------------------------
EXTRA_ENV=()
if grep -q '^station_rate_per_sec' config/default.toml 2>/dev/null; then
    # Otherwise the benchmark, one station, would measure the per-station rate limit.
    EXTRA_ENV+=(FACTORY_CA_SERVER__STATION_RATE_PER_SEC=0)
fi
ECDSA64_RATE=""
for alg in "${ALGORITHMS[@]}"; do
    conns=("${CONNECTIONS[@]}")
    [[ $alg == rsa-* ]] && conns=("${RSA_CONNECTIONS[@]}")
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
            FACTORY_CA_DATABASE__URL="$PG/$db${PG_PARAMS:+?$PG_PARAMS}"
            FACTORY_CA_DATA_DIR="$data"
            FACTORY_CA_CA__ALGORITHM="$alg"
            FACTORY_CA_SERVER__LISTEN="127.0.0.1:$port"
            FACTORY_CA_LOG__LEVEL="$LOG_LEVEL"
            FACTORY_CA_DATABASE__GROUP_COMMIT="$gc_bool"
            "${EXTRA_ENV[@]}"
        )
        read -r -a server_only <<<"${BENCH_SERVER_ENV:-}"
        log "$alg: starting the service on $url (database $db)"
        # stderr holds the bootstrap admin token; it stays in $WORK, which is removed on exit.
        env "${env_server[@]}" "${server_only[@]}" "$BIN" serve >"$WORK/serve-$alg-$gc.out" 2>"$WORK/serve-$alg-$gc.err" &
        SERVER_PID=$!
        ready=""
        for _ in $(seq 1 600); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
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
        for c in "${conns[@]}"; do
            name="$alg-$gc-$c"
            n=$(bodies_for "$c")
            log "$name: making $n request bodies"
            make_bodies "$WORK/$name.bodies" "$n" "b$STAMP-${alg//-/}-$gc-$c"
            before=$(psql_db "$db" "SELECT count(*) FROM issued_certificates")
            settle_before_run
            log "$name: wrk, $c connection(s), ${SECS} s"
            if ! wrk_run "$name" "$url" /v1/certificates "$c" "$WORK/$name.bodies" "$SERVER_PID" "$token"; then
                FAILED=1
                continue
            fi
            # Unanswered requests finish (or fail) within the service's request timeout.
            sleep 1
            after=$(psql_db "$db" "SELECT count(*) FROM issued_certificates")
            added=$((after - before))
            check_ledger "$name" "$added" "$c"
            add_row "| factory-ca | $alg | $gc | $c |" "$name" "$added"
            [[ $alg == ecdsa-p256 && $gc == on && $c == 64 ]] &&
                ECDSA64_RATE=$(jq -r '(.requests - .errors.status) / .duration_s' "$WORK/$name.json")
            rm -f "$WORK/$name.bodies"
        done
        rss=$(awk '/^VmHWM/ { printf "%.0f MiB", $2 / 1024 }' "/proc/$SERVER_PID/status" 2>/dev/null || echo "?")
        bytes=$(psql_db "$db" "SELECT round((SELECT sum(pg_total_relation_size(c)) FROM unnest(ARRAY['issued_certificates', 'thing_claims', 'ledger_chain']::regclass[]) AS c) / greatest(count(*), 1)) FROM issued_certificates" 2>/dev/null || echo "?")
        NOTES+=("- $alg CA, group commit $gc: service peak RSS (VmHWM) $rss; $bytes bytes on disk per certificate (issued_certificates, thing_claims and ledger_chain with their indexes and TOAST).")
        log "$alg: stopping the service"
        stop_server
        if grep -qiE 'panic|error' "$WORK/serve-$alg-$gc.err"; then
            log "$alg: the service logged errors:"
            grep -iE 'panic|error' "$WORK/serve-$alg-$gc.err" | grep -v 'admin token' | tail -n 10 >&2
        fi
    done
done

# --- CFSSL with its PostgreSQL certdb, same load ----------------------------------------------
CFSSL_RATE=""
if [[ ${BENCH_CFSSL:-1} == 1 ]] && command -v cfssl >/dev/null; then
    db="factory_ca_bench_${STAMP}_cfssl"
    psql_admin "CREATE DATABASE $db" >/dev/null
    DATABASES+=("$db")
    # CFSSL's own certdb schema (certdb/pg/migrations/001_CreateCertificates.sql).
    psql_db "$db" "CREATE TABLE certificates (serial_number bytea NOT NULL,
        authority_key_identifier bytea NOT NULL, ca_label bytea, status bytea NOT NULL,
        reason int, expiry timestamptz, revoked_at timestamptz, pem bytea NOT NULL,
        PRIMARY KEY (serial_number, authority_key_identifier));
      CREATE TABLE ocsp_responses (serial_number bytea NOT NULL,
        authority_key_identifier bytea NOT NULL, body bytea NOT NULL, expiry timestamptz,
        PRIMARY KEY (serial_number, authority_key_identifier),
        FOREIGN KEY (serial_number, authority_key_identifier)
          REFERENCES certificates (serial_number, authority_key_identifier));" >/dev/null
    cdir="$WORK/cfssl"
    mkdir -p "$cdir"
    openssl ecparam -name prime256v1 -genkey -noout -out "$cdir/ca-key.pem" 2>/dev/null
    openssl req -x509 -new -key "$cdir/ca-key.pem" -subj "/CN=CFSSL bench CA" -days 30 \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
        -out "$cdir/ca.pem" 2>/dev/null
    echo '{"signing": {"default": {"expiry": "8760h", "usages": ["digital signature", "client auth"]}}}' \
        >"$cdir/config.json"
    # The service's connection parameters; lib/pq's own default would be sslmode=require.
    printf '{"driver": "postgres", "data_source": "%s/%s%s"}\n' "$PG" "$db" "${PG_PARAMS:+?$PG_PARAMS}" >"$cdir/db.json"
    port=$(free_port)
    cfssl serve -address 127.0.0.1 -port "$port" -ca "$cdir/ca.pem" -ca-key "$cdir/ca-key.pem" \
        -config "$cdir/config.json" -db-config "$cdir/db.json" -loglevel 3 \
        >"$WORK/cfssl.out" 2>"$WORK/cfssl.err" &
    SERVER_PID=$!
    ready=""
    for _ in $(seq 1 300); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        # Any HTTP answer means it listens (GET on the sign endpoint is refused with 405).
        if curl -sS --max-time 2 -o /dev/null "http://127.0.0.1:$port/api/v1/cfssl/sign" 2>/dev/null; then
            ready=1
            break
        fi
        sleep 0.1
    done
    if [[ -z $ready ]]; then
        tail -n 20 "$WORK/cfssl.err" >&2
        log "cfssl did not start; measured without it"
    else
        for c in "${CFSSL_CONNECTIONS[@]}"; do
            name="cfssl-$c"
            n=$(bodies_for "$c")
            ((n > 5000 * SECS)) && n=$((5000 * SECS))
            log "$name: making $n request bodies"
            make_bodies "$WORK/$name.src" "$n" "c$STAMP-$c"
            # CFSSL's /api/v1/cfssl/sign takes the CSR PEM as "certificate_request".
            jq -c '{certificate_request: .csr}' "$WORK/$name.src" >"$WORK/$name.bodies"
            rm -f "$WORK/$name.src"
            before=$(psql_db "$db" "SELECT count(*) FROM certificates")
            settle_before_run
            log "$name: wrk, $c connection(s), ${SECS} s"
            if ! wrk_run "$name" "http://127.0.0.1:$port" /api/v1/cfssl/sign "$c" "$WORK/$name.bodies" "$SERVER_PID" ""; then
                FAILED=1
                continue
            fi
            sleep 1
            after=$(psql_db "$db" "SELECT count(*) FROM certificates")
            added=$((after - before))
            check_ledger "$name" "$added" "$c"
            add_row "| CFSSL $(cfssl version 2>/dev/null | awk '/^Version/ { print $2 }') | ecdsa-p256 | - | $c |" "$name" "$added"
            [[ $c == 64 ]] && CFSSL_RATE=$(jq -r '(.requests - .errors.status) / .duration_s' "$WORK/$name.json")
            rm -f "$WORK/$name.bodies"
        done
    fi
    stop_server
elif [[ ${BENCH_CFSSL:-1} == 1 ]]; then
    NOTES+=("- CFSSL was not measured: \`cfssl\` is not installed (Debian package golang-cfssl).")
fi

# --- Report -----------------------------------------------------------------------------------
cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
echo
echo "Machine: $(nproc) cores ($cpu_model), $(free -g | awk '/^Mem/ { print $2 }') GiB;" \
    "PostgreSQL $(psql_admin "SHOW server_version") on the same machine" \
    "(fsync=$(psql_admin "SHOW fsync"), synchronous_commit=$(psql_admin "SHOW synchronous_commit"), ssl=$(psql_admin "SHOW ssl"));" \
    "the service and CFSSL connect with \`${PG_PARAMS:-no parameters}\`."
echo "Load: wrk $(wrk -v 2>&1 | awk 'NR == 1 { print $2 }') with scripts/bench-wrk.lua, ${SECS} s per run, keep-alive," \
    "every body a distinct ECDSA P-256 device CSR; $(date -u +%Y-%m-%dT%H:%MZ)."
echo
if [[ -n $OPENSSL_MULTI ]]; then
    echo "openssl speed on this machine, same run:"
    echo
    awk '/^rsa 2048 bits/ { printf "- -multi 2: RSA-2048 %.0f signs/s\n", $6 }
         /ecdsa \(nistp256\)/ { printf "- -multi 2: ECDSA P-256 %.0f signs/s, %.0f verifies/s\n", $7, $8 }' <<<"$OPENSSL_MULTI"
    awk '/ecdsa \(nistp256\)/ { printf "- one core: ECDSA P-256 %.0f signs/s (%.1f µs), %.0f verifies/s (%.1f µs)\n", $7, 1e6 / $7, $8, 1e6 / $8 }' <<<"$OPENSSL_ONE"
    echo
fi
echo "| server | CA | group commit | connections | certs/s | p50 ms | p99 ms | errors | 2xx / ledger rows | server CPU µs/cert | PostgreSQL CPU µs/cert | wrk CPU µs/req | total CPU µs/cert | other load (cores) |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
printf '%s\n' "${ROWS[@]}"
echo
if [[ -n $ECDSA64_RATE && -n $CFSSL_RATE ]]; then
    awk -v a="$ECDSA64_RATE" -v b="$CFSSL_RATE" 'BEGIN { if (b > 0) printf "- factory-ca / CFSSL at 64 connections (ECDSA P-256 CA): %.1fx\n", a / b }'
fi
if [[ -n $OPENSSL_MULTI ]]; then
    for row in "${ROWS[@]}"; do
        [[ $row == "| factory-ca | rsa-2048 |"* ]] || continue
        awk -F'|' -v rows="$OPENSSL_MULTI" 'BEGIN {
                n = split(rows, l, "\n"); for (i = 1; i <= n; i++) if (l[i] ~ /^rsa 2048 bits/) { split(l[i], f, " "); speed = f[6] } }
            { gsub(/ /, "", $5); gsub(/ /, "", $6); if (speed > 0) printf "- RSA-2048 CA at %s connections: %s certs/s = %.0f%% of openssl speed -multi 2 (%.0f signs/s)\n", $5, $6, 100 * $6 / speed, speed }' <<<"$row"
    done
fi
printf '%s\n' "${NOTES[@]}"
echo "- CPU per certificate, from /proc over each run: the server process, every PostgreSQL process,"
echo "  and wrk from the end of its set-up (bodies loaded) to the end of the run. \"Other load\" is"
echo "  what the rest of the machine used meanwhile, in cores: well above 0 means another program"
echo "  competed, and the rates (not the CPU per certificate) are low."
exit "$FAILED"

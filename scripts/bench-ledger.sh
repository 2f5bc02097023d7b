#!/usr/bin/env bash
# The ledger at scale on PostgreSQL (docs/benchmarks.md, "A ledger of 10 million certificates").
#
# 1. Fill: a fresh database and data dir; `factory-ca serve` issues a few real certificates
#    (templates) under a first CA, `ca create --activate` makes a second CA issuing and the
#    service issues a few more under it (a CA rotation part way through the ledger's history).
#    Then, with the service stopped, one INSERT .. SELECT from generate_series per million rows
#    copies the templates into BENCH_LEDGER_ROWS rows (below: what each column holds). The keys
#    and indexes of issued_certificates (and the foreign keys pointing at it) are dropped
#    before and rebuilt after from their own definitions (pg_get_constraintdef,
#    pg_get_indexdef); thing_claims gets the claim of every active row;
#    scripts/bench-ledger-chain.sql appends every filled row to its CA's hash chain exactly as
#    src/store/chain.rs links records (per CA: issuances in issued_at order, then revocations in
#    revoked_at order, as `factory-ca migrate` adopts unchained rows), so that
#    `factory-ca ledger verify` accepts the ledger; `factory-ca ledger recount` fills the stats
#    counters from it, as the service would have kept them. `VACUUM ANALYZE` last, as
#    autovacuum would.
# 2. Measure, back to back on the same machine:
#    - issuance with wrk (scripts/bench-wrk.lua, ECDSA P-256 CA, BENCH_CONNECTIONS
#      connections, BENCH_SECS s) on an empty ledger, then on the filled one;
#    - every list and stats query the dashboard sends (assets/dashboard/app.js) and the list
#      filters of tests/system/query_plans.rs, through HTTP, BENCH_QUERY_REPS times each,
#      p50/p95/max;
#    - the CSV export (rows/s; the service's RSS sampled every 0.5 s during it);
#    - bytes on disk per certificate: each relation of issued_certificates, thing_claims and
#      ledger_chain (heap, TOAST, every index).
#
# Each filled row is a template row (a real certificate this service issued) with: a distinct
# serial, aws_certificate_id and spki_sha256 (hex from md5, as long as the real ones), thing
# name `fill-<8 digits>` in issue order, subject with that thing name, issued_at spread evenly
# over BENCH_LEDGER_DAYS (oldest first; not_before and not_after keep the template's offsets),
# the first CA for the older 60 % and the second for the rest, 8 stations, 5 countries,
# ~1.5 % revoked (reasons mixed; revoked up to 30 days after issue), 85 % seen ACTIVE by AWS
# IoT, ~0.5 % INACTIVE, ~13 % never seen, 5 % EST. certificate_der is the template's DER
# unchanged: its serial, key and subject are the template's, not the row's (nothing in the
# service re-reads them from the DER; the hash chain covers the DER as stored).
#
# Prints a markdown report on stdout; progress on stderr. Needs wrk, jq, psql, curl, python3
# and a PostgreSQL server with trust auth for user postgres. Bounded in time; the databases
# are dropped on exit unless BENCH_LEDGER_KEEP=1.
#
#   BENCH_LEDGER_ROWS   rows to fill (default 10000000)
#   BENCH_LEDGER_DAYS   days of history they span (default 365)
#   BENCH_LEDGER_DB     an already filled database to measure (skips the fill; never dropped)
#   BENCH_LEDGER_DATA   its data dir (required with BENCH_LEDGER_DB)
#   BENCH_LEDGER_KEEP   1: keep the filled database and data dir (printed) for a later run
#   BENCH_LEDGER_FILL_ONLY  1: fill, keep (as BENCH_LEDGER_KEEP=1) and stop there
#   BENCH_EMPTY         1 (default): measure issuance on an empty ledger too; 0: do not
#   BENCH_PARTS         what to measure (default "issuance queries export bytes")
#   BENCH_SECS          seconds of issuance load per run (default 10)
#   BENCH_CONNECTIONS   wrk connections (default 64)
#   BENCH_QUERY_REPS    times each dashboard query is sent (default 20)
#   BENCH_EXPORT_LIMIT  rows of the CSV export (default: all)
#   BENCH_POSTGRES_URL  server URL without database (default postgres://postgres@127.0.0.1:5432)
#   BENCH_BIN           a factory-ca release binary to use instead of building one
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/bench.sh
ROOT=$(pwd)

ROWS_WANTED=${BENCH_LEDGER_ROWS:-10000000}
DAYS=${BENCH_LEDGER_DAYS:-365}
SECS=${BENCH_SECS:-10}
CONNS=${BENCH_CONNECTIONS:-64}
REPS=${BENCH_QUERY_REPS:-20}
PG=${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}
for tool in wrk jq psql curl python3; do
    command -v "$tool" >/dev/null || { echo "bench-ledger.sh needs $tool" >&2; exit 2; }
done
STAMP=$(date -u +%Y%m%d%H%M%S)
WORK=$(mktemp -d -t factory-ca-ledger.XXXXXX)
DATABASES=()
SERVER_PID=""
URL=""
cleanup() {
    stop_server
    drop_databases "${DATABASES[@]}"
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

BIN=$(release_bin)

server_env() { # database data-dir port
    echo FACTORY_CA_DATABASE__URL="$PG/$1" FACTORY_CA_DATA_DIR="$2" \
        FACTORY_CA_CA__ALGORITHM=ecdsa-p256 FACTORY_CA_SERVER__LISTEN="127.0.0.1:$3" \
        FACTORY_CA_LOG__LEVEL=warn FACTORY_CA_SERVER__STATION_RATE_PER_SEC=0
}
start_server() { # database data-dir
    local port
    port=$(free_port)
    URL="http://127.0.0.1:$port"
    # shellcheck disable=SC2046
    env $(server_env "$1" "$2" "$port") "$BIN" serve >>"$WORK/serve.out" 2>>"$WORK/serve.err" &
    SERVER_PID=$!
    for _ in $(seq 1 1200); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        curl -fsS --max-time 2 "$URL/readyz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    tail -n 20 "$WORK/serve.err" >&2
    log "the service did not become ready within 120 s"
    exit 1
}
cli() { # database data-dir args...
    local db=$1 data=$2
    shift 2
    # shellcheck disable=SC2046
    env $(server_env "$db" "$data" 0) timeout 3600 "$BIN" "$@"
}

# Issues n real certificates through the running service (thing names <prefix>-<i>).
issue() { # n prefix token
    timeout 300 "$BIN" bench --write-bodies "$WORK/tpl.bodies" --requests "$1" --prefix "$2" \
        --duration-limit 280 >/dev/null 2>&1
    while read -r body; do
        curl -fsS --max-time 10 -o /dev/null -H "Authorization: Bearer $3" \
            -H 'Content-Type: application/json' --data "$body" "$URL/v1/certificates"
    done <"$WORK/tpl.bodies"
}

# --- 1. Fill ---------------------------------------------------------------------------------
fill() { # database data-dir
    local db=$1 data=$2 t0 station viewer
    psql_admin "CREATE DATABASE $db" >/dev/null
    mkdir -p "$data"
    start_server "$db" "$data"
    station=$(cli "$db" "$data" token create --role station --name line-0)
    log "fill: templates under the first CA"
    issue 8 tpl-a "$station"
    stop_server
    cli "$db" "$data" ca create --common-name "Factory Device CA 2" --activate >/dev/null
    start_server "$db" "$data"
    log "fill: templates under the second CA"
    issue 8 tpl-b "$station"
    stop_server
    local n_tpl
    n_tpl=$(psql_db "$db" "SELECT count(*) FROM issued_certificates")
    ((n_tpl == 16)) || { log "expected 16 template rows, found $n_tpl"; exit 1; }

    # Every index and key of issued_certificates (and the foreign keys that point at it) is
    # rebuilt after the fill from its own definition: building an index once by sorting is many times cheaper than ten million insertions into it (each into a
    # random leaf of an index larger than shared_buffers, with a full-page image in the WAL).
    psql_db "$db" "SELECT 'ALTER TABLE ' || conrelid::regclass || ' DROP CONSTRAINT ' || conname || ';'
        FROM pg_constraint WHERE confrelid = 'issued_certificates'::regclass AND contype = 'f'
      UNION ALL SELECT 'ALTER TABLE issued_certificates DROP CONSTRAINT ' || conname || ';'
        FROM pg_constraint WHERE conrelid = 'issued_certificates'::regclass AND contype IN ('p', 'u')
      UNION ALL SELECT 'DROP INDEX ' || i.indexrelid::regclass || ';' FROM pg_index i
        WHERE i.indrelid = 'issued_certificates'::regclass AND NOT i.indisunique" >"$WORK/drop.sql"
    psql_db "$db" "SELECT 'ALTER TABLE issued_certificates ADD CONSTRAINT ' || conname || ' '
          || pg_get_constraintdef(oid) || ';'
        FROM pg_constraint WHERE conrelid = 'issued_certificates'::regclass AND contype IN ('p', 'u')
      UNION ALL SELECT pg_get_indexdef(i.indexrelid) || ';' FROM pg_index i
        WHERE i.indrelid = 'issued_certificates'::regclass AND NOT i.indisunique
      UNION ALL SELECT 'ALTER TABLE ' || conrelid::regclass || ' ADD CONSTRAINT ' || conname || ' '
          || pg_get_constraintdef(oid) || ';'
        FROM pg_constraint WHERE confrelid = 'issued_certificates'::regclass AND contype = 'f'" \
        >"$WORK/create.sql"
    timeout 60 psql "$PG/$db" -qX -v ON_ERROR_STOP=1 -f "$WORK/drop.sql" >/dev/null

    local span_s=$((DAYS * 86400)) step=1000000 from to
    t0=$(date +%s)
    for ((from = 1; from <= ROWS_WANTED; from += step)); do
        to=$((from + step - 1 < ROWS_WANTED ? from + step - 1 : ROWS_WANTED))
        log "fill: rows $from-$to of $ROWS_WANTED"
        # Row i (1 = oldest) is issued at now - span + (i - 1) * span / N, a minute before the
        # templates at the latest. Template: the first CA's for the older 60 %, else the
        # second's; within a CA, template i % 8.
        psql_db "$db" "SET synchronous_commit = off;
        WITH tpl AS (
            SELECT row_number() OVER (PARTITION BY ca_id ORDER BY issued_at) - 1 AS k,
                   dense_rank() OVER (ORDER BY min_at) AS ca_rank, t.*
            FROM (SELECT c.*, min(issued_at) OVER (PARTITION BY ca_id) AS min_at
                  FROM issued_certificates c WHERE thing_name LIKE 'tpl-%') t
        ), g AS (
            SELECT i, now() - interval '1 minute'
                     - make_interval(secs => ($span_s::float8 * ($ROWS_WANTED - i)) / $ROWS_WANTED) AS at,
                   CASE WHEN i <= $ROWS_WANTED * 0.6 THEN 1 ELSE 2 END AS ca_rank
            FROM generate_series($from, $to) AS i
        )
        INSERT INTO issued_certificates (serial, ca_id, thing_name, country, subject,
            key_algorithm, spki_sha256, aws_certificate_id, certificate_der, not_before,
            not_after, issued_at, station, request_id, status, revoked_at, revocation_reason,
            aws_status, aws_first_seen_at, aws_synced_at, channel)
        SELECT decode(left(md5('s' || i) || md5('t' || i), 40), 'hex'), t.ca_id,
            'fill-' || lpad(i::text, 8, '0'),
            (ARRAY['JP', 'JP', 'US', 'DE', 'CN', 'MX'])[1 + (i / 7) % 6],
            replace(t.subject, t.thing_name, 'fill-' || lpad(i::text, 8, '0')),
            t.key_algorithm, decode(md5('k' || i) || md5('l' || i), 'hex'),
            decode(md5('a' || i) || md5('b' || i), 'hex'),
            t.certificate_der, g.at + (t.not_before - t.issued_at),
            g.at + (t.not_after - t.issued_at), g.at, 'line-' || (i % 8),
            CASE WHEN t.request_id IS NULL THEN NULL
                 ELSE left(md5('r' || i), length(t.request_id)) END,
            CASE WHEN i % 67 = 0 THEN 'revoked' ELSE 'active' END,
            CASE WHEN i % 67 = 0 THEN least(g.at + make_interval(secs => (i % 2592000)::float8),
                                             now() - interval '30 seconds') END,
            CASE WHEN i % 67 = 0 THEN (ARRAY['key_compromise', 'cessation_of_operation',
                 'superseded', 'unspecified'])[1 + (i / 67) % 4] END,
            CASE WHEN i % 67 = 0 THEN 'REVOKED' WHEN i % 200 = 1 THEN 'INACTIVE'
                 WHEN i % 100 < 13 THEN NULL ELSE 'ACTIVE' END,
            CASE WHEN i % 67 = 0 OR i % 200 = 1 OR i % 100 >= 13
                 THEN g.at + interval '1 day' END,
            CASE WHEN i % 67 = 0 OR i % 200 = 1 OR i % 100 >= 13 THEN now() END,
            CASE WHEN i % 20 = 7 THEN 'est' ELSE 'api' END
        FROM g JOIN tpl t ON t.ca_rank = g.ca_rank AND t.k = g.i % 8" 1800 >/dev/null
    done
    # Before the foreign keys are back: one check of them all beats a trigger per row.
    psql_db "$db" "INSERT INTO thing_claims (thing_name, serial, not_after)
        SELECT thing_name, serial, not_after FROM issued_certificates
        WHERE thing_name LIKE 'fill-%' AND status = 'active'" 3600 >/dev/null
    log "fill: rows and claims inserted in $(($(date +%s) - t0)) s; rebuilding keys and indexes"
    t0=$(date +%s)
    { echo "SET maintenance_work_mem = '1GB';"; cat "$WORK/create.sql"; } >"$WORK/create-all.sql"
    timeout 3600 psql "$PG/$db" -qX -v ON_ERROR_STOP=1 -f "$WORK/create-all.sql" >/dev/null
    log "fill: keys and indexes in $(($(date +%s) - t0)) s; appending to the hash chains"
    t0=$(date +%s)
    timeout 7200 psql "$PG/$db" -qX -v ON_ERROR_STOP=1 -f "$ROOT/scripts/bench-ledger-chain.sql" >/dev/null
    FILL_NOTES+=("- Hash chains: the filled rows appended in $(($(date +%s) - t0)) s.")
    t0=$(date +%s)
    cli "$db" "$data" ledger recount >/dev/null
    FILL_NOTES+=("- Stats counters: recomputed from the filled ledger (\`factory-ca ledger recount\`) in $(($(date +%s) - t0)) s.")
    t0=$(date +%s)
    psql_db "$db" "VACUUM ANALYZE issued_certificates" 3600 >/dev/null
    psql_db "$db" "VACUUM ANALYZE certificate_counts" 3600 >/dev/null
    psql_db "$db" "VACUUM ANALYZE revocation_counts" 3600 >/dev/null
    psql_db "$db" "VACUUM ANALYZE certificate_counts_daily" 3600 >/dev/null
    psql_db "$db" "VACUUM ANALYZE revocation_counts_daily" 3600 >/dev/null
    psql_db "$db" "VACUUM ANALYZE thing_claims" 3600 >/dev/null
    psql_db "$db" "VACUUM ANALYZE ledger_chain" 3600 >/dev/null
    log "fill: VACUUM ANALYZE in $(($(date +%s) - t0)) s"
}

FILL_NOTES=()
[[ ${BENCH_LEDGER_FILL_ONLY:-0} == 1 ]] && BENCH_LEDGER_KEEP=1
if [[ -n ${BENCH_LEDGER_DB:-} ]]; then
    DB=$BENCH_LEDGER_DB
    DATA=${BENCH_LEDGER_DATA:?BENCH_LEDGER_DATA: the data dir of BENCH_LEDGER_DB}
else
    DB="factory_ca_ledger_${STAMP}"
    DATA=${BENCH_LEDGER_DATA:-$WORK/data-ledger}
    if [[ ${BENCH_LEDGER_KEEP:-0} == 1 ]]; then
        DATA=${BENCH_LEDGER_DATA:-$(mktemp -d -t factory-ca-ledger-data.XXXXXX)}
    else
        DATABASES+=("$DB")
    fi
    t_fill=$(date +%s)
    log "filling $DB with $ROWS_WANTED rows (load average $(load_avg))"
    fill "$DB" "$DATA"
    FILL_NOTES+=("- Fill: $ROWS_WANTED rows in $(($(date +%s) - t_fill)) s, load average at the end $(load_avg).")
    [[ ${BENCH_LEDGER_KEEP:-0} == 1 ]] && log "kept: BENCH_LEDGER_DB=$DB BENCH_LEDGER_DATA=$DATA"
    if [[ ${BENCH_LEDGER_FILL_ONLY:-0} == 1 ]]; then
        printf '%s\n' "${FILL_NOTES[@]}"
        exit 0
    fi
fi
ROWS=$(psql_db "$DB" "SELECT count(*) FROM issued_certificates" 600)
PARTS=" ${BENCH_PARTS:-issuance queries export bytes} "
part() { [[ $PARTS == *" $1 "* ]]; }

# --- 2. Issuance, empty ledger then filled ----------------------------------------------------
ISSUE_ROWS=()
issuance() { # label database data-dir
    local label=$1 db=$2 data=$3 token before after srv0 srv1 busy0 busy1 w0 w1
    start_server "$db" "$data"
    token=$(cli "$db" "$data" token create --role station --name "wrk-$STAMP-$label")
    timeout 900 "$BIN" bench --write-bodies "$WORK/$label.bodies" --requests $((15000 * SECS)) \
        --prefix "w$STAMP-$label" --duration-limit 880 >/dev/null 2>&1
    before=$(psql_db "$db" "SELECT count(*) FROM issued_certificates" 600)
    srv0=$(proc_cpu "$SERVER_PID")
    busy0=$(machine_busy)
    w0=$(date +%s.%N)
    log "issuance on the $label ledger: wrk, $CONNS connections, $SECS s (load average $(load_avg))"
    BENCH_BODIES="$WORK/$label.bodies" BENCH_THREADS=2 BENCH_PATH=/v1/certificates \
        BENCH_TOKEN="$token" BENCH_CPU_FILE="$WORK/$label.wrkcpu" BENCH_RESULT="$WORK/$label.json" \
        timeout $((SECS + 120)) wrk -t 2 -c "$CONNS" -d "${SECS}s" --timeout 10s \
        -s "$ROOT/scripts/bench-wrk.lua" "$URL/v1/certificates" >"$WORK/$label.wrk.out" 2>&1
    w1=$(date +%s.%N)
    busy1=$(machine_busy)
    srv1=$(proc_cpu "$SERVER_PID")
    sleep 1
    after=$(psql_db "$db" "SELECT count(*) FROM issued_certificates" 600)
    ISSUE_ROWS+=("$(jq -r --arg lbl "$label" --argjson rows "$before" --argjson added $((after - before)) \
        --argjson srv "$(awk -v a="$srv0" -v b="$srv1" 'BEGIN { print b - a }')" \
        --argjson busy "$(awk -v a="$busy0" -v b="$busy1" -v w0="$w0" -v w1="$w1" 'BEGIN { printf "%.2f", (b - a) / (w1 - w0) }')" '
        def f(d): . * pow(10; d) | round / pow(10; d);
        (.errors.connect + .errors.read + .errors.write + .errors.timeout + .errors.status) as $err
        | "| \($lbl) | \($rows) | \((.requests - .errors.status) / .duration_s | round)"
          + " | \(.latency_ms.p50 | f(2)) | \(.latency_ms.p99 | f(2)) | \($err) | \($added)"
          + " | \(if $added > 0 then ($srv * 1e6 / $added | round) else "-" end) | \($busy) |"
        ' "$WORK/$label.json")")
    rm -f "$WORK/$label.bodies"
    stop_server
}
if part issuance && [[ ${BENCH_EMPTY:-1} == 1 ]]; then
    EMPTY_DB="factory_ca_ledger_${STAMP}_empty"
    psql_admin "CREATE DATABASE $EMPTY_DB" >/dev/null
    DATABASES+=("$EMPTY_DB")
    mkdir -p "$WORK/data-empty"
    issuance empty "$EMPTY_DB" "$WORK/data-empty"
fi
part issuance && issuance filled "$DB" "$DATA"

# --- 3. Dashboard queries through HTTP --------------------------------------------------------
QUERY_ROWS=()
EXPORT_LINE="not measured"
start_server "$DB" "$DATA"
VIEWER=$(cli "$DB" "$DATA" token create --role viewer --name "viewer-$STAMP")
iso() { date -u -d "$1" +%Y-%m-%dT%H:%M:%SZ; }
TODAY=$(date -u +%Y-%m-%dT00:00:00Z)
WEEK=$(iso '7 days ago')
MONTH=$(iso '30 days ago')
CHART=$(date -u -d "$(date -u +%Y-%m-%d) -13 days" +%Y-%m-%dT00:00:00Z)
DAY_A=$(iso '2 days ago')
DAY_B=$(iso '1 day ago')
CURSOR=$(curl -fsS -H "Authorization: Bearer $VIEWER" "$URL/v1/certificates?limit=1000" | jq -r .next_cursor)
QUERIES=(
    "dashboard: recent (sort=desc, limit=20)|/v1/certificates?sort=desc&limit=20"
    "dashboard: search (q, a thing name prefix)|/v1/certificates?sort=desc&limit=20&q=fill-0512"
    "dashboard: chart, today by hour|/v1/stats?from=$TODAY&group_by=hour"
    "dashboard: chart, 14 days by day|/v1/stats?from=$CHART&group_by=day"
    "dashboard: stations, today|/v1/stats?from=$TODAY&group_by=station"
    "dashboard: stations, 7 days|/v1/stats?from=$WEEK&group_by=station"
    "dashboard: stations, 30 days|/v1/stats?from=$MONTH&group_by=station"
    "dashboard: stations, all time|/v1/stats?from=1970-01-01T00:00:00Z&group_by=station"
    "dashboard: totals, today|/v1/stats?from=$TODAY"
    "dashboard: totals, 7 days|/v1/stats?from=$WEEK"
    "dashboard: totals, all time|/v1/stats?from=1970-01-01T00:00:00Z"
    "stats: 7 days by country|/v1/stats?from=$WEEK&group_by=country"
    "stats: 7 days by CA|/v1/stats?from=$WEEK&group_by=ca"
    "stats: 7 days by status|/v1/stats?from=$WEEK&group_by=status"
    "list: newest first (default page, 100)|/v1/certificates"
    "list: oldest first|/v1/certificates?sort=asc"
    "list: next page (cursor)|/v1/certificates?cursor=$CURSOR"
    "list: one thing name|/v1/certificates?thing_name=fill-01234567"
    "list: station, next page|/v1/certificates?station=line-3&cursor=$CURSOR"
    "list: country, oldest first|/v1/certificates?country=DE&sort=asc"
    "list: issued in one day|/v1/certificates?issued_after=$DAY_A&issued_before=$DAY_B"
    "list: revoked|/v1/certificates?status=revoked"
    "list: never seen by AWS IoT|/v1/certificates?aws_status=never_seen"
)
part queries && log "dashboard queries, $REPS times each (load average $(load_avg))"
part queries && for entry in "${QUERIES[@]}"; do
    title=${entry%%|*}
    path=${entry#*|}
    : >"$WORK/q.times"
    failed=""
    for _ in $(seq 1 "$REPS"); do
        code=$(curl -sS --max-time 30 -o "$WORK/q.body" -w '%{http_code} %{time_total}' \
            -H "Authorization: Bearer $VIEWER" "$URL$path")
        if [[ ${code%% *} != 200 ]]; then
            failed="HTTP ${code%% *} $(jq -r .code "$WORK/q.body" 2>/dev/null || true)"
            log "$title: $failed"
        fi
        echo "${code#* }" >>"$WORK/q.times"
    done
    [[ -n $failed ]] && what="$failed (last of its answers that was not 200)" || what=$(jq -r 'if .items then "\(.items | length) rows" else "\(.totals.issued) issued, \(.groups | length) groups" end' "$WORK/q.body" 2>/dev/null || echo "?")
    read -r p50 p95 max < <(sort -n "$WORK/q.times" | awk '{ t[NR] = $1 * 1000 } END {
        i50 = int(NR * 0.5 + 0.5); i95 = int(NR * 0.95 + 0.5); if (i50 < 1) i50 = 1; if (i95 < 1) i95 = 1
        printf "%.1f %.1f %.1f\n", t[i50], t[i95], t[NR] }')
    mark=""
    awk -v p="$p95" 'BEGIN { exit !(p >= 50) }' && mark=" **over 50**"
    QUERY_ROWS+=("| $title | $what | $p50 | $p95$mark | $max |")
done

# --- 4. CSV export ----------------------------------------------------------------------------
export_csv() {
    export_path="/v1/certificates/export.csv"
    [[ -n ${BENCH_EXPORT_LIMIT:-} ]] && export_path+="?limit=$BENCH_EXPORT_LIMIT"
    rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$SERVER_PID/status"; }
    rss0=$(rss_kib)
    : >"$WORK/rss"
    log "CSV export ($export_path)"
    e0=$(date +%s.%N)
    cpu0=$(proc_cpu "$SERVER_PID")
    # Counted as it arrives (10 million rows are ~3.5 GB of CSV).
    { curl -fsS --max-time 1800 -H "Authorization: Bearer $VIEWER" "$URL$export_path" |
        wc -lc >"$WORK/export.count"; } &
    CURL_PID=$!
    while kill -0 "$CURL_PID" 2>/dev/null; do
        rss_kib >>"$WORK/rss"
        sleep 0.5
    done
    wait "$CURL_PID" || log "the export failed"
    e1=$(date +%s.%N)
    cpu1=$(proc_cpu "$SERVER_PID")
    read -r export_lines export_bytes <"$WORK/export.count"
    export_rows=$((export_lines - 1))
    EXPORT_LINE=$(awk -v r="$export_rows" -v b="$export_bytes" -v e0="$e0" -v e1="$e1" -v c0="$cpu0" \
        -v c1="$cpu1" -v rss0="$rss0" 'NR == 1 { min = $1; max = $1 } { if ($1 < min) min = $1; if ($1 > max) max = $1; s[NR] = $1 }
        END { w = e1 - e0; q = int(NR / 4); if (q < 1) q = 1
              printf "%d rows (%.0f MB) in %.1f s: %.0f rows/s; service CPU %.1f s (%.1f µs/row); RSS before %.0f MiB, during min %.0f / max %.0f MiB (first quarter max %.0f, last quarter max %.0f; %d samples)",
                r, b / 1e6, w, r / w, c1 - c0, (c1 - c0) * 1e6 / r, rss0 / 1024, min / 1024, max / 1024,
                qmax(s, 1, q) / 1024, qmax(s, NR - q + 1, NR) / 1024, NR }
        function qmax(a, from, to,   i, m) { m = 0; for (i = from; i <= to; i++) if (a[i] > m) m = a[i]; return m }' "$WORK/rss")
    }
part export && export_csv
stop_server

# --- 5. Bytes on disk -------------------------------------------------------------------------
BYTES="(not measured)"
TOTAL="not measured"
part bytes && BYTES=$(psql_db "$DB" "WITH n AS (SELECT count(*)::numeric AS n FROM issued_certificates),
  r AS (
    SELECT c.oid::regclass::text AS rel, 'heap' AS kind, pg_relation_size(c.oid) AS bytes
      FROM pg_class c WHERE c.relname IN ('issued_certificates', 'thing_claims', 'ledger_chain')
    UNION ALL
    SELECT c.relname || ' (TOAST)', 'toast', pg_total_relation_size(c.reltoastrelid)
      FROM pg_class c WHERE c.relname IN ('issued_certificates', 'thing_claims', 'ledger_chain')
      AND c.reltoastrelid <> 0
    UNION ALL
    SELECT i.indexrelid::regclass::text, 'index', pg_relation_size(i.indexrelid)
      FROM pg_index i WHERE i.indrelid IN ('issued_certificates'::regclass,
        'thing_claims'::regclass, 'ledger_chain'::regclass))
  SELECT '| ' || rel || ' | ' || round(bytes / n.n, 1) || ' | ' || pg_size_pretty(bytes) || ' |'
    FROM r, n ORDER BY bytes DESC" 600)
part bytes && TOTAL=$(psql_db "$DB" "SELECT round(sum(pg_total_relation_size(c)) / (SELECT count(*) FROM issued_certificates)::numeric)
    || ' bytes per certificate, ' || pg_size_pretty(sum(pg_total_relation_size(c)))
    FROM unnest(ARRAY['issued_certificates', 'thing_claims', 'ledger_chain']::regclass[]) AS c" 600)

# --- Report -----------------------------------------------------------------------------------
cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
echo
echo "Machine: $(nproc) cores ($cpu_model), $(free -g | awk '/^Mem/ { print $2 }') GiB; PostgreSQL" \
    "$(psql_admin "SHOW server_version") (shared_buffers $(psql_admin "SHOW shared_buffers"), fsync=$(psql_admin "SHOW fsync"), synchronous_commit=$(psql_admin "SHOW synchronous_commit")); $(date -u +%Y-%m-%dT%H:%MZ); load average at the end $(load_avg)."
echo "Ledger: $ROWS rows in $DB."
printf '%s\n' "${FILL_NOTES[@]}"
echo
echo "Issuance (wrk, ECDSA P-256 CA, $CONNS connections, $SECS s):"
echo
echo "| ledger | rows before | certs/s | p50 ms | p99 ms | errors | rows added | service CPU µs/cert | machine busy (cores) |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
printf '%s\n' "${ISSUE_ROWS[@]}"
echo
echo "Dashboard queries through HTTP ($REPS each, one at a time, curl time_total):"
echo
echo "| query | answer | p50 ms | p95 ms | max ms |"
echo "| --- | --- | --- | --- | --- |"
printf '%s\n' "${QUERY_ROWS[@]}"
echo
echo "CSV export: $EXPORT_LINE."
echo
echo "Bytes on disk: $TOTAL."
echo
echo "| relation | bytes per certificate | size |"
echo "| --- | --- | --- |"
echo "$BYTES"

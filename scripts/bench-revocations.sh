#!/usr/bin/env bash
# Revocation pushes to AWS IoT at scale, against the moto emulator (docs/benchmarks.md,
# "Revocation pushes to AWS IoT").
#
# Builds the release binary once (or takes BENCH_BIN), starts moto on loopback
# (scripts/moto_server.py) and measures moto's own capacity (its ceiling), then starts
# `factory-ca serve` on a fresh PostgreSQL database with AWS pointed at moto, paced at
# BENCH_RATE calls per second with a burst of BENCH_BURST, and:
#   1. registers the CA in moto (DEFAULT mode, ACTIVE);
#   2. issues BENCH_N device certificates through the API (`factory-ca bench`);
#   3. registers BENCH_CONNECTED_PCT percent of them in moto as ACTIVE, with boto3, as JITP does
#      when a device connects (their revocation is one UpdateCertificate; the others' is two
#      calls: UpdateCertificate answers not found, then RegisterCertificate as REVOKED);
#   4. revokes them all with one bulk revocation job (filter: the CA);
#   5. lets the retry job (every second) push the backlog, polls the progress
#      (`revocations_pending` of GET /v1/admin/health, the gauge
#      factory_ca_aws_revocations_pending of /metrics, and the ledger), and SIGKILLs the service
#      once BENCH_KILL_AT_PCT percent is pushed; restarts it and waits until nothing is pending;
#   6. checks with boto3, independently of factory-ca, that every certificate is listed under the
#      CA in moto as REVOKED; reads the AWS call and throttling counters; greps the logs for
#      failed pushes;
#   7. syncs the CA (POST /v1/admin/cas/{id}/aws/sync: ListCertificatesByCA) and times it.
# Prints a markdown report on stdout; progress goes to stderr.
#
#   BENCH_N               device certificates (default 100000)
#   BENCH_CONNECTED_PCT   percent of them registered in moto before the revocation (default 80)
#   BENCH_RATE            aws.api_rate_per_sec (default 40: below moto's one-connection capacity,
#                         which the script measures, so that the pace is what is measured)
#   BENCH_BURST           aws.api_burst (default 10)
#   BENCH_MOTO_THROTTLE   RATE[:BURST]: moto throttles AWS IoT calls over this rate as AWS does
#                         (HTTP 429 ThrottlingException; scripts/moto_server.py --iot-throttle);
#                         unset (default): moto does not throttle
#   BENCH_KILL_AT_PCT     SIGKILL the service once this percent is pushed (default 40; 0: never)
#   BENCH_DRAIN_LIMIT     seconds the drain may take, at most (default 5400)
#   BENCH_CEILING_SECS    seconds per moto capacity measurement (default 5; 0 skips it)
#   BENCH_SYNC            1 (default) to time a sync of the CA afterwards, 0 not to
#   BENCH_SYNC_TIMEOUT    server.request_timeout_secs of the service that runs the sync (default
#                         900: one ListCertificatesByCA page of moto holds every certificate)
#   BENCH_POSTGRES_URL    server URL without database (default postgres://postgres@127.0.0.1:5432)
#   BENCH_BIN             a factory-ca release binary to use instead of building one
#   MOTO_PYTHON           the Python with moto and boto3 (default python3)
#
# Needs: jq, psql, curl, python3 (moto, boto3, cryptography) and a PostgreSQL server with trust
# auth for user postgres. Every wait is bounded; moto, the service, the data dir and the
# database are removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/bench.sh
ROOT=$(pwd)

N=${BENCH_N:-100000}
CONNECTED_PCT=${BENCH_CONNECTED_PCT:-80}
RATE=${BENCH_RATE:-40}
BURST=${BENCH_BURST:-10}
KILL_AT_PCT=${BENCH_KILL_AT_PCT:-40}
DRAIN_LIMIT=${BENCH_DRAIN_LIMIT:-5400}
CEILING_SECS=${BENCH_CEILING_SECS:-5}
SYNC=${BENCH_SYNC:-1}
SYNC_TIMEOUT=${BENCH_SYNC_TIMEOUT:-900}
PG=${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}
PY=${MOTO_PYTHON:-python3}
REGION=us-east-1
for tool in jq psql curl "$PY"; do
    command -v "$tool" >/dev/null || { echo "bench-revocations.sh needs $tool" >&2; exit 2; }
done
"$PY" -c 'import moto, boto3, cryptography' 2>/dev/null ||
    { echo "bench-revocations.sh: $PY lacks moto, boto3 or cryptography (set MOTO_PYTHON)" >&2; exit 2; }

STAMP=$(date -u +%Y%m%d%H%M%S)
WORK=$(mktemp -d -t factory-ca-bench-revocations.XXXXXX)
DB="factory_ca_bench_revocations_$STAMP"
DB_MADE=""
SERVER_PID=""
MOTO_PID=""
FAILED=0

cleanup() {
    stop_server TERM
    stop_pid "$MOTO_PID"
    if [[ -n $DB_MADE ]]; then
        drop_databases "$DB"
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

q() { timeout 120 psql "$PG/$DB" -qAtX -v ON_ERROR_STOP=1 -c "$1"; }
now() { date +%s.%N; }
secs_since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# --- Build once ------------------------------------------------------------------------------
BIN=$(release_bin)

# --- moto ------------------------------------------------------------------------------------
MOTO_PORT=$(free_port)
MOTO="http://127.0.0.1:$MOTO_PORT"
MOTO_ARGS=()
[[ -n ${BENCH_MOTO_THROTTLE:-} ]] && MOTO_ARGS=(--iot-throttle "$BENCH_MOTO_THROTTLE")
"$PY" "$ROOT/scripts/moto_server.py" "$MOTO_PORT" "${MOTO_ARGS[@]}" >"$WORK/moto.log" 2>&1 &
MOTO_PID=$!
for _ in $(seq 1 150); do
    # Any HTTP answer means it listens.
    curl -sS --max-time 2 -o /dev/null "$MOTO/" 2>/dev/null && break
    kill -0 "$MOTO_PID" 2>/dev/null || { cat "$WORK/moto.log" >&2; exit 1; }
    sleep 0.2
done
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_EC2_METADATA_DISABLED=true
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ROLE_ARN AWS_WEB_IDENTITY_TOKEN_FILE
CEILING='{}'
if [[ $CEILING_SECS != 0 && -z ${BENCH_MOTO_THROTTLE:-} ]]; then
    log "moto's capacity: UpdateCertificate and RegisterCertificate, 1 and 4 client threads, ${CEILING_SECS} s each"
    CEILING=$(timeout $((CEILING_SECS * 8 + 300)) "$PY" "$ROOT/scripts/bench_revocations_moto.py" ceiling "$MOTO" "$CEILING_SECS")
    log "moto: $CEILING"
fi

# --- factory-ca ------------------------------------------------------------------------------
timeout 60 psql "$PG/postgres" -qX -v ON_ERROR_STOP=1 -c "CREATE DATABASE $DB" >/dev/null
DB_MADE=1
DATA="$WORK/data"
mkdir -p "$DATA"
PORT=$(free_port)
URL="http://127.0.0.1:$PORT"
ENV_SERVER=(
    FACTORY_CA_DATABASE__URL="$PG/$DB"
    FACTORY_CA_DATA_DIR="$DATA"
    FACTORY_CA_SERVER__LISTEN="127.0.0.1:$PORT"
    FACTORY_CA_SERVER__STATION_RATE_PER_SEC=0
    FACTORY_CA_LOG__FORMAT=json
    FACTORY_CA_LOG__LEVEL=warn
    FACTORY_CA_AWS__ENABLED=true
    FACTORY_CA_AWS__REGION=$REGION
    FACTORY_CA_AWS__ENDPOINT_URL="$MOTO"
    FACTORY_CA_AWS__API_RATE_PER_SEC="$RATE"
    FACTORY_CA_AWS__API_BURST="$BURST"
    FACTORY_CA_AWS__REVOCATION_RETRY_SECS=1
    FACTORY_CA_AWS__SYNC_INTERVAL_SECS=0
)
STARTS=0
start_server() { # extra VAR=value words
    STARTS=$((STARTS + 1))
    # stderr holds the bootstrap admin token; it stays in $WORK, removed on exit.
    env "${ENV_SERVER[@]}" "$@" "$BIN" serve >>"$WORK/serve.out" 2>>"$WORK/serve.err" &
    SERVER_PID=$!
    for _ in $(seq 1 600); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        curl -fsS --max-time 2 -o /dev/null "$URL/readyz" 2>/dev/null && return 0
        sleep 0.1
    done
    tail -n 20 "$WORK/serve.err" >&2
    log "the service did not become ready within 60 s"
    exit 1
}
api() { # method path [json body] -> body on stdout; fails on a non-2xx answer
    local args=(-fsS --max-time "${API_TIMEOUT:-60}" -X "$1" -H "Authorization: Bearer $ADMIN")
    [[ $# -ge 3 ]] && args+=(-H 'Content-Type: application/json' -d "$3")
    curl "${args[@]}" "$URL$2"
}
# Scrapes /metrics into $WORK/metrics-<n>.txt (the last scrape of each run of the service).
scrape() { curl -fsS --max-time 10 "$URL/metrics" >"$WORK/metrics-$STARTS.tmp" 2>/dev/null &&
    mv "$WORK/metrics-$STARTS.tmp" "$WORK/metrics-$STARTS.txt"; }

log "starting the service on $URL (database $DB, moto $MOTO, $RATE calls/s, burst $BURST)"
start_server
ADMIN=$(env "${ENV_SERVER[@]}" timeout 60 "$BIN" token create --role admin --name bench-admin)
STATION=$(env "${ENV_SERVER[@]}" timeout 60 "$BIN" token create --role station --name bench-station)
CA=$(api GET /v1/ca | jq -r .id)
api POST "/v1/admin/cas/$CA/aws/register" '{"mode": "default", "activate": true}' >/dev/null
CA_AWS_ID=$(q "SELECT aws_certificate_id FROM ca_aws_registrations WHERE ca_id = '$CA'")
q "SELECT certificate_pem FROM certificate_authorities WHERE id = '$CA'" >"$WORK/ca.pem"
log "CA $CA registered in moto as $CA_AWS_ID"

# --- Issue -----------------------------------------------------------------------------------
log "issuing $N device certificates through the API"
t=$(now)
FACTORY_CA_BENCH_TOKEN=$STATION timeout 1800 "$BIN" bench --url "$URL" --requests "$N" \
    --concurrency 8 --prefix "rv$STAMP" --duration-limit 1700 --json >"$WORK/issue.json" 2>"$WORK/issue.err" ||
    { tail -n 5 "$WORK/issue.err" >&2; log "issuance failed"; exit 1; }
ISSUE_SECS=$(secs_since "$t")
ISSUED=$(q "SELECT count(*) FROM issued_certificates WHERE ca_id = '$CA' AND status = 'active'")
((ISSUED == N)) || { log "$ISSUED active certificates in the ledger, not $N"; exit 1; }
log "issued $N in ${ISSUE_SECS} s"

q "SELECT aws_certificate_id FROM issued_certificates WHERE ca_id = '$CA' ORDER BY serial" >"$WORK/ids.txt"
CONNECTED=$((N * CONNECTED_PCT / 100))
CONNECT='{"registered": 0, "errors": 0}'
if ((CONNECTED > 0)); then
    q "SELECT encode(certificate_der, 'hex') FROM issued_certificates WHERE ca_id = '$CA' \
       ORDER BY serial LIMIT $CONNECTED" >"$WORK/connected.hex"
    log "registering $CONNECTED of them in moto as ACTIVE (devices that connected)"
    CONNECT=$(timeout 3600 "$PY" "$ROOT/scripts/bench_revocations_moto.py" connect "$MOTO" "$REGION" \
        "$WORK/ca.pem" "$WORK/connected.hex" 4) || { log "connect: $CONNECT"; exit 1; }
    log "connect: $CONNECT"
    rm -f "$WORK/connected.hex"
fi
CALLS=$((CONNECTED + 2 * (N - CONNECTED)))

# --- Revoke and drain ------------------------------------------------------------------------
pending_db() { q "SELECT count(*) FROM issued_certificates WHERE ca_id = '$CA' AND aws_revocation_pending"; }
revoked_db() { q "SELECT count(*) FROM issued_certificates WHERE ca_id = '$CA' AND status = 'revoked'"; }
log "revoking all $N with one bulk revocation job"
T0=$(now)
JOB=$(api POST /v1/admin/revocations "{\"filter\": {\"ca_id\": \"$CA\"}, \"reason\": \"key_compromise\"}" | jq -r .id)
JOB_SECS=""
KILLED_AT=""
KILL_PENDING=""
KILL_SECS=""
RESTART_SECS=""
SAMPLES="$WORK/samples.tsv"
echo -e "t_s\tledger_revoked\thealth_pending\tmetric_pending\tdb_pending" >"$SAMPLES"
DRAIN_SECS=""
last_pushed=0
stalled_since=$(now)
# Bounded: DRAIN_LIMIT seconds, and a polling step of at least 2 s.
while :; do
    sleep 2
    el=$(secs_since "$T0")
    if [[ -z $JOB_SECS ]] && api GET "/v1/admin/revocations/$JOB" 2>/dev/null | jq -e '.finished_at != null' >/dev/null; then
        JOB_SECS=$el
        log "bulk job finished in ${JOB_SECS} s (ledger revocation)"
    fi
    revoked=$(revoked_db)
    dbp=$(pending_db)
    hp=$(API_TIMEOUT=20 api GET /v1/admin/health 2>/dev/null |
        jq -r --arg ca "$CA" '[.cas[] | select(.ca_id == $ca) | .targets[].revocations_pending] | add // "?"' || echo "?")
    mp="?"
    if scrape; then
        mp=$(awk -v ca="$CA" '/^factory_ca_aws_revocations_pending\{/ && index($0, "ca_id=\"" ca "\"") { v = $NF } END { print (v == "" ? "?" : v) }' "$WORK/metrics-$STARTS.txt")
    fi
    echo -e "$el\t$revoked\t$hp\t$mp\t$dbp" >>"$SAMPLES"
    pushed=$((revoked - dbp))
    if [[ -n $JOB_SECS && $dbp == 0 ]]; then
        DRAIN_SECS=$el
        break
    fi
    if [[ -z $KILLED_AT && $KILL_AT_PCT != 0 && -n $JOB_SECS ]] && ((pushed * 100 >= N * KILL_AT_PCT)); then
        KILLED_AT=$el
        KILL_PENDING=$dbp
        log "SIGKILL at ${el} s with $dbp pending"
        tk=$(now)
        stop_server KILL
        start_server
        RESTART_SECS=$(secs_since "$tk")
        KILL_SECS=$el
        log "restarted (ready in ${RESTART_SECS} s)"
    fi
    if ((pushed != last_pushed)); then
        last_pushed=$pushed
        stalled_since=$(now)
    elif awk -v s="$(secs_since "$stalled_since")" 'BEGIN { exit !(s > 120) }'; then
        log "no progress for 120 s ($dbp pending); giving up"
        FAILED=1
        break
    fi
    if awk -v e="$el" -v l="$DRAIN_LIMIT" 'BEGIN { exit !(e > l) }'; then
        log "still $dbp pending after $DRAIN_LIMIT s; giving up"
        FAILED=1
        break
    fi
    awk -v e="$el" 'BEGIN { exit !(int(e) % 60 < 2) }' && log "${el} s: revoked $revoked, pending $dbp (health $hp, metric $mp)"
done
scrape || true
log "drained in ${DRAIN_SECS:-?} s"

# --- Check -----------------------------------------------------------------------------------
log "checking every certificate in moto with boto3"
CHECK=$(timeout 900 "$PY" "$ROOT/scripts/bench_revocations_moto.py" check "$MOTO" "$REGION" "$CA_AWS_ID" "$WORK/ids.txt") || FAILED=1
log "check: $CHECK"
# Counters of each run of the service (they restart at zero with the process).
counter_sum() { # metric-name regexp on labels
    cat "$WORK"/metrics-*.txt 2>/dev/null | awk -v m="$1" -v re="$2" '$1 ~ "^" m "\\{" && $1 ~ re { s += $NF } END { printf "%d", s }'
}
UPDATE_OK=$(counter_sum factory_ca_aws_calls_total 'operation="UpdateCertificate".*outcome="ok"|outcome="ok".*operation="UpdateCertificate"')
UPDATE_NF=$(counter_sum factory_ca_aws_calls_total 'operation="UpdateCertificate".*outcome="not_found"|outcome="not_found".*operation="UpdateCertificate"')
REGISTER_OK=$(counter_sum factory_ca_aws_calls_total 'operation="RegisterCertificate".*outcome="ok"|outcome="ok".*operation="RegisterCertificate"')
CALLS_ALL=$(counter_sum factory_ca_aws_calls_total '.')
CALLS_BAD=$(counter_sum factory_ca_aws_calls_total 'outcome="(already_exists|certificate_validation|invalid_state|invalid_request|unauthorized|unavailable)"')
THROTTLED=$(counter_sum factory_ca_aws_throttled_total '.')
MOTO_THROTTLED=$(grep -o 'moto_server: throttled [0-9]*' "$WORK/moto.log" | tail -n 1 | awk '{ print $3 }' || true)
PUSH_WARNINGS=$(grep -c 'revocation not yet pushed' "$WORK/serve.err" || true)
ERROR_LINES=$(grep -c '"level":"ERROR"' "$WORK/serve.err" || true)
((PUSH_WARNINGS == 0 && ERROR_LINES == 0)) || FAILED=1

# --- Sync ------------------------------------------------------------------------------------
SYNC_SECS="-"
SYNC_REPORT="{}"
if [[ $SYNC == 1 ]]; then
    # One moto page holds every certificate, and the sync runs inside the request.
    stop_server TERM
    start_server FACTORY_CA_SERVER__REQUEST_TIMEOUT_SECS="$SYNC_TIMEOUT"
    log "syncing the CA (ListCertificatesByCA)"
    ts=$(now)
    SYNC_REPORT=$(API_TIMEOUT=$((SYNC_TIMEOUT + 30)) api POST "/v1/admin/cas/$CA/aws/sync" '{}' || echo '{"failed": true}')
    SYNC_SECS=$(secs_since "$ts")
    log "sync: ${SYNC_SECS} s: $SYNC_REPORT"
    SYNC_REVOKED=$(q "SELECT count(*) FROM issued_certificates WHERE ca_id = '$CA' AND aws_status = 'REVOKED'")
    ((SYNC_REVOKED == N)) || { log "after the sync $SYNC_REVOKED rows have aws_status REVOKED, not $N"; FAILED=1; }
fi

# --- Report ----------------------------------------------------------------------------------
FLOOR=$(awk -v c="$CALLS" -v r="$RATE" 'BEGIN { printf "%.0f", c / r }')
cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
echo
echo "Machine: $(nproc) cores ($cpu_model); load average $(cut -d' ' -f1-3 /proc/loadavg) at the end;" \
    "PostgreSQL $(q 'SHOW server_version') on the same machine (fsync=$(q 'SHOW fsync'), synchronous_commit=$(q 'SHOW synchronous_commit'));" \
    "moto $("$PY" -c 'import moto; print(moto.__version__)') on loopback; $(date -u +%Y-%m-%dT%H:%MZ)."
echo
echo "- moto's capacity (boto3 client on the same machine, calls/s, 1 / 4 client threads):" \
    "$(jq -r '"UpdateCertificate \(.update_1.per_sec // 0 | round) / \(.update_4.per_sec // 0 | round), RegisterCertificate \(.register_1.per_sec // 0 | round) / \(.register_4.per_sec // 0 | round)"' <<<"$CEILING")"
echo "- issued: $N certificates through the API in ${ISSUE_SECS} s; registered in moto as connected: $(jq -r .registered <<<"$CONNECT") ($(jq -r '.per_sec // "-"' <<<"$CONNECT")/s, $(jq -r .errors <<<"$CONNECT") errors)"
echo "- pace: api_rate_per_sec $RATE, api_burst $BURST; calls needed $CALLS ($CONNECTED x 1 + $((N - CONNECTED)) x 2); floor $FLOOR s"
echo "- bulk job (ledger): ${JOB_SECS:-?} s; drained (nothing pending) ${DRAIN_SECS:-not} s after the job was created"
echo "- restart: SIGKILL at ${KILL_SECS:-never} s with ${KILL_PENDING:--} pending; ready again in ${RESTART_SECS:--} s"
echo "- AWS calls counted (both runs of the service): $CALLS_ALL in all; UpdateCertificate ok $UPDATE_OK, not_found $UPDATE_NF; RegisterCertificate ok $REGISTER_OK; failed calls $CALLS_BAD; throttled (retried) $THROTTLED"
echo "- moto's throttle: ${BENCH_MOTO_THROTTLE:-none}; calls it answered 429 ThrottlingException: ${MOTO_THROTTLED:-0} (the SDK retries these first; factory_ca_aws_throttled_total counts those still throttled after its retries)"
echo "- failed pushes logged: $PUSH_WARNINGS; ERROR log lines: $ERROR_LINES"
echo "- moto check (boto3 ListCertificates and ListCertificatesByCA): $CHECK"
echo "- sync (POST .../aws/sync): ${SYNC_SECS} s: $SYNC_REPORT"
echo
echo "Progress samples (every ~2 s; first, around the kill, last):"
echo
echo '```'
{ head -n 4 "$SAMPLES"; if [[ -n $KILL_SECS ]]; then awk -F'\t' -v k="$KILL_SECS" 'NR > 4 && $1 >= k - 5 && $1 <= k + 12' "$SAMPLES"; fi; tail -n 3 "$SAMPLES"; } | uniq
echo '```'
exit "$FAILED"

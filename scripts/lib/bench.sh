# Shell functions the benchmark and soak scripts share. Sourced, not run: each script sets
# `PG` (a PostgreSQL URL without a database) before it calls the database functions.

# Progress and errors on stderr, prefixed with the script's name and the UTC time.
log() { echo "$(basename "$0"): $(date -u +%H:%M:%S) $*" >&2; }

# Sends `signal` (default TERM) to a process, waits up to `seconds` (default 40) for it to exit,
# then kills it; reaps it if it is our child. An empty pid does nothing.
stop_pid() { # pid [signal] [seconds]
    local pid=$1 signal=${2:-TERM} seconds=${3:-40}
    [[ -n $pid ]] || return 0
    kill "-$signal" "$pid" 2>/dev/null || true
    for _ in $(seq 1 $((seconds * 10))); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        [[ $signal == KILL ]] || log "process $pid did not stop within $seconds s of SIG$signal; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# Drops the named databases of the server at $PG; each failure is logged, not fatal.
drop_databases() { # database...
    local db
    for db in "$@"; do
        timeout 300 psql "$PG/postgres" -qX -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" \
            >/dev/null 2>&1 || log "could not drop database $db"
    done
}

psql_admin() { timeout 60 psql "$PG/postgres" -qAtX -v ON_ERROR_STOP=1 -c "$1"; }
# $1 database, $2 SQL, $3 timeout in seconds (default 60).
psql_db() { timeout "${3:-60}" psql "$PG/$1" -qAtX -v ON_ERROR_STOP=1 -c "$2"; }

# A TCP port on loopback that nothing listens on (at the moment of asking).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Seconds of CPU (user + system) a process has used, from /proc/<pid>/stat (USER_HZ = 100).
proc_cpu() { sed 's/.*) //' "/proc/$1/stat" | awk '{ printf "%.2f", ($12 + $13) / 100 }'; }
# Busy seconds of the whole machine, all cores (user, nice, system, irq, softirq).
machine_busy() { awk '/^cpu / { printf "%.2f", ($2 + $3 + $4 + $7 + $8) / 100 }' /proc/stat; }
load_avg() { cut -d' ' -f1-3 /proc/loadavg; }

# The release binary to measure: $BENCH_BIN when set, else `cargo build --release` of this
# checkout. Prints its path.
release_bin() {
    if [[ -n ${BENCH_BIN:-} ]]; then
        echo "$BENCH_BIN"
        return
    fi
    log "building the release binary"
    timeout 3600 cargo build --release --bin factory-ca >&2
    echo "$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)/release/factory-ca"
}

# Waits until the service at `url` answers /readyz, for `seconds` (default 300; a check that
# hangs adds at most its own 5 s). If the process `pid` exits first, or the time runs out,
# shows the end of `err_file` and exits.
wait_ready() { # pid url err_file [seconds]
    local pid=$1 url=$2 err_file=$3 seconds=${4:-300}
    local deadline=$((SECONDS + seconds + 1)) # SECONDS counts whole seconds
    while ((SECONDS < deadline)); do
        kill -0 "$pid" 2>/dev/null || { tail -n 20 "$err_file" >&2; exit 1; }
        curl -fsS --max-time 5 "$url/readyz" >/dev/null 2>&1 && return 0
        sleep 0.25
    done
    log "the service at $url was not ready within $seconds s"
    tail -n 20 "$err_file" >&2
    exit 1
}

# Stops the service the script started ($SERVER_PID) with `signal` (default TERM) and forgets it.
stop_server() { # [signal]
    stop_pid "${SERVER_PID:-}" "${1:-TERM}"
    SERVER_PID=""
}

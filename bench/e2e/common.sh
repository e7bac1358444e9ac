# shellcheck shell=bash disable=SC2034  # the *_BIN paths are used by the scripts that source this
# Shared helpers of the end-to-end benchmarks (bench/e2e/*.sh). Sourced, not run.
#
# Every benchmark is self-contained: it starts what it needs on 127.0.0.1, bounds every step in
# time, stops everything it started (a trap runs on any exit, error or signal), and prints its
# figures, its target and PASS/FAIL. A missed target still exits 0 unless --strict is given:
# the figures are the product, not the verdict.
#
# Arguments understood by every script:  [--strict] [--keep] [BUILD_DIR]
#   BUILD_DIR   the CMake build directory (also $BUILD_DIR; default build/release), relative to
#               the repository root or absolute.
#   --strict    exit 1 when a target is missed.
#   --keep      keep the work directory (logs, JSON reports) instead of deleting it.
#
# Helpers (each one times out; none leaves a process behind):
#   bench_init NAME MAX_SECONDS "$@"  parse arguments, find binaries, make $WORK, arm the trap and
#                                     a watchdog that ends the whole script after MAX_SECONDS.
#   free_port, bounded                from scripts/lib.sh.
#   start_server NAME ARGS...         flightcache-server on a free port; waits for health SERVING.
#                                     Sets ${NAME}_PORT and ${NAME}_PID.
#   start_noop_server NAME ARGS...    the same for flightcache-noop-server.
#   start_redis NAME                  redis-server on a free port, no persistence; waits for PONG.
#                                     Sets ${NAME}_PORT and ${NAME}_PID (stopped by PID like the rest).
#   redis_commandstats PORT FILE      Redis' per-command call counts (INFO commandstats) as JSON.
#   start_origin NAME ARGS...         flightcache-origin on port 0 (read from --port-file); sets
#                                     ${NAME}_PORT, ${NAME}_PID; its final counters land in
#                                     $WORK/NAME.out (last line) once stopped.
#   stop_pid PID [GRACE_SECONDS]      SIGTERM, wait (default 15 s), then SIGKILL.
#   json FILE EXPR                    evaluate a python expression over the JSON in FILE (`d`).
#   calc EXPR                         evaluate an arithmetic python expression.
#   stats_json PORT FILE              the server's Stats as JSON (flightcache-cli --json stats).
#   rss_kb PID                        VmRSS of PID in KiB.
#   result NAME VALUE TARGET PASS|FAIL   print and record one verdict.
#   bench_finish                      print the summary and exit (1 on a miss with --strict).

set -euo pipefail

BENCH_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# free_port and bounded
# shellcheck source=../../scripts/lib.sh
source "$BENCH_REPO_ROOT/scripts/lib.sh"
BENCH_PIDS=()
BENCH_RESULTS=()
BENCH_FAILED=0
BENCH_STRICT=0
BENCH_KEEP=0
BENCH_WATCHDOG_PID=""
WORK=""

bench_log() { printf '[%s %s] %s\n' "$(date +%H:%M:%S)" "${BENCH_NAME:-bench}" "$*" >&2; }
bench_die() {
  bench_log "ERROR: $*"
  exit 3
}

bench_cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [[ -n "$BENCH_WATCHDOG_PID" ]]; then
    kill "$BENCH_WATCHDOG_PID" 2>/dev/null || true
    wait "$BENCH_WATCHDOG_PID" 2>/dev/null || true
  fi
  # Stop in reverse start order: clients before servers before origins.
  local i
  for ((i = ${#BENCH_PIDS[@]} - 1; i >= 0; i--)); do
    stop_pid "${BENCH_PIDS[$i]}" 10 || true
  done
  if [[ -n "$WORK" && -d "$WORK" ]]; then
    if [[ $BENCH_KEEP -eq 1 || $status -ne 0 ]]; then
      bench_log "logs kept in $WORK"
    else
      rm -rf "$WORK"
    fi
  fi
  exit "$status"
}

bench_init() {
  BENCH_NAME="$1"
  local max_seconds="$2"
  shift 2
  local build_dir="${BUILD_DIR:-build/release}"
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --strict) BENCH_STRICT=1 ;;
      --keep) BENCH_KEEP=1 ;;
      --build-dir=*) build_dir="${1#--build-dir=}" ;;
      -h | --help)
        echo "usage: $0 [--strict] [--keep] [BUILD_DIR]   (or BUILD_DIR=... in the environment)"
        exit 0
        ;;
      -*) bench_die "unknown option $1" ;;
      *) build_dir="$1" ;;
    esac
    shift
  done
  [[ "$build_dir" = /* ]] || build_dir="$BENCH_REPO_ROOT/$build_dir"
  BUILD_DIR="$build_dir"
  SERVER_BIN="$BUILD_DIR/server/flightcache-server"
  LOADGEN_BIN="$BUILD_DIR/client/flightcache-loadgen"
  CLI_BIN="$BUILD_DIR/client/flightcache-cli"
  ORIGIN_BIN="$BUILD_DIR/client/flightcache-origin"
  NOOP_BIN="$BUILD_DIR/bench/flightcache-noop-server"
  FILL_BIN="$BUILD_DIR/bench/flightcache-bench-fill"
  CANCEL_BIN="$BUILD_DIR/bench/flightcache-bench-cancel"
  command -v python3 >/dev/null || bench_die "python3 is required"
  command -v timeout >/dev/null || bench_die "timeout (coreutils) is required"

  WORK="$(mktemp -d "${TMPDIR:-/tmp}/flightcache-bench-$BENCH_NAME.XXXXXX")"
  trap bench_cleanup EXIT
  trap 'bench_log "interrupted"; exit 130' INT TERM
  # The watchdog: whatever hangs, the script ends after max_seconds and the trap cleans up.
  # ($$ is the script's own pid, also inside this subshell; killing the subshell kills its sleep.)
  (
    sleep "$max_seconds" &
    sleeper=$!
    trap 'kill $sleeper 2>/dev/null; exit 0' TERM
    if wait "$sleeper"; then
      echo "[watchdog] $BENCH_NAME exceeded ${max_seconds}s: stopping" >&2
      kill -TERM $$ 2>/dev/null
    fi
  ) &
  BENCH_WATCHDOG_PID=$!

  bench_log "build dir $BUILD_DIR; work dir $WORK"
  bench_log "machine: $(nproc) cores; $(uptime | sed 's/.*load average/load average/')"
  bench_log "source: $(git -C "$BENCH_REPO_ROOT" describe --always --dirty 2>/dev/null || echo unknown)"
}

require_bins() {
  local b
  for b in "$@"; do
    [[ -x "$b" ]] || bench_die "missing $b (build it: cmake --build $BUILD_DIR --target $(basename "$b"))"
  done
}

stop_pid() {
  local pid="$1" grace="${2:-15}"
  kill -0 "$pid" 2>/dev/null || {
    wait "$pid" 2>/dev/null || true
    return 0
  }
  kill -TERM "$pid" 2>/dev/null || true
  local waited=0
  while kill -0 "$pid" 2>/dev/null; do
    # A zombie child of ours counts as gone once reaped; `wait` below reaps it.
    if [[ "$(ps -o stat= -p "$pid" 2>/dev/null)" == Z* ]]; then break; fi
    if ((waited >= grace * 10)); then
      bench_log "pid $pid ignored SIGTERM for ${grace}s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  wait "$pid" 2>/dev/null || true
}

# The cli's TLS flags for wait_healthy (a TLS server: --tls-ca-file=... --tls-server-name=...).
CLI_TLS=()

wait_healthy() {
  local port="$1" pid="$2" log="$3"
  local i
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || {
      cat "$log" >&2
      bench_die "process $pid exited during start-up (log above)"
    }
    if bounded 5 "$CLI_BIN" --target="127.0.0.1:$port" "${CLI_TLS[@]}" --deadline=1s health \
      >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  cat "$log" >&2
  bench_die "127.0.0.1:$port not SERVING after 10 s"
}

# start_server NAME ARGS...: flightcache-server, metrics endpoint off, on a free port.
start_server() {
  local name="$1"
  shift
  local port
  port="$(free_port)"
  "$SERVER_BIN" --listen="127.0.0.1:$port" --metrics-listen= "$@" \
    >"$WORK/$name.out" 2>"$WORK/$name.log" &
  local pid=$!
  BENCH_PIDS+=("$pid")
  wait_healthy "$port" "$pid" "$WORK/$name.log"
  printf -v "${name}_PORT" '%s' "$port"
  printf -v "${name}_PID" '%s' "$pid"
  bench_log "$name: flightcache-server pid $pid on 127.0.0.1:$port $*"
}

start_noop_server() {
  local name="$1"
  shift
  local port
  port="$(free_port)"
  "$NOOP_BIN" --listen="127.0.0.1:$port" "$@" >"$WORK/$name.out" 2>"$WORK/$name.log" &
  local pid=$!
  BENCH_PIDS+=("$pid")
  wait_healthy "$port" "$pid" "$WORK/$name.log"
  printf -v "${name}_PORT" '%s' "$port"
  printf -v "${name}_PID" '%s' "$pid"
  bench_log "$name: flightcache-noop-server pid $pid on 127.0.0.1:$port $*"
}

# start_redis NAME: a throw-away redis-server (the fleet tier's), in the foreground so its PID is
# ours; no RDB, no AOF: nothing is written to disk.
start_redis() {
  local name="$1"
  command -v redis-server >/dev/null || bench_die "redis-server is required (apt-get install redis-server)"
  command -v redis-cli >/dev/null || bench_die "redis-cli is required (apt-get install redis-tools)"
  local port
  port="$(free_port)"
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
    --dir "$WORK" >"$WORK/$name.log" 2>&1 &
  local pid=$!
  BENCH_PIDS+=("$pid")
  local i
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || {
      cat "$WORK/$name.log" >&2
      bench_die "$name exited during start-up"
    }
    [[ "$(bounded 5 redis-cli -p "$port" ping 2>/dev/null)" == PONG ]] && break
    sleep 0.1
  done
  [[ "$(bounded 5 redis-cli -p "$port" ping 2>/dev/null)" == PONG ]] || bench_die "$name not answering PING after 10 s"
  printf -v "${name}_PORT" '%s' "$port"
  printf -v "${name}_PID" '%s' "$pid"
  bench_log "$name: $(redis-server --version | cut -d' ' -f1-3) pid $pid on 127.0.0.1:$port"
}

# redis_commandstats PORT FILE: {"eval": calls, "get": calls, ...} from INFO commandstats.
# Commands run inside scripts (EVAL) are counted under their own names as well as the EVAL.
redis_commandstats() {
  bounded 10 redis-cli -p "$1" info commandstats | python3 -c '
import json, sys
calls = {}
for line in sys.stdin:
    if line.startswith("cmdstat_"):
        name, fields = line.strip()[len("cmdstat_"):].split(":", 1)
        calls[name] = int(dict(f.split("=") for f in fields.split(","))["calls"])
print(json.dumps(calls))' >"$2"
}

# start_origin NAME ARGS...: flightcache-origin on a port it picks itself (no race), read back
# from --port-file.
start_origin() {
  local name="$1"
  shift
  "$ORIGIN_BIN" --listen=127.0.0.1:0 --port-file="$WORK/$name.port" \
    --stats-file="$WORK/$name.stats.json" --log-interval=0 "$@" \
    >"$WORK/$name.out" 2>"$WORK/$name.log" &
  local pid=$!
  BENCH_PIDS+=("$pid")
  local i
  for ((i = 0; i < 100; i++)); do
    [[ -s "$WORK/$name.port" ]] && break
    kill -0 "$pid" 2>/dev/null || {
      cat "$WORK/$name.log" >&2
      bench_die "$name exited during start-up"
    }
    sleep 0.1
  done
  [[ -s "$WORK/$name.port" ]] || bench_die "$name did not write its port within 10 s"
  local port
  port="$(tr -d '[:space:]' <"$WORK/$name.port")"
  printf -v "${name}_PORT" '%s' "$port"
  printf -v "${name}_PID" '%s' "$pid"
  bench_log "$name: flightcache-origin pid $pid on 127.0.0.1:$port $*"
}

# The origin's final counters: the JSON object it prints as the last line of stdout on exit.
origin_final_counters() {
  local name="$1"
  tail -n 1 "$WORK/$name.out"
}

json() {
  python3 - "$1" "$2" <<'PY'
import json, sys
with open(sys.argv[1]) as f:
    d = json.load(f)
v = eval(sys.argv[2], {"d": d})
print(("%.6g" % v) if isinstance(v, float) else v)
PY
}

calc() {
  python3 -c "import sys; v = eval(sys.argv[1]); print(('%.6g' % v) if isinstance(v, float) else v)" "$1"
}

# mean_over_rounds NAME EXPR / list_over_rounds NAME EXPR: EXPR (python, over the report `d`) of
# $WORK/NAME.R.json for R in 1..ROUNDS: their mean, or the values in a list.
mean_over_rounds() {
  local vals=() r
  for ((r = 1; r <= ROUNDS; r++)); do vals+=("$(json "$WORK/$1.$r.json" "$2")"); done
  calc "sum([$(
    IFS=,
    echo "${vals[*]}"
  )]) / $ROUNDS"
}
list_over_rounds() {
  local vals=() r
  for ((r = 1; r <= ROUNDS; r++)); do vals+=("$(json "$WORK/$1.$r.json" "$2")"); done
  echo "${vals[*]}"
}

# stats_json PORT FILE: the server's Stats counters as one JSON object.
stats_json() {
  bounded 10 "$CLI_BIN" --target="127.0.0.1:$1" --deadline=5s --json stats >"$2"
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# result NAME VALUE TARGET VERDICT
result() {
  local line
  printf -v line 'RESULT %-10s %-44s target: %-28s %s' "$BENCH_NAME" "$1 = $2" "$3" "$4"
  echo "$line"
  BENCH_RESULTS+=("$line")
  [[ "$4" == PASS || "$4" == INFO ]] || BENCH_FAILED=1
}

# verdict PYTHON_BOOL_EXPR: PASS or FAIL
verdict() {
  if [[ "$(calc "$1")" == True ]]; then echo PASS; else echo FAIL; fi
}

bench_finish() {
  echo
  echo "== $BENCH_NAME: summary ($(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, $(uptime | sed 's/.*load average/load average/'))"
  local line
  for line in "${BENCH_RESULTS[@]}"; do echo "$line"; done
  if [[ $BENCH_FAILED -ne 0 && $BENCH_STRICT -eq 1 ]]; then exit 1; fi
  exit 0
}

#!/usr/bin/env bash
# shellcheck disable=SC2154  # NAME_PORT / NAME_PID are set by the start_* helpers of common.sh
# waiters: what a waiting call costs, and how fast a flight's waiters are answered.
#
# Part 1, memory (for each herd size in WAITER_SIZES, default "1000 10000"): one herd of N
# callers asks for one cold key at once while the load takes HOLD_MS (3 s):
#   - flightcache-server on flightcache-origin --latency=fixed:3s (one load, N waiters);
#   - the baseline: flightcache-noop-server --hold=3s (bench/noop_server.cc), which holds every
#     Get of a wave for 3 s and then answers them all: the same calls held open on the same gRPC
#     library, with no cache, no flight and no per-call state of its own.
#   Once the server has received all N calls (its Stats.requests), VmRSS and Threads are read
#   from /proc/<pid>/status. RSS per waiter = (VmRSS with N waiting - VmRSS idle) / N, where idle
#   is read after start-up (health SERVING). Target: flightcache's RSS per waiter < the
#   baseline's + 4 KiB. Also reported: threads, the client's p99 minus the hold, and
#   wake-to-last-answer = the last caller's latency minus the first caller's (all N wait for one
#   instant, so this is how long answering them took, as the client saw it).
# Part 2, fan-out (1,000 callers x FANOUT_WAVES waves, 20 by default, the herd.sh shape; ROUNDS
# rounds, 10 by default (single rounds scatter by tens of percent here), each verdict on the
# median round):
#   - warm: every wave's key is already cached (the waves' keys were loaded by the cold run
#     below, same --herd-nonce), so each wave is pure fan-out, no load; against the no-op
#     server (answers every Get at once) in the same run. Target: warm p99 <= 1.05 x no-op p99.
#   - cold: fresh keys, origin FANOUT_ORIGIN_MS (50 ms). Target: cold p99 <= warm p99 + 50 ms +
#     5 ms.
# Heap profile (WAITERS_HEAP_PROFILE=1; needs Debian's google-perftools, a manual measurement
# only, not in scripts/install-deps.sh): part 1 only, each server under tcmalloc's heap profiler,
# its heap dumped (SIGUSR2) idle and with every caller waiting; bench/heap_breakdown.py prints the
# difference per waiting call, by what holds it (gRPC's call arena, our reactor, ...). RSS
# figures in this mode are tcmalloc's, not glibc's.
# Usage: bench/e2e/waiters.sh [--strict] [--keep] [BUILD_DIR]
#   (WAITER_SIZES="1000" for a quicker run; WAITERS_HEAP_PROFILE=1 for the heap breakdown;
#   WAITERS_SERVER=<path> to measure another flightcache-server binary.)
source "$(dirname "$0")/common.sh"
bench_init waiters 600 "$@"
# WAITERS_SERVER=<binary>: measure that flightcache-server instead of BUILD_DIR's (an older build,
# for a before/after comparison in one sitting).
SERVER_BIN="${WAITERS_SERVER:-$SERVER_BIN}"
require_bins "$SERVER_BIN" "$LOADGEN_BIN" "$CLI_BIN" "$ORIGIN_BIN" "$NOOP_BIN"

WAITER_SIZES="${WAITER_SIZES:-1000 10000}"
HOLD_MS=3000
FANOUT_SIZE=1000
FANOUT_WAVES="${FANOUT_WAVES:-20}"
FANOUT_ORIGIN_MS=50
ROUNDS="${ROUNDS:-10}"

HEAP_PROFILE="${WAITERS_HEAP_PROFILE:-0}"

threads_of() { awk '/^Threads:/ {print $2}' "/proc/$1/status"; }

if [[ $HEAP_PROFILE == 1 ]]; then
  tcmalloc="$(find /usr/lib /usr/lib64 -name libtcmalloc.so.4 2>/dev/null | head -n 1)"
  if [[ -z "$tcmalloc" ]] || ! command -v google-pprof >/dev/null; then
    bench_die "WAITERS_HEAP_PROFILE=1 needs libtcmalloc.so.4 and google-pprof (apt-get install google-perftools)"
  fi
  # profiled BIN: a wrapper that execs BIN under the heap profiler (same pid, so the dumps are
  # $WORK/heap.<pid>.<n>.heap), dumping on SIGUSR2 only.
  profiled() {
    local wrapper
    wrapper="$WORK/profiled-$(basename "$1")"
    printf '#!/bin/sh\nexec env LD_PRELOAD=%s HEAPPROFILE=%s/heap.$$ HEAPPROFILESIGNAL=12 %s %s "%s" "$@"\n' \
      "$tcmalloc" "$WORK" HEAP_PROFILE_ALLOCATION_INTERVAL=1099511627776 \
      HEAP_PROFILE_INUSE_INTERVAL=1099511627776 "$1" >"$wrapper"
    chmod +x "$wrapper"
    echo "$wrapper"
  }
  PROFILED_SERVER_BIN="$SERVER_BIN" PROFILED_NOOP_BIN="$NOOP_BIN"
  SERVER_BIN="$(profiled "$SERVER_BIN")"
  NOOP_BIN="$(profiled "$NOOP_BIN")"
fi

# heap_dump PID: with WAITERS_HEAP_PROFILE=1, makes PID dump its heap and waits for the file.
heap_dump() {
  [[ $HEAP_PROFILE == 1 ]] || return 0
  local before i
  before=$(find "$WORK" -name "heap.$1.*.heap" | wc -l)
  kill -USR2 "$1"
  for ((i = 0; i < 100; i++)); do
    (($(find "$WORK" -name "heap.$1.*.heap" | wc -l) > before)) && sleep 0.2 && return 0
    sleep 0.05
  done
  bench_die "pid $1 wrote no heap profile within 5 s"
}

# heap_breakdown NAME PID N BIN: bytes per waiting call, from PID's first two dumps.
heap_breakdown() {
  [[ $HEAP_PROFILE == 1 ]] || return 0
  google-pprof --text --stacks --inuse_space --base="$WORK/heap.$2.0001.heap" "$4" \
    "$WORK/heap.$2.0002.heap" 2>/dev/null |
    python3 "$BENCH_REPO_ROOT/bench/heap_breakdown.py" "$3" >"$WORK/$1.breakdown.md"
}

# hold_wave NAME PORT PID N: one herd of N on a cold key, held HOLD_MS by the server; writes
# $WORK/NAME.json (the loadgen's report) and $WORK/NAME.mem (idle and waiting RSS, threads).
hold_wave() {
  local name="$1" port="$2" pid="$3" n="$4"
  sleep 0.5
  local rss_idle threads_idle before
  rss_idle=$(rss_kb "$pid")
  threads_idle=$(threads_of "$pid")
  heap_dump "$pid"
  stats_json "$port" "$WORK/$name.stats0.json"
  before=$(json "$WORK/$name.stats0.json" 'd["requests"]')
  bounded 120 "$LOADGEN_BIN" --target="127.0.0.1:$port" --scenario=herd --herd-size="$n" \
    --waves=1 --deadline=60s --progress=off --json="$WORK/$name.json" >"$WORK/$name.txt" &
  local loadgen=$! received=0 i
  # Every call must be waiting before RSS is read: poll the server's request count (bounded by
  # the hold itself: a call that arrives after it is no waiter).
  for ((i = 0; i < HOLD_MS / 50; i++)); do
    stats_json "$port" "$WORK/$name.stats.json"
    received=$(json "$WORK/$name.stats.json" "d['requests'] - $before")
    ((received >= n)) && break
    sleep 0.05
  done
  local rss_waiting threads_waiting
  rss_waiting=$(rss_kb "$pid")
  threads_waiting=$(threads_of "$pid")
  heap_dump "$pid"
  wait "$loadgen" || bench_die "$name: the loadgen failed (see $WORK/$name.txt)"
  echo "$rss_idle $rss_waiting $threads_idle $threads_waiting $received" >"$WORK/$name.mem"
  bench_log "$name: $received/$n waiting; VmRSS ${rss_idle} -> ${rss_waiting} KiB; threads" \
    "${threads_idle} -> ${threads_waiting}"
}

# report_hold NAME N LABEL: prints one line and sets per_waiter_NAME (bytes).
report_hold() {
  local name="$1" n="$2" label="$3"
  local rss_idle rss_waiting threads_idle threads_waiting received
  read -r rss_idle rss_waiting threads_idle threads_waiting received <"$WORK/$name.mem"
  local per ok p99 spread
  per=$(calc "($rss_waiting - $rss_idle) * 1024.0 / $n")
  ok=$(json "$WORK/$name.json" 'd["status_codes"].get("OK", 0)')
  p99=$(json "$WORK/$name.json" "d['latency_ms']['p99'] - $HOLD_MS")
  spread=$(json "$WORK/$name.json" 'd["latency_ms"]["max"] - d["latency_ms"]["min"]')
  printf -v "per_waiter_$name" '%s' "$per"
  printf -v "spread_$name" '%s' "$spread"
  echo "  $label: ${received}/${n} waiting, OK ${ok}/${n}; VmRSS ${rss_idle} -> ${rss_waiting} KiB" \
    "= $(calc "$per / 1024.0") KiB per waiter; threads ${threads_idle} -> ${threads_waiting};" \
    "p99 - hold ${p99} ms; wake-to-last-answer ${spread} ms"
}

# ---- part 1: memory -----------------------------------------------------------------------
for n in $WAITER_SIZES; do
  start_noop_server "hold$n" --value-bytes=100 --hold="${HOLD_MS}ms"
  port_var="hold${n}_PORT" pid_var="hold${n}_PID"
  hold_wave "hold$n" "${!port_var}" "${!pid_var}" "$n"
  stop_pid "${!pid_var}"
  heap_breakdown "hold$n" "${!pid_var}" "$n" "${PROFILED_NOOP_BIN:-}"

  start_origin "origin$n" --latency=fixed:${HOLD_MS}ms --value-bytes=100
  origin_port_var="origin${n}_PORT" origin_pid_var="origin${n}_PID"
  start_server "fc$n" --origin="grpc://127.0.0.1:${!origin_port_var}" --load-timeout=30s
  port_var="fc${n}_PORT" pid_var="fc${n}_PID"
  hold_wave "fc$n" "${!port_var}" "${!pid_var}" "$n"
  stop_pid "${!pid_var}"
  heap_breakdown "fc$n" "${!pid_var}" "$n" "${PROFILED_SERVER_BIN:-}"
  stop_pid "${!origin_pid_var}"
done

if [[ $HEAP_PROFILE == 1 ]]; then
  echo
  for n in $WAITER_SIZES; do
    report_hold "hold$n" "$n" "no-op --hold, $n callers (tcmalloc)     "
    report_hold "fc$n" "$n" "flightcache-server, $n callers (tcmalloc)"
    for name in "hold$n" "fc$n"; do
      echo
      echo "heap in use per waiting call, $name ($n waiting minus idle):"
      cat "$WORK/$name.breakdown.md"
    done
  done
  bench_finish
fi

# ---- part 2: fan-out ----------------------------------------------------------------------
# Both servers stay up and the herds alternate (per round: cold, then warm and no-op, in turns
# first), so that the machine's load moves both sides of each ratio alike and neither side always
# runs straight after the cold herd's burst; the verdicts take the median round.
# cpu_ticks PID: the CPU time PID has used (user + system), in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# herd NAME PORT PID [LOADGEN FLAGS...]: FANOUT_SIZE x FANOUT_WAVES into $WORK/NAME.json, and the
# server's CPU time for them (ms) into $WORK/NAME.cpu.
herd() {
  local name="$1" port="$2" pid="$3"
  shift 3
  bench_log "$name: $FANOUT_SIZE callers x $FANOUT_WAVES waves"
  local before
  before=$(cpu_ticks "$pid")
  bounded 240 "$LOADGEN_BIN" --target="127.0.0.1:$port" --scenario=herd \
    --herd-size="$FANOUT_SIZE" --waves="$FANOUT_WAVES" --deadline=10s --progress=off \
    --json="$WORK/$name.json" "$@" >"$WORK/$name.txt"
  calc "($(cpu_ticks "$pid") - $before) * 1000.0 / $(getconf CLK_TCK)" >"$WORK/$name.cpu"
}
start_noop_server noop --value-bytes=100
start_origin fanout_origin --latency=fixed:${FANOUT_ORIGIN_MS}ms --value-bytes=100
start_server fanout --origin="grpc://127.0.0.1:$fanout_origin_PORT" --load-timeout=10s --ttl=1h
for ((r = 1; r <= ROUNDS; r++)); do
  nonce="waiters-$$-$r-$(date +%s)"
  herd "cold.$r" "$fanout_PORT" "$fanout_PID" --herd-nonce="$nonce"
  if ((r % 2 == 1)); then
    herd "warm.$r" "$fanout_PORT" "$fanout_PID" --herd-nonce="$nonce"  # the keys the cold run just loaded
    herd "noop.$r" "$noop_PORT" "$noop_PID"
  else
    herd "noop.$r" "$noop_PORT" "$noop_PID"
    herd "warm.$r" "$fanout_PORT" "$fanout_PID" --herd-nonce="$nonce"
  fi
done
stop_pid "$fanout_PID"
stop_pid "$fanout_origin_PID"
stop_pid "$noop_PID"

p99s() { list_over_rounds "$1" 'd["latency_ms"]["p99"]'; }
median() { calc "sorted([$(IFS=,; echo "$*")])[$# // 2]"; }
all_ok() { # all_ok NAME: every call of every round OK (and, for warm, a hit)
  local expr='d["status_codes"].get("OK", 0)'
  [[ "$1" == warm ]] && expr='min(d["status_codes"].get("OK", 0), d["sources"].get("HIT", 0))'
  calc "min([$(list_over_rounds "$1" "$expr" | tr ' ' ',')]) == $((FANOUT_SIZE * FANOUT_WAVES))"
}
warm_ratios=() cold_excess=()
for ((r = 1; r <= ROUNDS; r++)); do
  noop_r=$(json "$WORK/noop.$r.json" 'd["latency_ms"]["p99"]')
  warm_r=$(json "$WORK/warm.$r.json" 'd["latency_ms"]["p99"]')
  cold_r=$(json "$WORK/cold.$r.json" 'd["latency_ms"]["p99"]')
  warm_ratios+=("$(calc "$warm_r / $noop_r")")
  cold_excess+=("$(calc "$cold_r - $warm_r - $FANOUT_ORIGIN_MS")")
done
warm_ratio=$(median "${warm_ratios[@]}")
cold_over=$(median "${cold_excess[@]}")
# Server CPU per call over every round: steadier than a p99 on a shared machine, and what the warm
# herd's target is about (the hit path costing no more than the no-op server's answer).
cpu_per_call() { # cpu_per_call NAME: microseconds of server CPU per call, all rounds together
  local total=0 r
  for ((r = 1; r <= ROUNDS; r++)); do total=$(calc "$total + $(cat "$WORK/$1.$r.cpu")"); done
  calc "$total * 1000.0 / ($FANOUT_SIZE * $FANOUT_WAVES * $ROUNDS)"
}
warm_cpu=$(cpu_per_call warm) noop_cpu=$(cpu_per_call noop)

echo
echo "waiters: memory, one cold key held ${HOLD_MS} ms (VmRSS idle -> with every caller waiting)"
for n in $WAITER_SIZES; do
  report_hold "hold$n" "$n" "no-op --hold, $n callers     "
  report_hold "fc$n" "$n" "flightcache-server, $n callers"
done
echo "waiters: fan-out, $FANOUT_SIZE callers x $FANOUT_WAVES waves, $ROUNDS rounds (p99 per round, ms)"
echo "  no-op server (answers at once): $(p99s noop)"
echo "  warm key (cached, pure fan-out): $(p99s warm); / no-op: ${warm_ratios[*]}"
echo "  cold key (origin ${FANOUT_ORIGIN_MS} ms): $(p99s cold); - warm - origin: ${cold_excess[*]}"
echo "  server CPU per call: warm ${warm_cpu} us, no-op ${noop_cpu} us, cold $(cpu_per_call cold) us"
echo "  every call OK: cold $(all_ok cold), warm (and a hit) $(all_ok warm), no-op $(all_ok noop)"

for n in $WAITER_SIZES; do
  hold_var="per_waiter_hold$n" fc_var="per_waiter_fc$n"
  above=$(calc "(${!fc_var} - ${!hold_var}) / 1024.0")
  result "RSS per waiter, $n" "$(calc "${!fc_var} / 1024.0") KiB (hold baseline $(calc "${!hold_var} / 1024.0") KiB)" \
    "< baseline + 4 KiB" "$(verdict "$above < 4")"
  hold_var="spread_hold$n" fc_var="spread_fc$n"
  result "wake-to-last-answer, $n" "${!fc_var} ms (hold baseline ${!hold_var} ms)" "(figure)" INFO
done
result "warm herd p99 / no-op p99" "$warm_ratio (median of $ROUNDS rounds)" "<= 1.05" \
  "$(verdict "$warm_ratio <= 1.05 and $(all_ok warm)")"
result "warm / no-op server CPU per call" "$(calc "$warm_cpu / $noop_cpu") ($warm_cpu / $noop_cpu us)" \
  "(figure)" INFO
result "cold p99 - warm p99 - origin" "$cold_over ms (median of $ROUNDS rounds)" "<= 5 ms" \
  "$(verdict "$cold_over <= 5 and $(all_ok cold)")"
bench_finish

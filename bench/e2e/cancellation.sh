#!/usr/bin/env bash
# shellcheck disable=SC2154  # NAME_PORT / NAME_PID are set by the start_* helpers of common.sh
# cancellation: refcounted cancellation, timed. flightcache-bench-cancel (bench/cancel_latency.cc)
# plays the origin (its fetches never answer; it records when gRPC tells it a fetch was
# cancelled) and the client: 1,000 Gets of distinct cold keys with a 100 ms deadline, so each
# load's only waiter times out and flightcache-server (--abandoned-loads=cancel, the default)
# must cancel the origin call. 200 loads of the same kind go first, unmeasured (warm-up: threads,
# connections and allocator of every process in their steady state). Runs, each against a fresh
# server:
#   paced  one Get every 2 ms (1,000 over 2 s): the latency of the cancellation path itself;
#   burst  all 1,000 Gets sent at once, so 1,000 deadlines fall within a few ms of each other;
# with the probe's origin and client in two processes (as in production, where the origin is
# elsewhere). The control runs paced_direct / burst_direct repeat them with no flightcache-server
# in between (the client calls the origin itself): what gRPC alone costs to deliver the same
# cancellations on this machine. CASES="name:spread:mode ..." picks other runs (mode one: the
# probe's origin and client in one process).
#   - cancel latency = (origin saw CANCELLED) - (the waiter's deadline): target p99 < 5 ms;
#   - flights left afterwards: Stats.loads_inflight (and loads_queued): target 0;
#   - the server's timer thread (every caller deadline is a timer on it): /metrics is scraped
#     after each run into $WORK/NAME.metrics and the tails of flightcache_timer_lateness_seconds
#     and flightcache_timer_callback_seconds are printed, to set beside the cancel latency.
#     TIMER_SAMPLE_MS=25 also scrapes every 25 ms during the run and lines the slow
#     cancellations up with the late timers in time (bench/e2e/timer_windows.py).
# SERVER_FLAGS="--cancelled-fetch-grace=0 ..." adds flags to flightcache-server.
# The server runs with --max-concurrent-loads=5000 so that every load reaches the origin
# (a load still queued for a permit is dropped from the queue instead, which the origin never
# sees) and --load-timeout=60s so that only the waiters' deadlines can end a load.
# Usage: bench/e2e/cancellation.sh [--strict] [--keep] [BUILD_DIR]
source "$(dirname "$0")/common.sh"
bench_init cancellation 240 "$@"
require_bins "$SERVER_BIN" "$CLI_BIN" "$CANCEL_BIN"

LOADS="${LOADS:-1000}"
DEADLINE="${DEADLINE:-100ms}"

# timer_tails PORT FILE: scrape the server's /metrics into FILE; print how many timers ran late
# (and how many callbacks ran long) by more than each threshold.
timer_tails() {
  bounded 15 python3 - "$1" "$2" <<'PY'
import re, sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=10).read().decode()
open(sys.argv[2], "w").write(text)
for metric, what in (("flightcache_timer_lateness_seconds", "late"),
                     ("flightcache_timer_callback_seconds", "callback")):
    buckets = {float(le): float(v) for le, v in
               re.findall(metric + r'_bucket\{le="([^"+]+)"\} (\S+)', text)}
    total = float(re.search(metric + r"_count (\S+)", text).group(1))
    tails = " ".join(f">{t * 1000:g}ms={total - buckets[t]:.0f}"
                     for t in (0.001, 0.005, 0.01, 0.02, 0.05) if t in buckets)
    print(f"server timers {what}: n={total:.0f} {tails}")
PY
}

run_case() { # NAME SPREAD MODE(one|two|direct)
  local name="$1" spread="$2" mode="$3"
  local origin_port target_port="" server_pid="" metrics_port="" extra=()
  origin_port="$(free_port)"
  if [[ "$mode" == direct ]]; then
    extra=(--direct)
  else
    # The server connects to the origin lazily; the probe checks the path before measuring.
    metrics_port="$(free_port)"
    local server_flags=()
    read -r -a server_flags <<<"${SERVER_FLAGS:-}"
    start_server "${name}_server" --origin="grpc://127.0.0.1:$origin_port" \
      --metrics-listen="127.0.0.1:$metrics_port" --max-concurrent-loads=5000 \
      --max-queued-loads=10000 --load-timeout=60s "${server_flags[@]}"
    local spv="${name}_server_PORT" sidv="${name}_server_PID"
    target_port="${!spv}"
    server_pid="${!sidv}"
  fi
  local common=(--target="127.0.0.1:${target_port:-1}" --origin-listen="127.0.0.1:$origin_port"
    --loads="$LOADS" --deadline="$DEADLINE" --spread="$spread" --key-prefix="cancel-$name-"
    "${extra[@]}")
  bench_log "$name: $LOADS loads, deadline $DEADLINE, spread $spread, mode $mode"
  if [[ "$mode" == one ]]; then
    bounded 90 "$CANCEL_BIN" "${common[@]}" --role=both --json="$WORK/$name.json" |
      tee "$WORK/$name.txt"
  else
    "$CANCEL_BIN" "${common[@]}" --role=origin --records="$WORK/$name.records" \
      2>"$WORK/$name.origin.log" &
    local origin_pid=$! sampler_pid=""
    BENCH_PIDS+=("$origin_pid")
    if [[ -n "${TIMER_SAMPLE_MS:-}" && -n "$metrics_port" ]]; then
      python3 "$BENCH_REPO_ROOT/bench/e2e/timer_windows.py" sample "$metrics_port" \
        "$WORK/$name.timer_samples" "$TIMER_SAMPLE_MS" &
      sampler_pid=$!
      BENCH_PIDS+=("$sampler_pid")
    fi
    bounded 90 "$CANCEL_BIN" "${common[@]}" --role=client --calls="$WORK/$name.calls" --wait=3s
    [[ -z "$sampler_pid" ]] || stop_pid "$sampler_pid"
    stop_pid "$origin_pid"
    bounded 30 "$CANCEL_BIN" "${common[@]}" --role=report --records="$WORK/$name.records" \
      --calls="$WORK/$name.calls" --json="$WORK/$name.json" | tee "$WORK/$name.txt"
  fi
  # Diagnostics only: a failed scrape or comparison is reported, not fatal.
  if [[ -n "$metrics_port" ]]; then
    timer_tails "$metrics_port" "$WORK/$name.metrics" | tee -a "$WORK/$name.txt" ||
      bench_log "$name: could not read the timer metrics"
  fi
  if [[ -n "${TIMER_SAMPLE_MS:-}" && -n "$metrics_port" && "$mode" != one ]]; then
    bounded 30 python3 "$BENCH_REPO_ROOT/bench/e2e/timer_windows.py" compare "$WORK" "$name" |
      tee -a "$WORK/$name.txt" || bench_log "$name: could not compare timers with cancellations"
  fi
  [[ -z "$server_pid" ]] || stop_pid "$server_pid"
}

# MODES: two = probe origin and client in separate processes (the measured figure);
# direct = the same probe with no flightcache-server in between (gRPC's own cost: the control);
# one = origin and client in one process (set CASES to use it).
if [[ -n "${CASES:-}" ]]; then
  read -r -a CASE_LIST <<<"$CASES"
else
  CASE_LIST=(paced:2s:two burst:0s:two paced_direct:2s:direct burst_direct:0s:direct)
fi
NAMES=()
for c in "${CASE_LIST[@]}"; do
  IFS=: read -r name spread mode <<<"$c"
  run_case "$name" "$spread" "$mode"
  NAMES+=("$name")
done

echo
echo "cancellation: $LOADS abandoned loads, waiter deadline $DEADLINE"
for name in "${NAMES[@]}"; do
  f="$WORK/$name.json"
  echo "  $name: cancelled=$(json "$f" 'd["cancelled"]')/$(json "$f" 'd["loads"]')" \
    "never_fetched=$(json "$f" 'd["never_fetched"]') not_cancelled=$(json "$f" 'd["not_cancelled"]')" \
    "p50=$(json "$f" 'd["cancel_latency"]["p50_ms"]') ms p99=$(json "$f" 'd["cancel_latency"]["p99_ms"]') ms" \
    "max=$(json "$f" 'd["cancel_latency"]["max_ms"]') ms;" \
    "client DEADLINE_EXCEEDED=$(json "$f" 'd["deadline_exceeded"]') (answer - deadline p99" \
    "$(json "$f" 'd["client_lateness"]["p99_ms"]') ms); loads_inflight=$(json "$f" 'd["loads_inflight"]')" \
    "loads_queued=$(json "$f" 'd["loads_queued"]') (first reading $(json "$f" 'd["loads_inflight_first"]'))"
done

for name in "${NAMES[@]}"; do
  f="$WORK/$name.json"
  p99=$(json "$f" 'd["cancel_latency"]["p99_ms"]')
  all=$(json "$f" 'd["cancelled"] == d["loads"]')
  if [[ "$(json "$f" 'd["direct"]')" == True ]]; then
    result "$name: cancel latency p99" "${p99} ms ($(json "$f" 'd["cancelled"]')/$LOADS seen)" "(gRPC alone: control)" INFO
    continue
  fi
  result "$name: cancel latency p99" "${p99} ms ($(json "$f" 'd["cancelled"]')/$LOADS seen)" "< 5 ms, all seen" \
    "$(verdict "$all and $p99 < 5")"
  result "$name: flights left" "inflight $(json "$f" 'd["loads_inflight"]'), queued $(json "$f" 'd["loads_queued"]')" \
    "0" "$(verdict "$(json "$f" 'd["stats_ok"] and d["loads_inflight"] == 0 and d["loads_queued"] == 0')")"
done
bench_finish

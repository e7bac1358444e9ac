#!/usr/bin/env bash
# shellcheck disable=SC2154  # NAME_PORT / NAME_PID are set by the start_* helpers of common.sh
# adaptive: --max-concurrent-loads=adaptive against the overload benchmark's origin, which answers
# in 20 ms while at most 8 fetches are in flight and slows down past that (--overload-threshold=8
# --overload-slope=SLOPE, default 4: a backend that thrashes, 400 fetches/s at 8 in flight, 300/s
# at 9, ~110/s at 64). Open-loop load of cold keys (Poisson arrivals, every call one load,
# deadline 1 s) at each of RATES/s (default 350 and 500: below and above the origin's best
# throughput) for DURATION_S seconds each
# against fixed limits (FIXED, default 4 8 16 64), "unlimited" (--max-concurrent-loads=1000000)
# and adaptive (default range 4-256: it is never told 8). Every case has a fresh origin and
# server. Reported per case: goodput (calls answered OK per second), p50/p99, the origin's peak
# concurrency, and for adaptive the limit it settled on (the flightcache_load_concurrency_limit
# gauge, read every second over the second half of the run: its range and median).
# Target: adaptive goodput >= 90% of the best fixed limit's, at each rate.
# LIFO_AFTER=D runs every case with --load-queue-lifo-after=D (adaptive LIFO under a backlog);
# unset, the load queue is FIFO.
# Usage: [RATES="350 500"] [LIFO_AFTER=100ms] bench/e2e/adaptive.sh [--strict] [--keep] [BUILD_DIR]
source "$(dirname "$0")/common.sh"
bench_init adaptive 540 "$@"
require_bins "$SERVER_BIN" "$LOADGEN_BIN" "$CLI_BIN" "$ORIGIN_BIN"

read -r -a RATES <<<"${RATES:-350 500}"
SLOPE="${SLOPE:-4}"
DURATION_S="${DURATION_S:-20}"
read -r -a FIXED <<<"${FIXED:-4 8 16 64}"
QUEUE_FLAGS=()
QUEUE="FIFO queue"
if [[ -n "${LIFO_AFTER:-}" ]]; then
  QUEUE_FLAGS=(--load-queue-lifo-after="$LIFO_AFTER")
  QUEUE="adaptive LIFO after $LIFO_AFTER"
fi

# limit_gauge PORT: the flightcache_load_concurrency_limit value from /metrics.
limit_gauge() {
  python3 - "$1" <<'PY'
import sys, urllib.request
body = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5).read().decode()
for line in body.splitlines():
    if line.startswith("flightcache_load_concurrency_limit "):
        print(int(float(line.split()[1])))
PY
}

run_case() { # NAME RATE MAX_CONCURRENT_LOADS
  local name="$1" rate="$2" limit="$3"
  start_origin "${name}_origin" --latency=fixed:20ms --overload-threshold=8 \
    --overload-slope="$SLOPE" --value-bytes=100
  local opv="${name}_origin_PORT" oidv="${name}_origin_PID"
  local metrics_port
  metrics_port="$(free_port)"
  start_server "${name}_server" --origin="grpc://127.0.0.1:${!opv}" \
    --max-concurrent-loads="$limit" --max-queued-loads=100000 --load-timeout=5s \
    --metrics-listen="127.0.0.1:$metrics_port" "${QUEUE_FLAGS[@]}"
  local spv="${name}_server_PORT" sidv="${name}_server_PID"
  bench_log "$name: slope $SLOPE, $rate/s for ${DURATION_S}s, --max-concurrent-loads=$limit"
  bounded $((DURATION_S + 60)) "$LOADGEN_BIN" --target="127.0.0.1:${!spv}" --rate="$rate" \
    --arrival=poisson --keys=1000000000000 --distribution=uniform --key-prefix="adp-$name-" \
    --deadline=1s --duration="${DURATION_S}s" --progress=off --json="$WORK/$name.json" \
    >"$WORK/$name.txt" &
  local loadgen=$!
  : >"$WORK/$name.limits"
  sleep $((DURATION_S / 2))
  local i
  for ((i = 0; i < DURATION_S / 2 - 1; i++)); do
    limit_gauge "$metrics_port" >>"$WORK/$name.limits" || true
    sleep 1
  done
  wait "$loadgen" || bench_die "$name: the load generator failed (see $WORK/$name.txt)"
  cat "$WORK/$name.txt"
  stop_pid "${!sidv}"
  stop_pid "${!oidv}"
  origin_final_counters "${name}_origin" >"$WORK/$name.origin.json"
}

# report_rate RATE CASE...: the table for one rate and its results.
report_rate() {
  local rate="$1"
  shift
  echo
  echo "adaptive: origin fixed 20 ms, degrades above 8 in flight (slope $SLOPE); cold keys; Poisson $rate/s; deadline 1 s; ${DURATION_S} s per case; $QUEUE"
  printf '  %-16s %10s %12s %9s %9s %9s %s\n' case goodput/s "OK/calls" p50_ms p99_ms peak_orig "limit (2nd half: min-max, median)"
  local best_fixed=0 best_fixed_name="" adaptive_goodput=0 unlimited_goodput=0 settled="" c
  for c in "$@"; do
    local name limit f calls ok goodput peak shown
    read -r name _ limit <<<"$c"
    f="$WORK/$name.json"
    calls=$(json "$f" 'd["requests"]')
    ok=$(json "$f" 'd["status_codes"].get("OK", 0)')
    goodput=$(calc "round($ok / $(json "$f" 'd["elapsed_s"]'), 1)")
    peak=$(json "$WORK/$name.origin.json" 'd["peak_inflight"]')
    shown="$limit"
    if [[ "$limit" == adaptive ]]; then
      settled=$(python3 -c '
import statistics, sys
v = [int(x) for x in open(sys.argv[1]).read().split()]
print(f"{min(v)}-{max(v)}, {statistics.median(v):g}" if v else "(no samples)")' "$WORK/$name.limits")
      shown="$settled"
      adaptive_goodput="$goodput"
    elif [[ "$limit" == 1000000 ]]; then
      unlimited_goodput="$goodput"
    elif [[ "$(calc "$goodput > $best_fixed")" == True ]]; then
      best_fixed="$goodput"
      best_fixed_name="$limit"
    fi
    printf '  %-16s %10s %12s %9s %9s %9s %s\n' "$name" "$goodput" "$ok/$calls" \
      "$(json "$f" 'd["latency_ms"]["p50"]')" "$(json "$f" 'd["latency_ms"]["p99"]')" "$peak" "$shown"
  done
  local ratio
  ratio=$(calc "round($adaptive_goodput / $best_fixed, 3)")
  result "$rate/s ($QUEUE): adaptive / best fixed ($best_fixed_name) goodput" "$adaptive_goodput / $best_fixed = $ratio" ">= 0.9" "$(verdict "$ratio >= 0.9")"
  result "$rate/s: adaptive limit settled at" "$settled (min-max, median)" "near 8" INFO
  result "$rate/s: unlimited goodput" "$unlimited_goodput/s" "(baseline)" INFO
}

for rate in "${RATES[@]}"; do
  CASES=()
  for k in "${FIXED[@]}"; do CASES+=("r${rate}_fixed$k $rate $k"); done
  CASES+=("r${rate}_unlimited $rate 1000000" "r${rate}_adaptive $rate adaptive")
  for c in "${CASES[@]}"; do
    # shellcheck disable=SC2086
    run_case $c
  done
  report_rate "$rate" "${CASES[@]}"
done
bench_finish

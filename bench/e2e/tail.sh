#!/usr/bin/env bash
# shellcheck disable=SC2154  # NAME_PORT / NAME_PID are set by the start_* helpers of common.sh
# tail: hedging against a bimodal origin. flightcache-origin answers 98% of fetches in 5 ms and
# 2% in 200 ms. An open-loop load (Poisson arrivals, RATE/s) of cold keys (a fresh key per call,
# so every call is one load) runs twice, each time against a fresh origin and server: without
# hedging, then with --hedge-delay=p95 (default --hedge-budget=0.05). Each run has a WARMUP
# phase (fills the adaptive p95 estimate; not measured) and then the measured phase.
#   - p99 of the callers' latency: target < 30 ms with hedging.
#   - extra origin fetches = (origin_fetches - loads_started) / loads_started over the measured
#     phase (server Stats delta): target <= 5% with hedging. The origin's own primary/hedge
#     counters (whole run, warm-up included) are printed beside it.
# The two measured runs are compared (flightcache-loadgen --compare): the ratio table is printed
# and the overlaid page is $WORK/tail.html; with PLOT_DIR=DIR the plots are also written there
# as SVG files (docs/BENCHMARKS.md shows those of PLOT_DIR=docs/plots/tail).
# Usage: [PLOT_DIR=DIR] bench/e2e/tail.sh [--strict] [--keep] [BUILD_DIR]
source "$(dirname "$0")/common.sh"
bench_init tail 300 "$@"
require_bins "$SERVER_BIN" "$LOADGEN_BIN" "$CLI_BIN" "$ORIGIN_BIN"

RATE="${RATE:-250}"
WARMUP="${WARMUP:-5s}"
DURATION="${DURATION:-20s}"
LATENCY="bimodal:5ms,200ms,0.02"

run_mode() { # NAME SERVER_FLAGS...
  local name="$1"
  shift
  start_origin "${name}_origin" --latency="$LATENCY" --value-bytes=100
  local origin_port_var="${name}_origin_PORT" origin_pid_var="${name}_origin_PID"
  start_server "${name}_server" --origin="grpc://127.0.0.1:${!origin_port_var}" "$@"
  local port_var="${name}_server_PORT" pid_var="${name}_server_PID"
  local common=(--target="127.0.0.1:${!port_var}" --rate="$RATE" --arrival=poisson
    --keys=1000000000000 --distribution=uniform --deadline=2s --progress=off)
  bench_log "$name: warm-up $WARMUP at $RATE/s"
  bounded 60 "$LOADGEN_BIN" "${common[@]}" --duration="$WARMUP" --key-prefix="warm-$name-" \
    --json="$WORK/$name.warmup.json" >/dev/null
  bench_log "$name: measuring $DURATION at $RATE/s"
  bounded 120 "$LOADGEN_BIN" "${common[@]}" --duration="$DURATION" --key-prefix="tail-$name-" \
    --json="$WORK/$name.json" | tee "$WORK/$name.txt"
  stop_pid "${!pid_var}"
  stop_pid "${!origin_pid_var}"
  origin_final_counters "${name}_origin" >"$WORK/$name.origin.json"
}

run_mode nohedge
run_mode hedge --hedge-delay=p95

summarize() { # NAME
  local f="$WORK/$1.json" o="$WORK/$1.origin.json"
  local p50 p99 p999 started fetches hedges won extra errors
  p50=$(json "$f" 'd["latency_ms"]["p50"]')
  p99=$(json "$f" 'd["latency_ms"]["p99"]')
  p999=$(json "$f" 'd["latency_ms"]["p99.9"]')
  started=$(json "$f" 'd["server"]["loads_started"]')
  fetches=$(json "$f" 'd["server"]["origin_fetches"]')
  hedges=$(json "$f" 'd["server"]["hedges_sent"]')
  won=$(json "$f" 'd["server"]["hedges_won"]')
  errors=$(json "$f" 'd["errors"]')
  extra=$(calc "100.0 * ($fetches - $started) / $started")
  echo "  $1: calls=$(json "$f" 'd["requests"]') errors=$errors p50=${p50} ms p99=${p99} ms" \
    "p99.9=${p999} ms; loads=$started origin_fetches=$fetches hedges_sent=$hedges" \
    "hedges_won=$won extra_fetches=${extra}%;" \
    "origin (whole run): primary=$(json "$o" 'd["primary_fetches"]')" \
    "hedge=$(json "$o" 'd["hedge_fetches"]') cancelled=$(json "$o" 'd["cancelled"]')"
  printf -v "${1}_P99" '%s' "$p99"
  printf -v "${1}_EXTRA" '%s' "$extra"
}

echo
echo "tail: origin $LATENCY, cold keys, open loop $RATE/s Poisson, warm-up $WARMUP, measured $DURATION"
summarize nohedge
summarize hedge

echo
bounded 30 "$LOADGEN_BIN" --compare "$WORK/nohedge.json" "$WORK/hedge.json" \
  --report="$WORK/tail.html" ${PLOT_DIR:+--plot-dir="$PLOT_DIR"}

result "p99 without hedging" "${nohedge_P99} ms, extra fetches ${nohedge_EXTRA}%" "(baseline)" INFO
result "p99 with hedge p95" "${hedge_P99} ms" "< 30 ms" "$(verdict "$hedge_P99 < 30")"
result "extra fetches, hedge p95" "${hedge_EXTRA}%" "<= 5%" "$(verdict "$hedge_EXTRA <= 5")"
bench_finish

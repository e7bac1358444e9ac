#!/usr/bin/env bash
# shellcheck disable=SC2154  # NAME_PORT / NAME_PID are set by the start_* helpers of common.sh
# replicas: what sending a hedge to another replica buys (docs/PROTOCOL.md, "The origin as a
# fleet of replicas"). Two flightcache-origin replicas behind one sidecar
# (--origin=grpc://FAST,SLOW): FAST answers in 5 ms, SLOW in 5 ms but 200 ms on 10% of its
# fetches (bimodal:5ms,200ms,0.1). Cold keys, open loop RATE/s (Poisson) for DURATION after a
# WARMUP, --hedge-delay=p95 --hedge-budget=0.2 (the budget is not what is measured). p99 with
# hedges sent to the other replica (the default) against hedges sent to the primary's own replica
# (--origin-hedge-other-replica=false), as one address behind a connection balancer would.
# Target: p99 at least 3x lower. Each case starts fresh replicas and a fresh sidecar.
# Usage: bench/e2e/replicas.sh [--strict] [--keep] [BUILD_DIR]
source "$(dirname "$0")/common.sh"
bench_init replicas 300 "$@"
require_bins "$SERVER_BIN" "$LOADGEN_BIN" "$CLI_BIN" "$ORIGIN_BIN"

RATE="${RATE:-250}"
WARMUP="${WARMUP:-5s}"
DURATION="${DURATION:-20s}"

run_case() { # NAME SERVER_FLAGS...
  local name="$1"
  shift
  start_origin "${name}_fast" --latency=fixed:5ms --value-bytes=100
  start_origin "${name}_slow" --latency=bimodal:5ms,200ms,0.1 --value-bytes=100
  local fpv="${name}_fast_PORT" spv="${name}_slow_PORT" fidv="${name}_fast_PID" sidv="${name}_slow_PID"
  start_server "${name}_server" --origin="grpc://127.0.0.1:${!fpv},127.0.0.1:${!spv}" \
    --hedge-delay=p95 --hedge-budget=0.2 "$@"
  local pv="${name}_server_PORT" pidv="${name}_server_PID"
  local common=(--target="127.0.0.1:${!pv}" --rate="$RATE" --arrival=poisson
    --keys=1000000000000 --distribution=uniform --deadline=2s --progress=off)
  bench_log "$name: warm-up $WARMUP at $RATE/s"
  bounded 60 "$LOADGEN_BIN" "${common[@]}" --duration="$WARMUP" --key-prefix="warm-$name-" \
    >/dev/null
  bench_log "$name: measuring $DURATION at $RATE/s"
  bounded 120 "$LOADGEN_BIN" "${common[@]}" --duration="$DURATION" --key-prefix="rep-$name-" \
    --json="$WORK/$name.json" >"$WORK/$name.txt"
  stop_pid "${!pidv}"
  stop_pid "${!fidv}"
  stop_pid "${!sidv}"
  origin_final_counters "${name}_fast" >"$WORK/$name.fast.json"
  origin_final_counters "${name}_slow" >"$WORK/$name.slow.json"
}

run_case other
run_case same --origin-hedge-other-replica=false

echo
echo "replicas: FAST fixed 5 ms + SLOW bimodal 5 ms/200 ms (10%); cold keys, $RATE/s Poisson, $DURATION; --hedge-delay=p95"
printf '  %-6s %8s %8s %9s %9s %10s %10s %12s %12s\n' case calls p50_ms p99_ms p99.9_ms hedges won fast_hedges slow_hedges
for name in other same; do
  f="$WORK/$name.json"
  printf '  %-6s %8s %8s %9s %9s %10s %10s %12s %12s\n' "$name" "$(json "$f" 'd["requests"]')" \
    "$(json "$f" 'd["latency_ms"]["p50"]')" "$(json "$f" 'd["latency_ms"]["p99"]')" \
    "$(json "$f" 'd["latency_ms"]["p99.9"]')" "$(json "$f" 'd["server"]["hedges_sent"]')" \
    "$(json "$f" 'd["server"]["hedges_won"]')" "$(json "$WORK/$name.fast.json" 'd["hedge_fetches"]')" \
    "$(json "$WORK/$name.slow.json" 'd["hedge_fetches"]')"
done
other=$(json "$WORK/other.json" 'd["latency_ms"]["p99"]')
same=$(json "$WORK/same.json" 'd["latency_ms"]["p99"]')
result "p99, hedges to the other replica" "$other ms (same replica allowed: $same ms, $(calc "round($same / $other, 1)")x)" \
  ">= 3x lower" "$(verdict "$same >= 3 * $other")"
# Why p99.9 too: with independent tails a hedge to the slow replica is slow again only 10% of the
# time, so the calls slow twice are about 0.5% of all (half the primaries on SLOW x 10% x 10%):
# below the p99, which the two cases therefore share. The tail hedging removes is past it.
other999=$(json "$WORK/other.json" 'd["latency_ms"]["p99.9"]')
same999=$(json "$WORK/same.json" 'd["latency_ms"]["p99.9"]')
result "p99.9, hedges to the other replica" "$other999 ms (same replica allowed: $same999 ms, $(calc "round($same999 / $other999, 1)")x)" \
  "(see the comment above)" INFO
bench_finish

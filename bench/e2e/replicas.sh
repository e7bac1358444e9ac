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
# The same pair of cases runs twice: with SLOW's tail independent per fetch (bimodal: a hedge back
# to SLOW is slow again only 10% of the time) and with it tied to the keys (keyed:5ms,200ms,0.1:
# the same 10% of keys are slow on every fetch, as with a cold partition or a hot shard, so a
# hedge back to SLOW is always slow too). The issue's "200 ms tail on 10% of fetches" is both.
# Usage: bench/e2e/replicas.sh [--strict] [--keep] [BUILD_DIR]
source "$(dirname "$0")/common.sh"
bench_init replicas 300 "$@"
require_bins "$SERVER_BIN" "$LOADGEN_BIN" "$CLI_BIN" "$ORIGIN_BIN"

RATE="${RATE:-250}"
WARMUP="${WARMUP:-5s}"
DURATION="${DURATION:-20s}"

run_case() { # NAME SLOW_LATENCY SERVER_FLAGS...
  local name="$1" slow_latency="$2"
  shift 2
  start_origin "${name}_fast" --latency=fixed:5ms --value-bytes=100
  start_origin "${name}_slow" --latency="$slow_latency" --value-bytes=100
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

run_case other bimodal:5ms,200ms,0.1
run_case same bimodal:5ms,200ms,0.1 --origin-hedge-other-replica=false
run_case other_keyed keyed:5ms,200ms,0.1
run_case same_keyed keyed:5ms,200ms,0.1 --origin-hedge-other-replica=false

echo
echo "replicas: FAST fixed 5 ms + SLOW 5 ms/200 ms (10%: per fetch, or *_keyed: per key); cold keys, $RATE/s Poisson, $DURATION; --hedge-delay=p95"
printf '  %-12s %8s %8s %9s %9s %10s %10s %12s %12s\n' case calls p50_ms p99_ms p99.9_ms hedges won fast_hedges slow_hedges
for name in other same other_keyed same_keyed; do
  f="$WORK/$name.json"
  printf '  %-12s %8s %8s %9s %9s %10s %10s %12s %12s\n' "$name" "$(json "$f" 'd["requests"]')" \
    "$(json "$f" 'd["latency_ms"]["p50"]')" "$(json "$f" 'd["latency_ms"]["p99"]')" \
    "$(json "$f" 'd["latency_ms"]["p99.9"]')" "$(json "$f" 'd["server"]["hedges_sent"]')" \
    "$(json "$f" 'd["server"]["hedges_won"]')" "$(json "$WORK/$name.fast.json" 'd["hedge_fetches"]')" \
    "$(json "$WORK/$name.slow.json" 'd["hedge_fetches"]')"
done
compare() { # LABEL PERCENTILE OTHER_CASE SAME_CASE TARGET_TEXT VERDICT_OR_EMPTY
  local other same
  other=$(json "$WORK/$3.json" "d[\"latency_ms\"][\"$2\"]")
  same=$(json "$WORK/$4.json" "d[\"latency_ms\"][\"$2\"]")
  result "$1" "$other ms (same replica allowed: $same ms, $(calc "round($same / $other, 1)")x)" \
    "$5" "${6:-$(verdict "$same >= 3 * $other")}"
}
# Independent tails: a hedge to the slow replica is slow again only 10% of the time, so the calls
# slow twice are about 0.5% of all (half the primaries on SLOW x 10% x 10%): below the p99, which
# the two cases therefore share. The tail hedging removes is past it, at p99.9.
compare "p99, per-fetch tail, hedges to the other replica" p99 other same ">= 3x lower"
compare "p99.9, per-fetch tail, hedges to the other replica" p99.9 other same "(see above)" INFO
# Keyed tails: a hedge back to SLOW waits as long as its primary; only another replica helps.
compare "p99, per-key tail, hedges to the other replica" p99 other_keyed same_keyed ">= 3x lower"
bench_finish

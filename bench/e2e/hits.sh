#!/usr/bin/env bash
# shellcheck disable=SC2154  # NAME_PORT / NAME_PID are set by the start_* helpers of common.sh
# hits: the hit path against its ceiling. 10,000 keys are loaded once (flightcache-bench-fill),
# then flightcache-loadgen runs a closed loop of concurrency 64 over them (uniform, 100% hits)
# against flightcache-server, and the same load generator with the same flags against
# flightcache-noop-server (same gRPC library and callback style, answers every Get at once with
# a fixed value of the same size). Both servers run during the whole script and the runs
# alternate A B, B A, A B, ... (ROUNDS pairs, default 4), so that a change in background load
# hits both alike.
#   - throughput and p99 of each; ratio flightcache / no-op throughput: target >= 0.9.
# Usage: bench/e2e/hits.sh [--strict] [--keep] [BUILD_DIR]
source "$(dirname "$0")/common.sh"
bench_init hits 560 "$@"
require_bins "$SERVER_BIN" "$LOADGEN_BIN" "$CLI_BIN" "$NOOP_BIN" "$FILL_BIN"

KEYS="${KEYS:-10000}"
VALUE_BYTES=100
DURATION="${DURATION:-10s}"
ROUNDS="${ROUNDS:-4}"
CONCURRENCY=64

# The origin does not matter for hits: the built-in simulated one avoids a third process.
start_server fc --origin="sim://?latency_ms=1&jitter_ms=0&value_bytes=$VALUE_BYTES" \
  --capacity-bytes=256MiB --ttl=1h
start_noop_server noop --value-bytes=$VALUE_BYTES

bench_log "warming $KEYS keys"
bounded 120 "$FILL_BIN" --target="127.0.0.1:$fc_PORT" --keys="$KEYS" --batch=500 --parallel=4 \
  | tee "$WORK/fill.json"
entries=$(bounded 10 "$CLI_BIN" --target="127.0.0.1:$fc_PORT" --json stats |
  python3 -c 'import json,sys; print(json.load(sys.stdin).get("entries", "?"))' || echo "?")
bench_log "server entries after warm-up: $entries"

run_loadgen() { # NAME PORT ROUND
  bench_log "loadgen against $1 (round $3)"
  bounded 120 "$LOADGEN_BIN" --target="127.0.0.1:$2" --keys="$KEYS" --distribution=uniform \
    --concurrency=$CONCURRENCY --duration="$DURATION" --deadline=1s --progress=off \
    --json="$WORK/$1.$3.json" >"$WORK/$1.$3.txt"
  cat "$WORK/$1.$3.txt"
}

# Warm-up, not counted: a short run against each server first. The first seconds of a server's
# life (threads, allocator, connection) made round 1 consistently the slowest.
WARMUP="${WARMUP:-3s}"
for target in "fc $fc_PORT" "noop $noop_PORT"; do
  read -r name port <<<"$target"
  bench_log "warm-up against $name ($WARMUP, not counted)"
  bounded 60 "$LOADGEN_BIN" --target="127.0.0.1:$port" --keys="$KEYS" --distribution=uniform \
    --concurrency=$CONCURRENCY --duration="$WARMUP" --deadline=1s --progress=off >/dev/null
done

for ((r = 1; r <= ROUNDS; r++)); do
  if ((r % 2 == 1)); then
    run_loadgen fc "$fc_PORT" "$r"
    run_loadgen noop "$noop_PORT" "$r"
  else
    run_loadgen noop "$noop_PORT" "$r"
    run_loadgen fc "$fc_PORT" "$r"
  fi
done

fc_rps=$(mean_over_rounds fc 'd["throughput_rps"]')
noop_rps=$(mean_over_rounds noop 'd["throughput_rps"]')
fc_p99=$(mean_over_rounds fc 'd["latency_ms"]["p99"]')
noop_p99=$(mean_over_rounds noop 'd["latency_ms"]["p99"]')
fc_p50=$(mean_over_rounds fc 'd["latency_ms"]["p50"]')
noop_p50=$(mean_over_rounds noop 'd["latency_ms"]["p50"]')
fc_hit=$(list_over_rounds fc 'd["server"]["hit_ratio"]')
fc_err=$(list_over_rounds fc 'd["errors"]')
noop_err=$(list_over_rounds noop 'd["errors"]')
ratio=$(calc "$fc_rps / $noop_rps")
pair_ratios=()
for ((r = 1; r <= ROUNDS; r++)); do
  pair_ratios+=("$(calc "round($(json "$WORK/fc.$r.json" 'd["throughput_rps"]') / $(json "$WORK/noop.$r.json" 'd["throughput_rps"]'), 3)")")
done

echo
echo "hits: $KEYS warm keys, uniform, closed loop, concurrency $CONCURRENCY, $DURATION x $ROUNDS rounds each (A B, B A, ...)"
echo "  flightcache-server: rps per round [$(list_over_rounds fc 'd["throughput_rps"]')] p99 ms [$(list_over_rounds fc 'd["latency_ms"]["p99"]')] hit_ratio [$fc_hit] errors [$fc_err]"
echo "  noop-server:        rps per round [$(list_over_rounds noop 'd["throughput_rps"]')] p99 ms [$(list_over_rounds noop 'd["latency_ms"]["p99"]')] errors [$noop_err]"
echo "  ratio per round: [${pair_ratios[*]}]"
echo "  mean: flightcache ${fc_rps} rps (p50 ${fc_p50} ms, p99 ${fc_p99} ms); no-op ${noop_rps} rps (p50 ${noop_p50} ms, p99 ${noop_p99} ms)"

result "flightcache throughput" "${fc_rps} rps, p99 ${fc_p99} ms" "(figure)" INFO
result "no-op throughput" "${noop_rps} rps, p99 ${noop_p99} ms" "(baseline)" INFO
result "throughput ratio" "$ratio" ">= 0.9 of no-op" "$(verdict "$ratio >= 0.9")"
bench_finish

#!/usr/bin/env bash
# shellcheck disable=SC2154  # NAME_PORT / NAME_PID are set by the start_* helpers of common.sh
# herd: a thundering herd on cold keys. 1,000 callers ask for one cold key at the same instant,
# 20 times with fresh keys, while the origin (flightcache-origin) takes 50 ms per fetch.
#   - origin fetches per wave: target exactly 1. The origin counts fetches and distinct keys;
#     every wave's key is fresh, so fetches == keys == waves (and every call OK) means exactly
#     one fetch per wave. The server's own origin_fetches delta is printed beside it.
#   - p99 of the callers' latency (from the wave's start) minus the 50 ms origin latency:
#     target < 5 ms. That overhead includes sending 1,000 calls from one client process and
#     answering 1,000 calls at once. To show the floor of that overhead on this machine, the
#     same herd also runs against flightcache-noop-server (bench/noop_server.cc: same gRPC
#     library, answers every Get at once): its p99 is what 1,000 simultaneous calls cost with no
#     cache and no origin at all.
# Usage: bench/e2e/herd.sh [--strict] [--keep] [BUILD_DIR]
source "$(dirname "$0")/common.sh"
bench_init herd 300 "$@"
require_bins "$SERVER_BIN" "$LOADGEN_BIN" "$CLI_BIN" "$ORIGIN_BIN" "$NOOP_BIN"

HERD_SIZE="${HERD_SIZE:-1000}"
WAVES="${WAVES:-20}"
ORIGIN_MS=50

start_origin origin --latency=fixed:${ORIGIN_MS}ms --value-bytes=100
start_server server --origin="grpc://127.0.0.1:$origin_PORT" --load-timeout=10s

bench_log "loadgen: $HERD_SIZE callers x $WAVES waves"
bounded 240 "$LOADGEN_BIN" --target="127.0.0.1:$server_PORT" --scenario=herd \
  --herd-size="$HERD_SIZE" --waves="$WAVES" --deadline=10s --progress=off \
  --json="$WORK/herd.json" | tee "$WORK/herd.txt"

stop_pid "$server_PID"
stop_pid "$origin_PID"
origin_final_counters origin >"$WORK/origin.final.json"

start_noop_server noop --value-bytes=100
bench_log "baseline: the same herd against the no-op server"
bounded 240 "$LOADGEN_BIN" --target="127.0.0.1:$noop_PORT" --scenario=herd \
  --herd-size="$HERD_SIZE" --waves="$WAVES" --deadline=10s --progress=off \
  --json="$WORK/noop.json" >"$WORK/noop.txt"
stop_pid "$noop_PID"
noop_p50=$(json "$WORK/noop.json" 'd["latency_ms"]["p50"]')
noop_p99=$(json "$WORK/noop.json" 'd["latency_ms"]["p99"]')

requests=$(json "$WORK/herd.json" 'd["requests"]')
errors=$(json "$WORK/herd.json" 'd["errors"]')
ok=$(json "$WORK/herd.json" 'd["status_codes"].get("OK", 0)')
p50=$(json "$WORK/herd.json" 'd["latency_ms"]["p50"]')
p99=$(json "$WORK/herd.json" 'd["latency_ms"]["p99"]')
pmax=$(json "$WORK/herd.json" 'd["latency_ms"]["max"]')
server_fetches=$(json "$WORK/herd.json" 'd["server"]["origin_fetches"]')
coalesced=$(json "$WORK/herd.json" 'd["server"]["coalesced"]')
origin_fetches=$(json "$WORK/origin.final.json" 'd["fetches"]')
origin_keys=$(json "$WORK/origin.final.json" 'd["keys"]')
origin_peak=$(json "$WORK/origin.final.json" 'd["peak_inflight"]')
per_wave=$(calc "$origin_fetches / $WAVES")
overhead=$(calc "$p99 - $ORIGIN_MS")

echo
echo "herd: $HERD_SIZE callers x $WAVES waves, origin fixed ${ORIGIN_MS} ms"
echo "  calls=$requests ok=$ok errors=$errors coalesced=$coalesced"
echo "  origin: fetches=$origin_fetches distinct_keys=$origin_keys peak_inflight=$origin_peak;" \
  "server origin_fetches=$server_fetches"
echo "  latency from wave start: p50=${p50} ms p99=${p99} ms max=${pmax} ms"
echo "  baseline, same herd against the no-op server (no origin): p50=${noop_p50} ms p99=${noop_p99} ms"

exactly_one=$(verdict "$origin_fetches == $WAVES and $origin_keys == $WAVES and $server_fetches == $WAVES and $ok == $requests")
result "origin fetches per wave" "$per_wave ($origin_fetches fetches / $WAVES waves)" "exactly 1" "$exactly_one"
result "p99 - origin latency" "${overhead} ms (p99 ${p99} ms)" "< 5 ms" "$(verdict "$overhead < 5")"
result "no-op herd p99 (floor)" "${noop_p99} ms" "(baseline)" INFO
bench_finish

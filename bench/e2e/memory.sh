#!/usr/bin/env bash
# shellcheck disable=SC2154  # NAME_PORT / NAME_PID are set by the start_* helpers of common.sh
# memory: what one cached entry costs. flightcache-server runs on its built-in simulated origin
# (values of exactly 100 bytes, no latency) with room for everything (--capacity-bytes=2GiB, so
# nothing is evicted); flightcache-bench-fill loads key-0 .. key-999999 once each with BatchGet.
#   - RSS per entry = (VmRSS after - VmRSS before the fill) / entries, VmRSS from
#     /proc/<pid>/status, "before" taken once the server is up and has answered one call.
#   - payload per entry = key bytes + value bytes (mean key length of key-0..key-999999 is
#     9.89 bytes, so about 109.9 bytes); target: RSS per entry <= 2 x payload.
#   The RSS growth also holds whatever gRPC and the allocator kept from the fill traffic; the
#   server's own accounting (Stats.bytes / entries) is printed beside it.
# Usage: bench/e2e/memory.sh [--strict] [--keep] [BUILD_DIR]
source "$(dirname "$0")/common.sh"
bench_init memory 300 "$@"
require_bins "$SERVER_BIN" "$CLI_BIN" "$FILL_BIN"

ENTRIES="${ENTRIES:-1000000}"
VALUE_BYTES=100
PREFIX="key-"

start_server server --origin="sim://?latency_ms=0&jitter_ms=0&value_bytes=$VALUE_BYTES" \
  --capacity-bytes=2GiB --ttl=1h --max-concurrent-loads=1024 --max-queued-loads=100000
bounded 10 "$CLI_BIN" --target="127.0.0.1:$server_PORT" get warmup-key >/dev/null 2>&1
value_len=$(bounded 10 "$CLI_BIN" --target="127.0.0.1:$server_PORT" --json get warmup-key |
  python3 -c 'import json,sys; print(len(json.load(sys.stdin)["value"]))')
sleep 1
rss_before=$(rss_kb "$server_PID")
bench_log "RSS before: $rss_before KiB; value length $value_len bytes"

bounded 240 "$FILL_BIN" --target="127.0.0.1:$server_PORT" --keys="$ENTRIES" --key-prefix="$PREFIX" \
  --batch=1000 --parallel=2 --deadline=60s | tee "$WORK/fill.json"
sleep 2
rss_after=$(rss_kb "$server_PID")
stats_json "$server_PORT" "$WORK/stats.json"
entries=$(json "$WORK/stats.json" 'd["entries"]')
bytes=$(json "$WORK/stats.json" 'd["bytes"]')
evictions=$(json "$WORK/stats.json" 'd["evictions"]')
hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$server_PID/status")

key_bytes=$(python3 -c "print(sum(len('$PREFIX' + str(i)) for i in range($ENTRIES)) / $ENTRIES)")
payload=$(calc "$key_bytes + $value_len")
per_entry=$(calc "($rss_after - $rss_before) * 1024.0 / ($entries - 1)")
accounted=$(calc "$bytes / $entries")
ratio=$(calc "$per_entry / $payload")

echo
echo "memory: $ENTRIES keys '$PREFIX<i>' (mean key $key_bytes bytes) x $value_len-byte values"
echo "  entries=$entries evictions=$evictions fill: $(cat "$WORK/fill.json")"
echo "  VmRSS before=${rss_before} KiB after=${rss_after} KiB (VmHWM ${hwm} KiB)"
echo "  RSS per entry = ${per_entry} bytes; payload (key + value) = ${payload} bytes; ratio ${ratio}"
echo "  server accounting: Stats.bytes / entries = ${accounted} bytes"

result "RSS per entry" "${per_entry} B = ${ratio} x payload ${payload} B" "<= 2 x payload" \
  "$(verdict "$ratio <= 2 and $entries - 1 == $ENTRIES")"
bench_finish

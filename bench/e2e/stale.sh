#!/usr/bin/env bash
# shellcheck disable=SC2154  # NAME_PORT / NAME_PID are set by the start_* helpers of common.sh
# stale: what serving stale and refreshing ahead buy when the origin falters (docs/PROTOCOL.md,
# "Serving stale, refreshing ahead"). Each case starts a fresh flightcache-origin (fixed latency)
# and flightcache-server; each figure is set against its baseline in this run.
#   1. outage: KEYS keys, warmed once each (a sequential pass), then read for OUTAGE_RUN
#      (default 30 s) open loop at RATE_OUTAGE/s (zipf:1.1, deadline 1 s) with --ttl=2s, while
#      the origin is stopped from 10 s to 20 s into the run and then started again on its port.
#      Success ratio (OK answers / calls) with --stale-if-error=1m against without. Target: >= 99.9%
#      with it.
#   2. expiry: one hot key with --ttl=1s read at RATE_EXPIRY/s (open loop, EXPIRY_RUN, default
#      20 s), origin 50 ms. Calls that waited for the origin (sources LOADED + COALESCED; the key is
#      loaded before the run) and p99 / max latency, with --refresh-ahead=0.5 and with
#      --stale-while-revalidate=5s against neither. Target: no call waits for the origin.
# Usage: bench/e2e/stale.sh [--strict] [--keep] [BUILD_DIR]
source "$(dirname "$0")/common.sh"
bench_init stale 400 "$@"
require_bins "$SERVER_BIN" "$LOADGEN_BIN" "$CLI_BIN" "$ORIGIN_BIN"

KEYS="${KEYS:-1000}"
RATE_OUTAGE="${RATE_OUTAGE:-1000}"
OUTAGE_RUN="${OUTAGE_RUN:-30}"
RATE_EXPIRY="${RATE_EXPIRY:-2000}"
EXPIRY_RUN="${EXPIRY_RUN:-20s}"

# outage_case NAME [SERVER FLAGS...]
outage_case() {
  local name="$1"
  shift
  start_origin "${name}_origin" --latency=fixed:5ms --value-bytes=100
  local opv="${name}_origin_PORT" oidv="${name}_origin_PID"
  local origin_port="${!opv}"
  start_server "${name}_server" --origin="grpc://127.0.0.1:$origin_port" --ttl=2s \
    --load-timeout=500ms "$@"
  local spv="${name}_server_PORT" sidv="${name}_server_PID"
  local target="127.0.0.1:${!spv}"
  bounded 60 "$LOADGEN_BIN" --target="$target" --keys="$KEYS" --distribution=sequential \
    --requests="$KEYS" --concurrency=16 --progress=off >"$WORK/$name.warm.txt"
  bench_log "$name: $RATE_OUTAGE/s for ${OUTAGE_RUN}s; origin down from 10 s to 20 s; $*"
  bounded $((OUTAGE_RUN + 60)) "$LOADGEN_BIN" --target="$target" --rate="$RATE_OUTAGE" \
    --keys="$KEYS" --distribution=zipf:1.1 --deadline=1s --duration="${OUTAGE_RUN}s" \
    --progress=off --json="$WORK/$name.json" >"$WORK/$name.txt" &
  local loadgen=$!
  sleep 10
  stop_pid "${!oidv}"
  bench_log "$name: origin stopped"
  sleep 10
  start_origin "${name}_origin_back" --latency=fixed:5ms --value-bytes=100 \
    --listen="127.0.0.1:$origin_port"
  bench_log "$name: origin back"
  wait "$loadgen" || true
  cat "$WORK/$name.txt"
  stop_pid "${!sidv}"
}

# expiry_case NAME [SERVER FLAGS...]
expiry_case() {
  local name="$1"
  shift
  start_origin "${name}_origin" --latency=fixed:50ms --value-bytes=100
  local opv="${name}_origin_PORT" oidv="${name}_origin_PID"
  start_server "${name}_server" --origin="grpc://127.0.0.1:${!opv}" --ttl=1s "$@"
  local spv="${name}_server_PORT" sidv="${name}_server_PID"
  local target="127.0.0.1:${!spv}"
  bounded 10 "$CLI_BIN" --target="$target" get hot-0 >/dev/null 2>&1
  bench_log "$name: one hot key at $RATE_EXPIRY/s for $EXPIRY_RUN; $*"
  bounded 120 "$LOADGEN_BIN" --target="$target" --rate="$RATE_EXPIRY" --keys=1 \
    --key-prefix=hot- --deadline=1s --duration="$EXPIRY_RUN" --progress=off \
    --json="$WORK/$name.json" >"$WORK/$name.txt"
  cat "$WORK/$name.txt"
  stop_pid "${!sidv}"
  stop_pid "${!oidv}"
}

outage_case outage_without
outage_case outage_stale --stale-if-error=1m
expiry_case expiry_without
expiry_case expiry_refresh --refresh-ahead=0.5
expiry_case expiry_swr --stale-while-revalidate=5s

ok_ratio() { json "$1" 'd["status_codes"].get("OK", 0) / d["requests"]'; }
waited() { json "$1" 'd["sources"].get("LOADED", 0) + d["sources"].get("COALESCED", 0)'; }

echo
echo "outage: $KEYS keys, zipf:1.1, $RATE_OUTAGE/s for ${OUTAGE_RUN}s, --ttl=2s, origin down 10-20 s"
printf '  %-16s %10s %12s %12s %9s %9s\n' case calls OK_ratio stale_served p99_ms max_ms
for name in outage_without outage_stale; do
  f="$WORK/$name.json"
  printf '  %-16s %10s %12.5f %12s %9s %9s\n' "$name" "$(json "$f" 'd["requests"]')" \
    "$(ok_ratio "$f")" "$(json "$f" 'd["server"]["stale_served"]')" \
    "$(json "$f" 'd["latency_ms"]["p99"]')" "$(json "$f" 'd["latency_ms"]["max"]')"
done
with=$(ok_ratio "$WORK/outage_stale.json")
without=$(ok_ratio "$WORK/outage_without.json")
result "outage success ratio, --stale-if-error=1m" "$(calc "round($with, 5)") (without: $(calc "round($without, 5)"))" \
  ">= 0.999" "$(verdict "$with >= 0.999")"

echo
echo "expiry: one key, --ttl=1s, $RATE_EXPIRY/s for $EXPIRY_RUN, origin 50 ms"
printf '  %-16s %10s %14s %9s %9s %12s\n' case calls waited_origin p99_ms max_ms refreshes
for name in expiry_without expiry_refresh expiry_swr; do
  f="$WORK/$name.json"
  printf '  %-16s %10s %14s %9s %9s %12s\n' "$name" "$(json "$f" 'd["requests"]')" \
    "$(waited "$f")" "$(json "$f" 'd["latency_ms"]["p99"]')" "$(json "$f" 'd["latency_ms"]["max"]')" \
    "$(json "$f" 'd["server"]["refreshes_started"]')"
done
for name in expiry_refresh expiry_swr; do
  w=$(waited "$WORK/$name.json")
  result "calls that waited for the origin, $name" "$w (without: $(waited "$WORK/expiry_without.json"))" \
    "0" "$(verdict "$w == 0")"
done
bench_finish

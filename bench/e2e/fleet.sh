#!/usr/bin/env bash
# shellcheck disable=SC2154  # NAME_PORT / NAME_PID are set by the start_* helpers of common.sh
# fleet: the fleet tier (--fleet=redis://..., docs/PROTOCOL.md "Beyond one pod") end to end: several
# flightcache-server sidecars share one redis-server, started here with no persistence.
#   1. A herd spread over the fleet: 4 sidecars, 1,000 callers (4 flightcache-loadgen processes
#      of 250, started together, given one --herd-nonce so that each wave asks every sidecar for
#      the same fresh key), 20 waves, origin fixed 50 ms. Origin fetches per wave, counted by
#      flightcache-origin as herd.sh does: with the tier (target exactly 1) and with the same 4
#      sidecars without --fleet (each sidecar fetches alone: 4).
#   2. The herd's p99 with the tier against the same 1,000-caller herd on one sidecar (one
#      loadgen process), in this run, as a ratio. The spread herd's p99 is the largest of the 4
#      loadgens' p99s: an upper bound of the p99 of all 1,000 callers.
#   3. What a fleet hit costs: N keys loaded through sidecar A (origin fetches: an origin at 0 ms,
#      so only the mechanics count), then asked once each of sidecar B (SOURCE_FLEET: one Redis
#      read), then again (local HIT). One Get at a time (--concurrency=1, --distribution=sequential
#      visits each key exactly once). Beside them, origin fetches through a sidecar without the
#      tier: what the tier adds to a miss.
#   4. Invalidation delay between two sidecars: Invalidate on A, then B polled until it serves a
#      new value (flightcache-bench-invalidation: one process with a channel to each; a
#      flightcache-cli poll costs ~25 ms per call, too coarse for the 5 ms target). Target p99
#      < 5 ms. It includes B's reload of the key (an origin fetch at 0 ms) and one poll round trip.
#   5. Redis calls per cold key (INFO commandstats deltas): loaded alone (the 3 of step 3: Read,
#      TakeLease, Publish) and then found by another sidecar (1 Read); COLD_KEYS cold keys asked
#      of 2 sidecars at once (origin 50 ms, so one waits for the other's fetch: Read, TakeLease
#      refused, Read once registered for the announcement, Read after it: 4); and the 4-sidecar
#      herd of step 1. Every fleet call is one EVAL; the commands the scripts run inside are
#      listed beside (INFO counts both).
# Environment: HERD_SIZE (1000), SIDECARS (4), WAVES (20), HIT_KEYS (2000), INVALIDATIONS (200),
# COLD_KEYS (100).
# Usage: bench/e2e/fleet.sh [--strict] [--keep] [BUILD_DIR]
source "$(dirname "$0")/common.sh"
bench_init fleet 600 "$@"
INVALIDATION_BIN="$BUILD_DIR/bench/flightcache-bench-invalidation"
require_bins "$SERVER_BIN" "$LOADGEN_BIN" "$CLI_BIN" "$ORIGIN_BIN" "$INVALIDATION_BIN"

HERD_SIZE="${HERD_SIZE:-1000}"
SIDECARS="${SIDECARS:-4}"
WAVES="${WAVES:-20}"
HIT_KEYS="${HIT_KEYS:-2000}"
INVALIDATIONS="${INVALIDATIONS:-200}"
COLD_KEYS="${COLD_KEYS:-100}"
ORIGIN_MS=50
PER_SIDECAR=$((HERD_SIZE / SIDECARS))
RUN_ID="$(date +%s)-$$"

start_redis redis
FLEET="redis://127.0.0.1:$redis_PORT"

# start_sidecar NAME ORIGIN_PORT [--fleet=...]: a sidecar; on the fleet, wait until it has both
# Redis connections (it logs "fleet tier connected" once), or its first loads go on alone.
start_sidecar() {
  local name="$1" origin_port="$2"
  shift 2
  start_server "$name" --origin="grpc://127.0.0.1:$origin_port" --load-timeout=10s "$@"
  if [[ "$*" == *--fleet=* ]]; then
    local i
    for ((i = 0; i < 100; i++)); do
      grep -q "fleet tier connected" "$WORK/$name.log" && return 0
      sleep 0.1
    done
    cat "$WORK/$name.log" >&2
    bench_die "$name did not connect to the fleet within 10 s"
  fi
}

# fleet_metrics NAME...: the sidecars' fleet fallbacks and Redis calls from /metrics (they must
# have been started with --metrics-listen=127.0.0.1:${NAME}_METRICS): a failed call whose time is
# about --fleet-timeout (20 ms) timed out; "> 10 ms" counts the calls, ok or not, slower than that.
fleet_metrics() {
  local name port urls=()
  for name in "$@"; do
    port="${name}_METRICS"
    urls+=("http://127.0.0.1:${!port}/metrics")
  done
  python3 - "${urls[@]}" <<'PY'
import re, sys, urllib.request
total = {}
for url in sys.argv[1:]:
    for line in urllib.request.urlopen(url, timeout=10).read().decode().splitlines():
        m = re.match(r'(flightcache_fleet_(?:fallbacks_total|errors_total|redis_call_duration_seconds_(?:count|sum|bucket)))(\{[^}]*\})? (\S+)$', line)
        if m:
            labels = sorted(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
            key = m.group(1) + "{" + ",".join('%s="%s"' % kv for kv in labels) + "}"
            total[key] = total.get(key, 0) + float(m.group(3))
def get(name, labels="{}"):
    return total.get("flightcache_fleet_" + name + labels, 0)
calls = {r: get("redis_call_duration_seconds_count", '{result="%s"}' % r) for r in ("ok", "error")}
slow = sum(get("redis_call_duration_seconds_count", '{result="%s"}' % r)
           - get("redis_call_duration_seconds_bucket", '{le="0.01",result="%s"}' % r) for r in ("ok", "error"))
err_ms = 1000 * get("redis_call_duration_seconds_sum", '{result="error"}') / calls["error"] if calls["error"] else 0
print("fallbacks=%d; Redis calls ok=%d failed=%d (mean %.1f ms each) > 10 ms=%d"
      % (get("fallbacks_total"), calls["ok"], calls["error"], err_ms, slow))
PY
}

# spread_herd LABEL CALLERS WAVES NAME...: one herd loadgen (CALLERS per wave) per sidecar NAME,
# all started together, all given the same herd nonce; reports in $WORK/LABEL.run<i>.json.
spread_herd() {
  local label="$1" callers="$2" waves="$3"
  shift 3
  local pids=() i=0 name port
  for name in "$@"; do
    port="${name}_PORT"
    bounded 240 "$LOADGEN_BIN" --target="127.0.0.1:${!port}" --scenario=herd \
      --herd-size="$callers" --waves="$waves" --herd-nonce="$label-$RUN_ID" --deadline=10s \
      --progress=off --json="$WORK/$label.run$i.json" >"$WORK/$label.run$i.txt" &
    pids+=($!)
    BENCH_PIDS+=($!)
    i=$((i + 1))
  done
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || bench_die "$label: loadgen $i failed (see $WORK/$label.run$i.txt)"
  done
}

# sum_json 'EXPR' FILE...: the sum of EXPR over the JSON files.
sum_json() {
  local expr="$1" total=0 f
  shift
  for f in "$@"; do total=$(calc "$total + $(json "$f" "$expr")"); done
  echo "$total"
}

# max_json 'EXPR' FILE...
max_json() {
  local expr="$1" best="" f v
  shift
  for f in "$@"; do
    v=$(json "$f" "$expr")
    if [[ -z "$best" ]] || [[ "$(calc "$v > $best")" == True ]]; then best="$v"; fi
  done
  echo "$best"
}

# fleet_counters LABEL NAME...: the sidecars' Stats (fleet counters included) summed, as JSON.
fleet_counters() {
  local label="$1" name port files=()
  shift
  for name in "$@"; do
    port="${name}_PORT"
    stats_json "${!port}" "$WORK/$label.$name.stats.json"
    files+=("$WORK/$label.$name.stats.json")
  done
  python3 - "${files[@]}" >"$WORK/$label.stats.json" <<'PY'
import json, sys
total = {}
for path in sys.argv[1:]:
    for k, v in json.load(open(path)).items():
        total[k] = total.get(k, 0) + v
print(json.dumps(total))
PY
}

# redis_delta BEFORE AFTER KEYS: "EVALs per key, commands per key" between two snapshots
# (redis_commandstats). Left out: the snapshots' own INFO, and the subscribers' SUBSCRIBE and
# PING (a liveness probe once a second per sidecar, not a cost of any key).
redis_delta() {
  python3 - "$1" "$2" "$3" <<'PY'
import json, sys
before, after = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
keys = int(sys.argv[3])
delta = {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
probes = delta.pop("subscribe", 0) + delta.pop("ping", 0)
delta.pop("info", None)
evals = delta.get("eval", 0)
inner = " ".join("%s=%.2f" % (k, v / keys) for k, v in sorted(delta.items()) if k != "eval")
print("%.2f EVAL/key (%d / %d keys); inside: %s; probes %d" % (evals / keys, evals, keys, inner, probes))
PY
}

# ---- 1 & 2: the herd over the fleet, the same sidecars alone, one sidecar ----
names=()
for ((i = 0; i < SIDECARS; i++)); do names+=("fleet$i"); done

start_origin origin_fleet --latency=fixed:${ORIGIN_MS}ms --value-bytes=100
for name in "${names[@]}"; do
  printf -v "${name}_METRICS" '%s' "$(free_port)"
  metrics_port="${name}_METRICS"
  start_sidecar "$name" "$origin_fleet_PORT" --fleet="$FLEET" \
    --metrics-listen="127.0.0.1:${!metrics_port}"
done
redis_commandstats "$redis_PORT" "$WORK/redis.herd.before.json"
bench_log "herd over the fleet: $SIDECARS loadgens x $PER_SIDECAR callers x $WAVES waves"
spread_herd fleetherd "$PER_SIDECAR" "$WAVES" "${names[@]}"
redis_commandstats "$redis_PORT" "$WORK/redis.herd.after.json"
fleet_counters fleetherd "${names[@]}"
fleet_metrics "${names[@]}" >"$WORK/fleetherd.metrics.txt"
for name in "${names[@]}"; do pid="${name}_PID" && stop_pid "${!pid}"; done
stop_pid "$origin_fleet_PID"
origin_final_counters origin_fleet >"$WORK/origin_fleet.final.json"

local_names=()
for ((i = 0; i < SIDECARS; i++)); do local_names+=("alone$i"); done
start_origin origin_alone --latency=fixed:${ORIGIN_MS}ms --value-bytes=100
for name in "${local_names[@]}"; do start_sidecar "$name" "$origin_alone_PORT"; done
bench_log "the same herd, the same $SIDECARS sidecars without --fleet"
spread_herd aloneherd "$PER_SIDECAR" "$WAVES" "${local_names[@]}"
for name in "${local_names[@]}"; do pid="${name}_PID" && stop_pid "${!pid}"; done
stop_pid "$origin_alone_PID"
origin_final_counters origin_alone >"$WORK/origin_alone.final.json"

start_origin origin_single --latency=fixed:${ORIGIN_MS}ms --value-bytes=100
start_sidecar single "$origin_single_PORT"
bench_log "the same herd on one sidecar: 1 loadgen x $HERD_SIZE callers x $WAVES waves"
bounded 240 "$LOADGEN_BIN" --target="127.0.0.1:$single_PORT" --scenario=herd \
  --herd-size="$HERD_SIZE" --waves="$WAVES" --deadline=10s --progress=off \
  --json="$WORK/single.json" >"$WORK/single.txt"
stop_pid "$single_PID"
stop_pid "$origin_single_PID"
origin_final_counters origin_single >"$WORK/origin_single.final.json"

# ---- 5 (concurrent half): COLD_KEYS cold keys asked of 2 sidecars at once, origin 50 ms ----
start_origin origin_pair --latency=fixed:${ORIGIN_MS}ms --value-bytes=100
start_sidecar pair0 "$origin_pair_PORT" --fleet="$FLEET"
start_sidecar pair1 "$origin_pair_PORT" --fleet="$FLEET"
redis_commandstats "$redis_PORT" "$WORK/redis.pair.before.json"
bench_log "$COLD_KEYS cold keys asked of 2 sidecars at once (herds of 10 per sidecar)"
spread_herd pairherd 10 "$COLD_KEYS" pair0 pair1
redis_commandstats "$redis_PORT" "$WORK/redis.pair.after.json"
fleet_counters pairherd pair0 pair1
stop_pid "$pair0_PID"
stop_pid "$pair1_PID"
stop_pid "$origin_pair_PID"
origin_final_counters origin_pair >"$WORK/origin_pair.final.json"

# ---- 3, 4, 5 (sequential half): fleet hit cost, invalidation delay; origin at 0 ms ----
start_origin origin_fast --latency=fixed:0ms --value-bytes=100
start_sidecar a "$origin_fast_PORT" --fleet="$FLEET"
start_sidecar b "$origin_fast_PORT" --fleet="$FLEET"
start_sidecar c "$origin_fast_PORT"

# sequential NAME SIDECAR PREFIX: HIT_KEYS Gets, one at a time, each key PREFIX0.. exactly once.
sequential() {
  local port="${2}_PORT"
  bounded 240 "$LOADGEN_BIN" --target="127.0.0.1:${!port}" --distribution=sequential \
    --keys="$HIT_KEYS" --requests="$HIT_KEYS" --concurrency=1 --duration=200s --deadline=5s \
    --key-prefix="$3" --progress=off --json="$WORK/$1.json" >"$WORK/$1.txt"
}
prefix="hit-$RUN_ID-"
bench_log "fleet hit cost: $HIT_KEYS keys loaded on A, then read on B twice (one Get at a time)"
redis_commandstats "$redis_PORT" "$WORK/redis.seq0.json"
sequential load_a a "$prefix"
redis_commandstats "$redis_PORT" "$WORK/redis.seq1.json"
sequential fleet_b b "$prefix"
redis_commandstats "$redis_PORT" "$WORK/redis.seq2.json"
sequential hit_b b "$prefix"
fleet_counters seq a b
sequential load_c c "alone-$RUN_ID-"

bench_log "invalidation delay: $INVALIDATIONS invalidations on A, B polled"
bounded 120 "$INVALIDATION_BIN" --a="127.0.0.1:$a_PORT" --b="127.0.0.1:$b_PORT" \
  --rounds="$INVALIDATIONS" --key-prefix="inval-$RUN_ID-" >"$WORK/invalidation.json" ||
  bench_log "flightcache-bench-invalidation: not every round propagated (see the figures)"

# ---- figures ----
fleet_files=("$WORK"/fleetherd.run*.json)
alone_files=("$WORK"/aloneherd.run*.json)
fleet_requests=$(sum_json 'd["requests"]' "${fleet_files[@]}")
fleet_ok=$(sum_json 'd["status_codes"].get("OK", 0)' "${fleet_files[@]}")
fleet_p50=$(max_json 'd["latency_ms"]["p50"]' "${fleet_files[@]}")
fleet_p99=$(max_json 'd["latency_ms"]["p99"]' "${fleet_files[@]}")
fleet_sources=$(python3 -c 'import json, sys
t = {}
for p in sys.argv[1:]:
    for k, v in json.load(open(p))["sources"].items(): t[k] = t.get(k, 0) + v
print(" ".join("%s=%d" % kv for kv in t.items() if kv[1]))' "${fleet_files[@]}")
fleet_fetches=$(json "$WORK/origin_fleet.final.json" 'd["fetches"]')
fleet_keys=$(json "$WORK/origin_fleet.final.json" 'd["keys"]')
alone_requests=$(sum_json 'd["requests"]' "${alone_files[@]}")
alone_ok=$(sum_json 'd["status_codes"].get("OK", 0)' "${alone_files[@]}")
alone_p99=$(max_json 'd["latency_ms"]["p99"]' "${alone_files[@]}")
alone_fetches=$(json "$WORK/origin_alone.final.json" 'd["fetches"]')
alone_keys=$(json "$WORK/origin_alone.final.json" 'd["keys"]')
single_ok=$(json "$WORK/single.json" 'd["status_codes"].get("OK", 0)')
single_p50=$(json "$WORK/single.json" 'd["latency_ms"]["p50"]')
single_p99=$(json "$WORK/single.json" 'd["latency_ms"]["p99"]')
single_fetches=$(json "$WORK/origin_single.final.json" 'd["fetches"]')
fs="$WORK/fleetherd.stats.json"
herd_leases=$(json "$fs" 'd["fleet_leases_won"]')
herd_waits=$(json "$fs" 'd["fleet_lease_waits"]')
herd_hits=$(json "$fs" 'd["fleet_hits"]')
herd_errors=$(json "$fs" 'd["fleet_errors"]')
ps_="$WORK/pairherd.stats.json"
pair_leases=$(json "$ps_" 'd["fleet_leases_won"]')
pair_waits=$(json "$ps_" 'd["fleet_lease_waits"]')
pair_hits=$(json "$ps_" 'd["fleet_hits"]')
pair_errors=$(json "$ps_" 'd["fleet_errors"]')
pair_fetches=$(json "$WORK/origin_pair.final.json" 'd["fetches"]')
ratio=$(calc "$fleet_p99 / $single_p99")

lat() { json "$WORK/$1.json" "'p50 %.3f ms, p99 %.3f ms' % (d['latency_ms']['p50'], d['latency_ms']['p99'])"; }
src() { json "$WORK/$1.json" "' '.join('%s=%d' % kv for kv in d['sources'].items() if kv[1])"; }
fleet_hit_p50=$(json "$WORK/fleet_b.json" 'd["latency_ms"]["p50"]')
fleet_hit_p99=$(json "$WORK/fleet_b.json" 'd["latency_ms"]["p99"]')
local_hit_p50=$(json "$WORK/hit_b.json" 'd["latency_ms"]["p50"]')
local_hit_p99=$(json "$WORK/hit_b.json" 'd["latency_ms"]["p99"]')
fetch_p50=$(json "$WORK/load_a.json" 'd["latency_ms"]["p50"]')
fetch_p99=$(json "$WORK/load_a.json" 'd["latency_ms"]["p99"]')
alone_fetch_p50=$(json "$WORK/load_c.json" 'd["latency_ms"]["p50"]')
alone_fetch_p99=$(json "$WORK/load_c.json" 'd["latency_ms"]["p99"]')
all_fleet=$(json "$WORK/fleet_b.json" "d['sources'].get('FLEET', 0) == $HIT_KEYS")
all_hit=$(json "$WORK/hit_b.json" "d['sources'].get('HIT', 0) == $HIT_KEYS")
all_loaded=$(json "$WORK/load_a.json" "d['sources'].get('LOADED', 0) == $HIT_KEYS")

iv="$WORK/invalidation.json"
inv_p50=$(json "$iv" 'd["delay_ms"]["p50"]')
inv_p99=$(json "$iv" 'd["delay_ms"]["p99"]')
inv_max=$(json "$iv" 'd["delay_ms"]["max"]')
inv_ok=$(json "$iv" 'd["propagated"]')
seq_errors=$(json "$WORK/seq.stats.json" 'd["fleet_errors"]')
seq_fleet_hits=$(json "$WORK/seq.stats.json" 'd["fleet_hits"]')
inv_rtt=$(json "$iv" 'd["poll_rtt_ms"]["p50"]')
inv_rpc=$(json "$iv" 'd["invalidate_rpc_ms"]["p50"]')

echo
echo "fleet: $SIDECARS sidecars, one Redis ($(redis-server --version | cut -d' ' -f3)), origin fixed ${ORIGIN_MS} ms"
echo "  herd over the fleet: $HERD_SIZE callers ($SIDECARS x $PER_SIDECAR) x $WAVES waves:" \
  "calls=$fleet_requests ok=$fleet_ok; sources $fleet_sources"
echo "    origin: fetches=$fleet_fetches distinct_keys=$fleet_keys;" \
  "fleet: leases_won=$herd_leases lease_waits=$herd_waits fleet_hits=$herd_hits errors=$herd_errors"
echo "    fleet tier: $(cat "$WORK/fleetherd.metrics.txt")"
echo "    latency from wave start (largest of the $SIDECARS loadgens): p50=${fleet_p50} ms p99=${fleet_p99} ms;" \
  "each loadgen's p99: $(for f in "${fleet_files[@]}"; do printf '%s ' "$(json "$f" 'round(d["latency_ms"]["p99"], 1)')"; done)ms"
echo "  same sidecars without --fleet: calls=$alone_requests ok=$alone_ok;" \
  "origin fetches=$alone_fetches distinct_keys=$alone_keys; p99=${alone_p99} ms"
echo "  one sidecar, one loadgen: ok=$single_ok origin fetches=$single_fetches;" \
  "p50=${single_p50} ms p99=${single_p99} ms"
echo "  Get cost, one at a time, $HIT_KEYS keys, origin at 0 ms:"
echo "    origin fetch on A (fleet):    $(lat load_a)   [$(src load_a)]"
echo "    origin fetch on C (no fleet): $(lat load_c)   [$(src load_c)]"
echo "    fleet hit on B:               $(lat fleet_b)   [$(src fleet_b)]"
echo "    local hit on B:               $(lat hit_b)   [$(src hit_b)]"
echo "    (A and B: fleet_hits=$seq_fleet_hits fleet_errors=$seq_errors: a Redis call that failed or" \
  "took over --fleet-timeout makes that load go on alone)"
echo "  invalidation A -> B: $inv_ok/$INVALIDATIONS propagated; delay p50=${inv_p50} ms" \
  "p99=${inv_p99} ms max=${inv_max} ms (Invalidate RPC p50 ${inv_rpc} ms; poll round trip p50 ${inv_rtt} ms)"
echo "  Redis calls per cold key:"
echo "    loaded alone on A:      $(redis_delta "$WORK/redis.seq0.json" "$WORK/redis.seq1.json" "$HIT_KEYS")"
echo "    then found on B:        $(redis_delta "$WORK/redis.seq1.json" "$WORK/redis.seq2.json" "$HIT_KEYS")"
echo "    2 sidecars at once:     $(redis_delta "$WORK/redis.pair.before.json" "$WORK/redis.pair.after.json" "$COLD_KEYS")"
echo "      (leases_won=$pair_leases lease_waits=$pair_waits fleet_hits=$pair_hits errors=$pair_errors; origin fetches=$pair_fetches)"
echo "    $SIDECARS-sidecar herd:        $(redis_delta "$WORK/redis.herd.before.json" "$WORK/redis.herd.after.json" "$WAVES")"

evals() { calc "$(json "$2" 'd.get("eval", 0)') - $(json "$1" 'd.get("eval", 0)')"; }
pair_evals=$(evals "$WORK/redis.pair.before.json" "$WORK/redis.pair.after.json")
herd_evals=$(evals "$WORK/redis.herd.before.json" "$WORK/redis.herd.after.json")

exactly_one=$(verdict "$fleet_fetches == $WAVES and $fleet_keys == $WAVES and $fleet_ok == $fleet_requests")
result "origin fetches/wave, fleet" "$(calc "$fleet_fetches / $WAVES") ($fleet_fetches / $WAVES waves, $SIDECARS sidecars)" "exactly 1" "$exactly_one"
result "origin fetches/wave, no fleet" "$(calc "$alone_fetches / $WAVES") ($alone_fetches / $WAVES waves)" "$SIDECARS (one per sidecar)" \
  "$(verdict "$alone_fetches == $SIDECARS * $WAVES and $alone_ok == $alone_requests")"
result "herd p99 fleet / 1 sidecar" "$ratio (${fleet_p99} / ${single_p99} ms)" "(same run)" INFO
result "fleet hit p50 / p99" "${fleet_hit_p50} / ${fleet_hit_p99} ms" "(all FLEET: $all_fleet)" INFO
result "local hit p50 / p99" "${local_hit_p50} / ${local_hit_p99} ms" "(all HIT: $all_hit)" INFO
result "origin fetch p50/p99, fleet" "${fetch_p50} / ${fetch_p99} ms" "(origin 0 ms; LOADED: $all_loaded)" INFO
result "origin fetch p50/p99, alone" "${alone_fetch_p50} / ${alone_fetch_p99} ms" "(origin 0 ms, no --fleet)" INFO
result "invalidation delay p99" "${inv_p99} ms (p50 ${inv_p50}, $inv_ok/$INVALIDATIONS)" "< 5 ms" \
  "$(verdict "$inv_p99 < 5 and $inv_ok == $INVALIDATIONS")"
result "Redis EVALs per cold key" "$(calc "$pair_evals / $COLD_KEYS") (2 sidecars), $(calc "$herd_evals / $WAVES") ($SIDECARS)" "(holder 3 + 4 per waiter)" INFO
bench_finish

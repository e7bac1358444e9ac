#!/usr/bin/env bash
# shellcheck disable=SC2154  # NAME_PORT / NAME_PID are set by the start_* helpers of common.sh
# soak: a long mixed run, then proof that nothing was left behind. flightcache-server runs on
# flightcache-origin (a separate process, so that it can crash and come back on the same port);
# flightcache-loadgen sends SOAK_OPS calls in two phases:
#   warm-up  SOAK_WARMUP_OPS calls (default 10%), until the cache is full and evicting; then the
#            server's RSS is sampled idle: "where it settled".
#   main     the rest. Half-way (by the loadgen's own call count) the origin is killed with
#            SIGKILL, stays down SOAK_ORIGIN_DOWN seconds and restarts on the same port.
# Every call is a zipf-chosen key; 5% Invalidate, 10% BatchGet of 8 keys, the rest Get, each with
# a deadline drawn uniformly from (0, 100 ms]. The origin answers after a lognormal latency
# (median 5 ms), fails 2% of fetches and says NOT_FOUND for 5% of keys; the server's load timeout
# (250 ms), TTL (20 s), hedging (p95) and a small cache (evictions) are all in play.
#
# Afterwards, once the server is idle, from /metrics (and one Stats call) the script checks:
#   - no load in flight or queued, and no fetch left running at the origin;
#   - the counters' identities (derived from lib/src/flight_cache.cc and server/metrics.cc):
#       Get RPCs read + BatchGet keys (requests_total - requests_unread_total, batch_keys_total)
#         == hits + negative hits + misses == Stats.requests  (every key asked is counted once
#         by the cache; a call whose client left before its request arrived asks nothing)
#       misses == coalesced + loads started   (a miss joins a load or starts one)
#       loads started == loads succeeded + failed + cancelled   (every load ended once)
#       origin fetches == fetches observed in the latency histogram (every fetch answered),
#         hedge fetches observed == hedges won + lost
#       cache bytes <= --capacity-bytes
#       no origin reply counted as garbage (flightcache-origin sends none)
#       OK answers the clients saw <= OK answers the server sent
#   - the run exercised what it claims: invalidations, origin errors, expired deadlines,
#     evictions, and the origin restart (a fetch reached the new origin);
#   - RSS at the end (idle) within SOAK_RSS_TOLERANCE of where it settled after the warm-up.
#     Both samples are taken SOAK_IDLE_WAIT seconds after the server went idle: an idle server
#     hands back the memory its busy stretch left in malloc's arenas within two of its 5 s trim
#     intervals (server/memory_trimmer.h), and RSS is judged as the idle sidecar holds it.
# Any violation exits 1 naming the check (this benchmark's checks are its verdict: --strict is
# implied). A watchdog ends the whole run after SOAK_MAX_SECONDS (default 1200).
#
# Environment (defaults in brackets): SOAK_OPS [1000000], SOAK_WARMUP_OPS [SOAK_OPS/10],
# SOAK_RSS_TOLERANCE [0.10; "off" reports RSS without judging it, for sanitizer builds whose
# allocator keeps freed memory on purpose], SOAK_KEYS [200000], SOAK_CAPACITY [8MiB],
# SOAK_CONCURRENCY [64],
# SOAK_ORIGIN_DOWN [1], SOAK_IDLE_WAIT [11], SOAK_MAX_SECONDS [1200], SOAK_RSS_INTERVAL [1] (seconds between the RSS
# samples written to $WORK/rss.tsv; --keep keeps them).
# Usage: bench/e2e/soak.sh [--keep] [BUILD_DIR]
source "$(dirname "$0")/common.sh"
bench_init soak "${SOAK_MAX_SECONDS:-1200}" "$@"
# shellcheck disable=SC2034  # read by bench_finish in common.sh
BENCH_STRICT=1
require_bins "$SERVER_BIN" "$LOADGEN_BIN" "$CLI_BIN" "$ORIGIN_BIN"

SOAK_OPS="${SOAK_OPS:-1000000}"
SOAK_WARMUP_OPS="${SOAK_WARMUP_OPS:-$((SOAK_OPS / 10))}"
SOAK_RSS_TOLERANCE="${SOAK_RSS_TOLERANCE:-0.10}"
SOAK_KEYS="${SOAK_KEYS:-200000}"
SOAK_CAPACITY="${SOAK_CAPACITY:-8MiB}"
SOAK_CONCURRENCY="${SOAK_CONCURRENCY:-64}"
SOAK_ORIGIN_DOWN="${SOAK_ORIGIN_DOWN:-1}"
SOAK_RSS_INTERVAL="${SOAK_RSS_INTERVAL:-1}"
SOAK_IDLE_WAIT="${SOAK_IDLE_WAIT:-11}"
MAIN_OPS=$((SOAK_OPS - SOAK_WARMUP_OPS))
capacity_bytes="$(python3 -c '
import re, sys
m = re.fullmatch(r"(\d+)(B|KiB|MiB|GiB)?", sys.argv[1])
print(int(m[1]) * {None: 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}[m[2]] if m else "")' \
  "$SOAK_CAPACITY")"
[[ -n "$capacity_bytes" ]] || bench_die "SOAK_CAPACITY=$SOAK_CAPACITY: want bytes, e.g. 16MiB or 1048576"
((SOAK_WARMUP_OPS > 0 && MAIN_OPS >= 2)) ||
  bench_die "SOAK_WARMUP_OPS=$SOAK_WARMUP_OPS must be in [1, SOAK_OPS - 2] (SOAK_OPS=$SOAK_OPS)"
[[ "$SOAK_RSS_TOLERANCE" == off || "$(calc "0 <= $SOAK_RSS_TOLERANCE" 2>/dev/null)" == True ]] ||
  bench_die "SOAK_RSS_TOLERANCE=$SOAK_RSS_TOLERANCE must be a number >= 0 or 'off'"

ORIGIN_FLAGS=("--latency=lognormal:5ms,1.0" --error-rate=0.02 --not-found-rate=0.05
  --value-bytes=256 --stats-interval=250ms)
LOADGEN_FLAGS=(--concurrency="$SOAK_CONCURRENCY" --channels=2 --keys="$SOAK_KEYS"
  --distribution=zipf:0.9 --key-prefix=soak- --invalidate-share=0.05 --batch-share=0.1
  --batch=8 --max-deadline=100ms --max-error-rate=1)

# metrics_json PORT FILE: /metrics as one JSON object {"name{labels}": value}.
metrics_json() {
  python3 - "$1" >"$2" <<'PY'
import json, sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=10).read()
out = {}
for line in text.decode().splitlines():
    line = line.strip()
    if line and not line.startswith("#"):
        name, value = line.rsplit(" ", 1)
        out[name] = float(value)
json.dump(out, sys.stdout)
PY
}

# settle NAME: waits (at most 60 s) until the server is idle — no load in flight or queued and
# no counter moving between two scrapes 0.5 s apart — and leaves the last scrape in
# $WORK/NAME.metrics.json.
settle() {
  local name="$1" previous="" current i
  for ((i = 0; i < 120; i++)); do
    metrics_json "$metrics_port" "$WORK/$name.metrics.json"
    current="$(python3 - "$WORK/$name.metrics.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
busy = m.get("flightcache_loads_inflight", 1) + m.get("flightcache_loads_queued", 1)
# Every counter but the Stats RPCs' own (this script's) and the scrape's.
moving = sorted((k, v) for k, v in m.items()
                if k.startswith("flightcache_") and 'method="Stats"' not in k)
print("busy" if busy else json.dumps(moving))
PY
)"
    if [[ "$current" != busy && "$current" == "$previous" ]]; then
      bench_log "$name: idle after $((i / 2)) s"
      return 0
    fi
    previous="$current"
    sleep 0.5
  done
  bench_log "$name: the server did not become idle within 60 s (checks below will say why)"
}

# malloc_trim_rss: with SOAK_MALLOC_TRIM=1 (and gdb), makes the server call malloc_trim(0) — glibc
# returns the free memory it holds to the kernel — and prints the RSS after it, to tell memory
# in use from memory the allocator merely keeps. Otherwise prints "-".
malloc_trim_rss() {
  if [[ "${SOAK_MALLOC_TRIM:-0}" != 1 ]]; then
    echo -
    return
  fi
  command -v gdb >/dev/null || bench_die "SOAK_MALLOC_TRIM=1 needs gdb"
  bounded 60 gdb -p "$server_PID" -batch -ex 'call (int) malloc_trim(0)' >/dev/null 2>&1 ||
    bench_die "gdb could not call malloc_trim in the server (ptrace not permitted?)"
  rss_kb "$server_PID"
}

# The origin on a port of its own choosing; the restart reuses that port.
start_origin origin "${ORIGIN_FLAGS[@]}" --seed=1
metrics_port="$(free_port)"
start_server server --origin="grpc://127.0.0.1:$origin_PORT" --metrics-listen="127.0.0.1:$metrics_port" \
  --capacity-bytes="$SOAK_CAPACITY" --ttl=20s --negative-ttl=1s --load-timeout=250ms \
  --hedge-delay=p95 --max-concurrent-loads=32 --max-queued-loads=2000
# RSS and thread samples for the whole run: seconds since start, VmRSS KiB, threads.
(
  start=$EPOCHREALTIME
  while kill -0 "$server_PID" 2>/dev/null; do
    awk -v now="$EPOCHREALTIME" -v start="$start" \
      '/^VmRSS:/ {rss = $2} /^Threads:/ {threads = $2}
       END {printf "%.1f\t%s\t%s\n", now - start, rss, threads}' "/proc/$server_PID/status"
    sleep "$SOAK_RSS_INTERVAL"
  done
) >"$WORK/rss.tsv" 2>/dev/null &
BENCH_PIDS+=("$!")

run_started=$(date +%s)
bench_log "warm-up: $SOAK_WARMUP_OPS calls"
bounded 1100 "$LOADGEN_BIN" --target="127.0.0.1:$server_PORT" "${LOADGEN_FLAGS[@]}" \
  --requests="$SOAK_WARMUP_OPS" --seed=11 --progress=off --json="$WORK/warmup.json" \
  >"$WORK/warmup.txt" || bench_die "warm-up loadgen failed: $(cat "$WORK/warmup.txt")"
settle warmup
sleep "$SOAK_IDLE_WAIT"
rss_settled=$(rss_kb "$server_PID")
rss_settled_trimmed="$(malloc_trim_rss)"
warm_bytes=$(json "$WORK/warmup.metrics.json" 'd["flightcache_cache_bytes"]')
bench_log "warm-up done: RSS $rss_settled KiB, cache $warm_bytes of $capacity_bytes bytes"

# The main phase in two runs: the origin crashes half-way through the first, and comes back
# before the second starts, so the second's first misses find the server's channel to the origin
# broken and reconnecting (its backoff is at most 1 s) while under load.
MAIN_A=$((MAIN_OPS / 2))
MAIN_B=$((MAIN_OPS - MAIN_A))
bench_log "main: $MAIN_A calls (the origin is killed half-way), then $MAIN_B after its restart"
"$LOADGEN_BIN" --target="127.0.0.1:$server_PORT" "${LOADGEN_FLAGS[@]}" --requests="$MAIN_A" \
  --seed=12 --progress=on --json="$WORK/main_a.json" >"$WORK/main_a.txt" 2>"$WORK/main_a.progress" &
loadgen_pid=$!
BENCH_PIDS+=("$loadgen_pid")
# Half-way: by the loadgen's progress line (once a second), or by the time half the calls take
# at the warm-up's pace, whichever comes first (a fast machine may finish before a second line).
crash_at="$(python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
print(float(sys.argv[2]) + d["elapsed_s"] * int(sys.argv[3]) / max(1, d["requests"]) / 2)' \
  "$WORK/warmup.json" "$EPOCHREALTIME" "$MAIN_A")"
done_calls=""
while kill -0 "$loadgen_pid" 2>/dev/null; do
  done_calls="$(tail -n 1 "$WORK/main_a.progress" 2>/dev/null | sed -n 's/.*total=\([0-9]*\).*/\1/p')"
  if [[ -n "$done_calls" ]] && ((done_calls >= MAIN_A / 2)); then break; fi
  if awk -v now="$EPOCHREALTIME" -v at="$crash_at" 'BEGIN {exit !(now >= at)}'; then break; fi
  sleep 0.05
done
crash_under_load=0
if kill -0 "$loadgen_pid" 2>/dev/null; then crash_under_load=1; fi
bench_log "origin crash (SIGKILL) $([[ $crash_under_load == 1 ]] && echo "under load, progress ${done_calls:-0} of $MAIN_A calls" || echo "AFTER the first half ended"); down ${SOAK_ORIGIN_DOWN}s"
rss_mid=$(rss_kb "$server_PID")
kill -KILL "$origin_PID"
wait "$origin_PID" 2>/dev/null || true
sleep "$SOAK_ORIGIN_DOWN"
start_origin origin2 "${ORIGIN_FLAGS[@]}" --seed=2 --listen="127.0.0.1:$origin_PORT"
origin_back=$EPOCHREALTIME
[[ "$origin2_PORT" == "$origin_PORT" ]] || bench_die "the origin came back on port $origin2_PORT"
# How long after its return the new origin saw its first fetch (polled every 0.1 s, for 60 s).
(
  for ((i = 0; i < 600; i++)); do
    if grep -q '"fetches":[1-9]' "$WORK/origin2.stats.json" 2>/dev/null; then
      awk -v now="$EPOCHREALTIME" -v back="$origin_back" 'BEGIN {printf "%.2f\n", now - back}'
      exit 0
    fi
    sleep 0.1
  done
) >"$WORK/recovery.txt" &
BENCH_PIDS+=("$!")
wait "$loadgen_pid" || bench_die "main loadgen (first half) failed: $(tail -n 3 "$WORK/main_a.txt")"
cat "$WORK/main_a.txt"
bounded 1100 "$LOADGEN_BIN" --target="127.0.0.1:$server_PORT" "${LOADGEN_FLAGS[@]}" \
  --requests="$MAIN_B" --seed=13 --progress=off --json="$WORK/main_b.json" \
  >"$WORK/main_b.txt" || bench_die "main loadgen (second half) failed: $(cat "$WORK/main_b.txt")"
cat "$WORK/main_b.txt"
recovery_s="$(cat "$WORK/recovery.txt")"
settle final
stats_json "$server_PORT" "$WORK/final.stats.json"
sleep "$SOAK_IDLE_WAIT"
rss_final=$(rss_kb "$server_PID")
rss_final_trimmed="$(malloc_trim_rss)"
elapsed_s=$(($(date +%s) - run_started))
sleep 0.5 # the origin rewrites its stats file every 250 ms
cp "$WORK/origin2.stats.json" "$WORK/origin2.final.json" 2>/dev/null || echo '{}' >"$WORK/origin2.final.json"
health="$(bounded 10 "$CLI_BIN" --target="127.0.0.1:$server_PORT" --deadline=5s health 2>&1 || true)"

# Every check: NAME|VALUE|TARGET|PASS or FAIL.
python3 - "$WORK" "$capacity_bytes" "$rss_settled" "$rss_final" "$SOAK_RSS_TOLERANCE" \
  "$crash_under_load" "${recovery_s:-none}" "$SOAK_OPS" "$warm_bytes" >"$WORK/checks.txt" <<'PY'
import json, re, sys
work, capacity, rss_settled, rss_final, tolerance, under_load, recovery, ops, warm = sys.argv[1:]
capacity, rss_settled, rss_final = int(capacity), int(rss_settled), int(rss_final)
warm = int(float(warm))
ops = int(ops)
m = json.load(open(f"{work}/final.metrics.json"))
stats = json.load(open(f"{work}/final.stats.json"))
origin2 = json.load(open(f"{work}/origin2.final.json"))
runs = [json.load(open(f"{work}/{p}.json")) for p in ("warmup", "main_a", "main_b")]

def total(prefix, **labels):
    """Sum of every series of `prefix` whose labels include `labels`."""
    s = 0
    for key, value in m.items():
        name, _, rest = key.partition("{")
        if name != prefix:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', rest))
        if all(have.get(k) == v for k, v in labels.items()):
            s += value
    return int(s)

def check(name, ok, value, target):
    print(f"{name}|{value}|{target}|{'PASS' if ok else 'FAIL'}")

inflight, queued = total("flightcache_loads_inflight"), total("flightcache_loads_queued")
check("loads in flight / queued", inflight == 0 and queued == 0, f"{inflight} / {queued}", "0 / 0")
origin_inflight = origin2.get("inflight", "missing")
check("fetches in flight at the origin", origin_inflight == 0, origin_inflight, "0")

# A Get whose client left before its request arrived never reaches the cache (unread).
asked = (total("flightcache_requests_total", method="Get")
         - total("flightcache_requests_unread_total", method="Get")
         + total("flightcache_batch_keys_total"))
hits, neg = total("flightcache_cache_hits_total"), total("flightcache_cache_negative_hits_total")
misses = total("flightcache_cache_misses_total")
check("Get RPCs + BatchGet keys == hits + negative + misses", asked == hits + neg + misses,
      f"{asked} vs {hits}+{neg}+{misses}={hits + neg + misses}", "equal")
check("... == Stats.requests", asked == stats["requests"], f"{asked} vs {stats['requests']}",
      "equal")
coalesced, started = total("flightcache_coalesced_total"), total("flightcache_loads_started_total")
check("misses == coalesced + loads started", misses == coalesced + started,
      f"{misses} vs {coalesced}+{started}={coalesced + started}", "equal")
ended = {o: total("flightcache_loads_total", outcome=o) for o in ("succeeded", "failed", "cancelled")}
check("loads started == succeeded + failed + cancelled", started == sum(ended.values()),
      f"{started} vs {ended['succeeded']}+{ended['failed']}+{ended['cancelled']}"
      f"={sum(ended.values())}", "equal")
fetches = total("flightcache_origin_fetches_total")
observed = total("flightcache_origin_fetch_duration_seconds_count")
check("origin fetches == fetches answered (latency histogram)", fetches == observed,
      f"{fetches} vs {observed}", "equal")
won, lost = total("flightcache_hedges_total", outcome="won"), total("flightcache_hedges_total", outcome="lost")
hedge_observed = total("flightcache_origin_fetch_duration_seconds_count", attempt="hedge")
check("hedge fetches answered == hedges won + lost", hedge_observed == won + lost and lost >= 0,
      f"{hedge_observed} vs {won}+{lost}", "equal")
garbage = total("flightcache_origin_garbage_replies_total")
check("garbage origin replies (flightcache-origin sends none)", garbage == 0, garbage, "0")
cache_bytes = total("flightcache_cache_bytes")
check("cache bytes <= capacity", 0 <= cache_bytes <= capacity, f"{cache_bytes}", f"<= {capacity}")

client_ok = sum(r["status_codes"].get("OK", 0) for r in runs)
server_ok = (total("flightcache_requests_total", method="Get", code="OK")
             + total("flightcache_batch_keys_total", code="OK")
             + total("flightcache_requests_total", method="Invalidate", code="OK"))
check("OK answers seen by clients <= sent by the server", client_ok <= server_ok,
      f"{client_ok} <= {server_ok}", "<=")
calls = sum(r["requests"] for r in runs)
check("calls finished", calls == ops, calls, ops)

invalidated = total("flightcache_requests_total", method="Invalidate", code="OK")
expired = (total("flightcache_requests_total", code="DEADLINE_EXCEEDED")
           + total("flightcache_batch_keys_total", code="DEADLINE_EXCEEDED"))
evictions = total("flightcache_cache_evictions_total")
check("exercised: invalidations, failed loads, expired calls, evictions",
      min(invalidated, ended["failed"], expired, evictions) > 0,
      f"{invalidated}, {ended['failed']}, {expired}, {evictions}", "all > 0")
check("origin crash under load, then a fetch reached the new origin",
      under_load == "1" and recovery != "none",
      ("crashed under load" if under_load == "1" else "crashed after the load ended")
      + (f"; first fetch {recovery} s after its return" if recovery != "none" else "; no fetch"),
      "both")

# "Settled" only means something once the cache is full: until then it grows by design.
check("warm-up filled the cache (bytes >= 95% of capacity)", warm >= 0.95 * capacity,
      f"{warm}", f">= {int(0.95 * capacity)}")
growth = rss_final / rss_settled - 1
if tolerance == "off":
    print(f"RSS end vs settled|{rss_final} vs {rss_settled} KiB = {growth:+.1%}|not judged|INFO")
else:
    check("RSS end vs settled", growth <= float(tolerance),
          f"{rss_final} vs {rss_settled} KiB = {growth:+.1%}", f"<= +{float(tolerance):.0%}")
PY
[[ -s "$WORK/checks.txt" ]] || bench_die "the checks could not be evaluated (see above)"

rss_min_max="$(awk 'NR > 1 {if (min == "" || $2 < min) min = $2; if ($2 > max) max = $2} END {print min " / " max}' "$WORK/rss.tsv")"
threads="$(awk '{if (min == "" || $3 < min) min = $3; if ($3 > max) max = $3} END {print min "-" max}' "$WORK/rss.tsv")"
echo
echo "soak: $SOAK_OPS calls ($SOAK_WARMUP_OPS warm-up) in ${elapsed_s}s; keys $SOAK_KEYS zipf:0.9;" \
  "capacity $SOAK_CAPACITY; concurrency $SOAK_CONCURRENCY"
echo "  RSS KiB: settled $rss_settled, end $rss_final, min / max while running $rss_min_max" \
  "(samples every ${SOAK_RSS_INTERVAL}s in rss.tsv); server threads $threads"
echo "  RSS KiB after malloc_trim(0) (SOAK_MALLOC_TRIM=1): settled $rss_settled_trimmed, end $rss_final_trimmed"
echo "  RSS KiB at the origin crash (half-way, under load) $rss_mid; from there to the end (idle)" \
  "$(calc "round(($rss_final / $rss_mid - 1) * 100, 1)")% (a leak keeps growing; a plateau does not)"
echo "  server: $(tr -d '\n' <"$WORK/final.stats.json")"
echo "  health after the run: $health"
while IFS='|' read -r name value target verdict; do
  result "$name" "$value" "$target" "$verdict"
done <"$WORK/checks.txt"
result "server healthy after the run" "$health" "SERVING" \
  "$([[ "$health" == *SERVING* && "$health" != *NOT_SERVING* ]] && echo PASS || echo FAIL)"
if [[ $BENCH_FAILED -ne 0 ]]; then
  bench_log "SOAK FAILED: the checks marked FAIL above were violated"
fi
bench_finish

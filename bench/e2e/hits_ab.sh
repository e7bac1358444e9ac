#!/usr/bin/env bash
# shellcheck disable=SC2154  # NAME_PORT / NAME_PID are set by the start_* helpers of common.sh
# hits_ab: the hit path of two flightcache-server binaries side by side, to tell whether a change
# made hits slower. BASE_SERVER (required) is the binary before the change; the candidate is
# BUILD_DIR's. Both run during the whole script, both get the same 10,000 keys (100-byte values),
# then flightcache-loadgen runs a closed loop of concurrency 64 (uniform, 100% hits) against each
# in turn, alternating base/candidate and candidate/base for ROUNDS pairs (default 8), so that a
# change in background load hits both alike.
#   - throughput of each, and the server's CPU time per request (utime + stime of the process,
#     from /proc, over the run): CPU per request is the steadier figure on a shared machine;
#   - candidate / base ratio of the medians of each: target >= 0.95 (figures, not a verdict,
#     unless --strict).
# Usage: BASE_SERVER=/path/to/old/flightcache-server bench/e2e/hits_ab.sh [--strict] [--keep]
#        [BUILD_DIR]
source "$(dirname "$0")/common.sh"
bench_init hits_ab 900 "$@"
require_bins "$SERVER_BIN" "$LOADGEN_BIN" "$FILL_BIN"
[[ -x "${BASE_SERVER:-}" ]] || bench_die "set BASE_SERVER to the flightcache-server to compare with"

KEYS="${KEYS:-10000}"
DURATION="${DURATION:-4s}"
ROUNDS="${ROUNDS:-8}"
ORIGIN="sim://?latency_ms=1&jitter_ms=0&value_bytes=100"

CANDIDATE_SERVER="$SERVER_BIN"
SERVER_BIN="$BASE_SERVER" start_server base --origin="$ORIGIN" --capacity-bytes=256MiB --ttl=1h
SERVER_BIN="$CANDIDATE_SERVER" start_server cand --origin="$ORIGIN" --capacity-bytes=256MiB --ttl=1h
for name in base cand; do
  port_var="${name}_PORT"
  bounded 120 "$FILL_BIN" --target="127.0.0.1:${!port_var}" --keys="$KEYS" --batch=500 \
    --parallel=4 >"$WORK/$name.fill.json"
done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
ticks_per_second=$(getconf CLK_TCK)

# NAME ROUND: one loadgen run; appends "rps cpu_us_per_request" to $WORK/NAME.tsv.
run_one() {
  local port_var="${1}_PORT" pid_var="${1}_PID" before after
  before=$(cpu_ticks "${!pid_var}")
  bounded 120 "$LOADGEN_BIN" --target="127.0.0.1:${!port_var}" --keys="$KEYS" \
    --distribution=uniform --concurrency=64 --duration="$DURATION" --deadline=1s --progress=off \
    --json="$WORK/$1.$2.json" >"$WORK/$1.$2.txt"
  after=$(cpu_ticks "${!pid_var}")
  json "$WORK/$1.$2.json" \
    "f\"{d['throughput_rps']:.0f} {($after - $before) * 1e6 / $ticks_per_second / d['requests']:.1f}\"" \
    >>"$WORK/$1.tsv"
  bench_log "$1 round $2: $(tail -1 "$WORK/$1.tsv") (rps, server CPU us per request)"
}

for round in $(seq "$ROUNDS"); do
  if ((round % 2)); then run_one base "$round"; run_one cand "$round"
  else run_one cand "$round"; run_one base "$round"; fi
done

read -r base_rps base_cpu < <(python3 -c "
import statistics as s; rows=[l.split() for l in open('$WORK/base.tsv')]
print(round(s.median(float(r[0]) for r in rows)), round(s.median(float(r[1]) for r in rows), 1))")
read -r cand_rps cand_cpu < <(python3 -c "
import statistics as s; rows=[l.split() for l in open('$WORK/cand.tsv')]
print(round(s.median(float(r[0]) for r in rows)), round(s.median(float(r[1]) for r in rows), 1))")
echo "hits_ab: $KEYS warm keys, uniform, closed loop, concurrency 64, $DURATION x $ROUNDS rounds each"
echo "  base:      rps [$(cut -d' ' -f1 "$WORK/base.tsv" | paste -sd' ')]" \
  "cpu us/request [$(cut -d' ' -f2 "$WORK/base.tsv" | paste -sd' ')]"
echo "  candidate: rps [$(cut -d' ' -f1 "$WORK/cand.tsv" | paste -sd' ')]" \
  "cpu us/request [$(cut -d' ' -f2 "$WORK/cand.tsv" | paste -sd' ')]"
throughput_ratio=$(calc "round($cand_rps / $base_rps, 3)")
cpu_ratio=$(calc "round($base_cpu / $cand_cpu, 3)")
result "median throughput, candidate / base" "$cand_rps / $base_rps = $throughput_ratio" \
  ">= 0.95" "$(verdict "$throughput_ratio >= 0.95")"
result "median CPU per request, base / candidate" "$base_cpu / $cand_cpu us = $cpu_ratio" \
  ">= 0.95" "$(verdict "$cpu_ratio >= 0.95")"
bench_finish

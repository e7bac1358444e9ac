#!/usr/bin/env bash
# Runs every end-to-end benchmark in turn and prints all their verdicts together.
# Usage: bench/e2e/run_all.sh [--strict] [--keep] [BUILD_DIR] [-- NAME...]
#   NAME...  a subset of: herd hits tail overload memory cancellation fleet stale adaptive replicas
#            tls waiters
#            (default: all, that order; fleet needs redis-server and redis-cli).
#   (soak.sh is not one of them: a million calls take ~4 min and it has its own 1,200 s
#   watchdog; run it alone, see docs/BENCHMARKS.md "Soak".)
# Each benchmark bounds itself (its own watchdog) and is also run under `timeout` here. Exit 0
# unless --strict and a target was missed (1), or a benchmark could not run (3).
set -uo pipefail
dir="$(cd "$(dirname "$0")" && pwd)"
args=()
names=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --) shift; names=("$@"); break ;;
    *) args+=("$1") ;;
  esac
  shift
done
[[ ${#names[@]} -gt 0 ]] || names=(herd hits tail overload memory cancellation fleet stale adaptive replicas tls waiters)

status=0
summary=()
for name in "${names[@]}"; do
  [[ -x "$dir/$name.sh" ]] || { echo "run_all: no benchmark '$name'" >&2; exit 3; }
  echo "=================== $name ==================="
  out="$(mktemp)"
  timeout --signal=TERM --kill-after=30 600 "$dir/$name.sh" "${args[@]}" 2>&1 | tee "$out"
  rc=${PIPESTATUS[0]}
  # The verdicts as each benchmark's closing summary lists them (each is also printed as it
  # is reached, so take only the summary's copy).
  mapfile -t lines < <(awk '/^== .*: summary/ {s = 1} s && /^RESULT / {print}' "$out")
  summary+=("${lines[@]}")
  rm -f "$out"
  if [[ $rc -ne 0 ]]; then
    summary+=("RESULT $name exited with status $rc")
    if [[ $rc -eq 1 ]]; then status=1; else status=3; fi
  fi
done
echo
echo "=================== all benchmarks ($(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, $(uptime | sed 's/.*load average/load average/')) ==================="
printf '%s\n' "${summary[@]}"
exit "$status"

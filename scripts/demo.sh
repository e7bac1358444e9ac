#!/usr/bin/env bash
# The main job: installs what is missing, builds (release), starts flightcache-server on its
# built-in simulated origin, drives it with flightcache-loadgen — a thundering-herd scenario, then
# a 10-second zipf run — prints both reports, and stops everything.
#
# Environment knobs (optional): DEMO_DURATION (default 10s), DEMO_HERD_SIZE (1000),
# DEMO_WAVES (5), DEMO_ORIGIN (sim://?latency_ms=50&jitter_ms=10&value_bytes=256).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/build.sh release
bin=build/release

# shellcheck source=lib.sh
source scripts/lib.sh
port=$(free_port)
metrics_port=$(free_port)
target="127.0.0.1:${port}"
origin="${DEMO_ORIGIN:-sim://?latency_ms=50&jitter_ms=10&value_bytes=256}"

log=$(mktemp -t flightcache-demo.XXXXXX.log)
"${bin}/server/flightcache-server" --listen="${target}" \
  --metrics-listen="127.0.0.1:${metrics_port}" --origin="${origin}" >"${log}" 2>&1 &
server_pid=$!
stop_server() {
  if kill -0 "${server_pid}" 2>/dev/null; then
    kill -TERM "${server_pid}" 2>/dev/null || true
    wait "${server_pid}" 2>/dev/null || true
  fi
}
trap stop_server EXIT

# Wait (bounded) until the server reports SERVING.
for _ in $(seq 1 100); do
  if "${bin}/client/flightcache-cli" --target="${target}" --deadline=500ms health >/dev/null 2>&1; then
    break
  fi
  if ! kill -0 "${server_pid}" 2>/dev/null; then
    echo "demo: flightcache-server exited early:" >&2
    cat "${log}" >&2
    exit 1
  fi
  sleep 0.1
done

echo "=== flightcache-server on ${target}, origin ${origin}"
echo "=== 1/2: thundering herd — ${DEMO_HERD_SIZE:-1000} callers ask for one cold key at once, ${DEMO_WAVES:-5} waves"
"${bin}/client/flightcache-loadgen" --target="${target}" --scenario=herd \
  --herd-size="${DEMO_HERD_SIZE:-1000}" --waves="${DEMO_WAVES:-5}" --deadline=5s --progress=off

echo
echo "=== 2/2: ${DEMO_DURATION:-10s} closed loop, 64 callers, 100000 keys, zipf:1.1"
"${bin}/client/flightcache-loadgen" --target="${target}" --duration="${DEMO_DURATION:-10s}" \
  --concurrency=64 --keys=100000 --distribution=zipf:1.1 --deadline=1s

echo
stop_server
trap - EXIT
echo "=== server log (startup line and shutdown summary)"
cat "${log}"
rm -f "${log}"

#!/usr/bin/env bash
# shellcheck disable=SC2154  # NAME_PORT / NAME_PID are set by the start_* helpers of common.sh
# tls: what TLS costs on the hit path. Two flightcache-servers run side by side, the same flags
# but one serves TLS (--tls-cert-file/--tls-key-file, an EC P-256 certificate made here with
# openssl). Each is warmed with the same KEYS keys, then flightcache-loadgen runs a closed loop of
# concurrency 64 over them (uniform, 100% hits) against each in turn, alternating A B, B A, ...
# (ROUNDS pairs, default 4), the TLS runs with --tls-ca-file. Connections are made once per run
# (--channels=CHANNELS, default 4), so this is the cost of encrypting calls, not of handshakes.
#   - throughput and p99 of each; ratio TLS / plaintext throughput (figure, no target).
# Usage: bench/e2e/tls.sh [--strict] [--keep] [BUILD_DIR]
source "$(dirname "$0")/common.sh"
bench_init tls 560 "$@"
require_bins "$SERVER_BIN" "$LOADGEN_BIN" "$CLI_BIN"
command -v openssl >/dev/null || bench_die "openssl is required (apt-get install openssl)"

KEYS="${KEYS:-10000}"
VALUE_BYTES="${VALUE_BYTES:-100}"
DURATION="${DURATION:-10s}"
ROUNDS="${ROUNDS:-4}"
CHANNELS="${CHANNELS:-4}"
CONCURRENCY=64

bench_log "making a CA and a server certificate (EC P-256) with openssl"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -keyout "$WORK/ca.key" -out "$WORK/ca.crt" -subj /CN=bench-ca \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout "$WORK/server.key" -out "$WORK/server.csr" -subj /CN=localhost 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$WORK/ext"
openssl x509 -req -in "$WORK/server.csr" -CA "$WORK/ca.crt" -CAkey "$WORK/ca.key" \
  -CAcreateserial -days 2 -extfile "$WORK/ext" -out "$WORK/server.crt" 2>/dev/null
TLS_CLIENT=(--tls-ca-file="$WORK/ca.crt" --tls-server-name=localhost)

SERVER_FLAGS=(--origin="sim://?latency_ms=1&jitter_ms=0&value_bytes=$VALUE_BYTES"
  --capacity-bytes=256MiB --ttl=1h)
start_server plain "${SERVER_FLAGS[@]}"
CLI_TLS=("${TLS_CLIENT[@]}")
start_server tls "${SERVER_FLAGS[@]}" --tls-cert-file="$WORK/server.crt" \
  --tls-key-file="$WORK/server.key"
CLI_TLS=()

loadgen() { # NAME DURATION [FLAGS...]: one closed-loop run against server NAME
  local name="$1" duration="$2" port_var="${1}_PORT"
  shift 2
  local tls=()
  [[ "$name" == tls ]] && tls=("${TLS_CLIENT[@]}")
  bounded 120 "$LOADGEN_BIN" --target="127.0.0.1:${!port_var}" "${tls[@]}" --keys="$KEYS" \
    --distribution=uniform --concurrency=$CONCURRENCY --channels="$CHANNELS" \
    --duration="$duration" --deadline=1s --progress=off "$@"
}

# Warm-up, not counted: every key loaded (1 ms each, 64 at a time) and the servers' first
# seconds (threads, allocator) behind us.
for name in plain tls; do
  bench_log "warm-up against $name (not counted)"
  loadgen "$name" 5s >/dev/null
done

for ((r = 1; r <= ROUNDS; r++)); do
  order=(plain tls)
  ((r % 2 == 0)) && order=(tls plain)
  for name in "${order[@]}"; do
    bench_log "loadgen against $name (round $r)"
    loadgen "$name" "$DURATION" --json="$WORK/$name.$r.json" >"$WORK/$name.$r.txt"
    cat "$WORK/$name.$r.txt"
  done
done

plain_rps=$(mean_over_rounds plain 'd["throughput_rps"]')
tls_rps=$(mean_over_rounds tls 'd["throughput_rps"]')
plain_p99=$(mean_over_rounds plain 'd["latency_ms"]["p99"]')
tls_p99=$(mean_over_rounds tls 'd["latency_ms"]["p99"]')
plain_p50=$(mean_over_rounds plain 'd["latency_ms"]["p50"]')
tls_p50=$(mean_over_rounds tls 'd["latency_ms"]["p50"]')

echo
echo "tls: $KEYS warm keys, uniform, closed loop, concurrency $CONCURRENCY over $CHANNELS connections, $DURATION x $ROUNDS rounds each (A B, B A, ...)"
echo "  plaintext: rps per round [$(list_over_rounds plain 'd["throughput_rps"]')] p99 ms [$(list_over_rounds plain 'd["latency_ms"]["p99"]')] hit_ratio [$(list_over_rounds plain 'd["server"]["hit_ratio"]')] errors [$(list_over_rounds plain 'd["errors"]')]"
echo "  TLS:       rps per round [$(list_over_rounds tls 'd["throughput_rps"]')] p99 ms [$(list_over_rounds tls 'd["latency_ms"]["p99"]')] hit_ratio [$(list_over_rounds tls 'd["server"]["hit_ratio"]')] errors [$(list_over_rounds tls 'd["errors"]')]"
echo "  mean: plaintext ${plain_rps} rps (p50 ${plain_p50} ms, p99 ${plain_p99} ms); TLS ${tls_rps} rps (p50 ${tls_p50} ms, p99 ${tls_p99} ms)"

result "plaintext hits" "${plain_rps} rps, p99 ${plain_p99} ms" "(baseline)" INFO
result "TLS hits" "${tls_rps} rps, p99 ${tls_p99} ms" "(figure)" INFO
result "TLS/plaintext throughput" "$(calc "round($tls_rps / $plain_rps, 3)")" "(figure)" INFO
result "TLS/plaintext p99" "$(calc "round($tls_p99 / $plain_p99, 3)")" "(figure)" INFO
bench_finish

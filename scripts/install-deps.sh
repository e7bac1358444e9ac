#!/usr/bin/env bash
# Installs the Debian bookworm packages flightcache needs, and only those that are missing.
# Idempotent and non-interactive; does nothing (and needs no root) when everything is present.
# Usage: scripts/install-deps.sh [fuzz]   (fuzz: also clang-14 and libFuzzer, for the fuzz preset)
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  # LLVM's linker: links the test programs in a quarter of GNU ld's time (CMakeLists.txt).
  lld
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libspdlog-dev prometheus-cpp-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  python3 procps curl python3-yaml
  # Lint (scripts/lint.sh, run by scripts/test.sh): Debian's clang-format and clang-tidy (14).
  clang-format clang-tidy
  # The fleet tier (server/fleet/): the hiredis client library, and redis-server for its tests.
  libhiredis-dev redis-server redis-tools
  # TLS (server/grpc_tls.cc) and the admin token's digest (server/admin_guard.cc); the openssl
  # program makes the tests' certificates (tests/testing/test_certs.h).
  libssl-dev openssl
  # promtool, for the tests of deploy/prometheus/ (check rules and config, alert unit tests).
  # Debian ships it in the server's package; where systemd runs, installing it also starts a
  # Prometheus on :9090 (`systemctl disable --now prometheus` stops it; the tests need only
  # promtool).
  prometheus
  # zlib: flightcache-loadgen --hdr-log deflates HdrHistogram's interval histograms.
  zlib1g-dev
  # Headless Chromium: the loadgen's HTML report test renders the page in a real browser.
  chromium
)
case "${1:-}" in
  "") ;;
  # libFuzzer ships in libclang-rt-14-dev; llvm-14 has llvm-symbolizer-14 for readable reports.
  fuzz) packages+=(clang-14 libclang-rt-14-dev llvm-14) ;;
  *) echo "usage: $0 [fuzz]" >&2; exit 2 ;;
esac

missing=()
for pkg in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"

#!/usr/bin/env bash
# Installs the Debian bookworm packages flightcache needs, and only those that are missing.
# Idempotent and non-interactive; does nothing (and needs no root) when everything is present.
# Usage: scripts/install-deps.sh [build|fuzz] [--list]
#   (no mode) what building and every test need;
#   build     only what building the programs and running them needs (scripts/build.sh, the
#             demo, the Dockerfile's build stage): no lint tools, Redis, Prometheus or Chromium;
#   fuzz      everything, and clang-14 with libFuzzer for the fuzz preset;
#   --list    print the mode's packages, one per line, and install nothing.
set -euo pipefail

# Building (every target of every preset but fuzz) and running the programs.
build_packages=(
  build-essential cmake ninja-build pkg-config
  # LLVM's linker: links the test programs in a quarter of GNU ld's time (CMakeLists.txt).
  lld
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libspdlog-dev prometheus-cpp-dev
  # The tests and benchmarks are configured with every preset, so their libraries are needed to
  # configure one.
  libgtest-dev libgmock-dev libbenchmark-dev
  # The fleet tier (server/fleet/): the hiredis client library.
  libhiredis-dev
  # TLS (server/grpc_tls.cc) and the admin token's digest (server/admin_guard.cc).
  libssl-dev
  # zlib: flightcache-loadgen --hdr-log deflates HdrHistogram's interval histograms.
  zlib1g-dev
  # The scripts' free_port (scripts/lib.sh) and process checks.
  python3 procps
)
# What the tests need beyond building: real parts they start, and the lint tools.
test_packages=(
  curl python3-yaml
  # Lint (scripts/lint.sh, run by scripts/test.sh): Debian's clang-format and clang-tidy (14).
  clang-format clang-tidy
  # redis-server for the fleet tier's tests.
  redis-server redis-tools
  # The openssl program makes the tests' certificates (tests/testing/test_certs.h).
  openssl
  # promtool, for the tests of deploy/prometheus/ (check rules and config, alert unit tests).
  # Debian ships it in the server's package; where systemd runs, installing it also starts a
  # Prometheus on :9090 (`systemctl disable --now prometheus` stops it; the tests need only
  # promtool).
  prometheus
  # Headless Chromium: the loadgen's HTML report test renders the page in a real browser.
  chromium
)
mode="" list=false
for arg in "$@"; do
  case "$arg" in
    --list) list=true ;;
    build | fuzz) mode="$arg" ;;
    *) echo "usage: $0 [build|fuzz] [--list]" >&2; exit 2 ;;
  esac
done
packages=("${build_packages[@]}")
case "$mode" in
  build) ;;
  "") packages+=("${test_packages[@]}") ;;
  # libFuzzer ships in libclang-rt-14-dev; llvm-14 has llvm-symbolizer-14 for readable reports.
  fuzz) packages+=("${test_packages[@]}" clang-14 libclang-rt-14-dev llvm-14) ;;
esac
if $list; then
  printf '%s\n' "${packages[@]}"
  exit 0
fi

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

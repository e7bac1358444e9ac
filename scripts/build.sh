#!/usr/bin/env bash
# Installs what building needs and is missing, then configures and builds one CMake preset (default: release):
# everything it configures, or only the named targets (the Dockerfile builds just the programs
# it ships).
# Usage: scripts/build.sh [release|debug|tsan|asan|fuzz] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
preset="${1:-release}"
shift || true

# Only what building needs: scripts/test.sh installs what the tests need besides.
if [ "$preset" = fuzz ]; then
  scripts/install-deps.sh fuzz
else
  scripts/install-deps.sh build
fi
cmake --preset "$preset" >/dev/null
if [ $# -gt 0 ]; then
  cmake --build --preset "$preset" --target "$@"
else
  cmake --build --preset "$preset"
fi

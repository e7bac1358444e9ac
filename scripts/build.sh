#!/usr/bin/env bash
# Installs what is missing, then configures and builds one CMake preset (default: release).
# Usage: scripts/build.sh [release|debug|tsan|asan|fuzz]
set -euo pipefail
cd "$(dirname "$0")/.."
preset="${1:-release}"

if [ "$preset" = fuzz ]; then
  scripts/install-deps.sh fuzz
else
  scripts/install-deps.sh
fi
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset"

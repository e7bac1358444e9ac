#!/usr/bin/env bash
# Installs what is missing, then configures and builds one CMake preset (default: release).
# Usage: scripts/build.sh [release|debug|tsan|asan]
set -euo pipefail
cd "$(dirname "$0")/.."
preset="${1:-release}"

scripts/install-deps.sh
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset"

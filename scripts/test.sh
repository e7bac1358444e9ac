#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test: the whole ctest suite in release, the
# core's unit tests again under ThreadSanitizer, the whole suite again under AddressSanitizer+UBSan
# (see CMakePresets.json for the one test the asan preset leaves out), and finally each libFuzzer
# target for 15 s (docs/FUZZING.md; the fuzz preset builds with clang-14).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs="$(nproc)"

run_suite() {
  local preset="$1"
  echo "=== ${preset}: build"
  scripts/build.sh "$preset"
  echo "=== ${preset}: test"
  ctest --preset "$preset" -j "$jobs"
}

run_suite release
run_suite tsan
run_suite asan
run_suite fuzz
echo "=== all suites passed"

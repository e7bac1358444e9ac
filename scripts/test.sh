#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test: lint (clang-format and clang-tidy over the
# release build's compile commands; any finding fails), the whole ctest suite in release, the
# core's unit tests again under ThreadSanitizer, the whole suite again under AddressSanitizer+UBSan
# (see CMakePresets.json for the one test the asan preset leaves out), and finally each libFuzzer
# target for 15 s (docs/FUZZING.md; the fuzz preset builds with clang-14).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs="$(nproc)"

# Each phase says when it starts, so a slow CI run shows where its time went.
phase() { echo "=== $1 (at ${SECONDS} s)"; }

run_suite() {
  local preset="$1"
  phase "${preset}: build"
  scripts/build.sh "$preset"
  if [ "$preset" = release ]; then
    phase "lint"
    scripts/lint.sh build/release
  fi
  phase "${preset}: test"
  ctest --preset "$preset" -j "$jobs"
}

run_suite release
run_suite tsan
run_suite asan
run_suite fuzz
echo "=== all suites passed (in ${SECONDS} s)"

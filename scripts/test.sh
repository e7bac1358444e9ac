#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test: lint (clang-format and clang-tidy over the
# release build's compile commands; any finding fails), the whole ctest suite in release, the
# core's unit tests again under ThreadSanitizer, the whole suite again under AddressSanitizer+UBSan
# (see CMakePresets.json for the tests the asan preset leaves out), and finally each libFuzzer
# target for 15 s (docs/FUZZING.md; the fuzz preset builds with clang-14).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs="$(nproc)"
# Everything every suite needs (scripts/build.sh installs only what building needs).
scripts/install-deps.sh fuzz

# Each phase says when it starts, so a slow CI run shows where its time went.
phase() { echo "=== $1 (at ${SECONDS} s)"; }

build() {
  phase "$1: build"
  scripts/build.sh "$1"
}

run_tests() {
  phase "$1: test"
  ctest --preset "$1" -j "$jobs"
}

build release
# Lint runs beside the release tests, at a low priority: the tests spend much of their time
# waiting on real time (timeouts, child processes), and clang-tidy fills those gaps instead of
# adding minutes of its own. Its report is printed once the tests are done.
phase "lint (beside the release tests)"
lint_log="$(mktemp)"
trap 'rm -f "$lint_log"' EXIT
nice -n 15 scripts/lint.sh build/release >"$lint_log" 2>&1 &
lint_pid=$!
tests_status=0
run_tests release || tests_status=$?
lint_status=0
wait "$lint_pid" || lint_status=$?
phase "lint: done"
cat "$lint_log"
if [ "$tests_status" -ne 0 ] || [ "$lint_status" -ne 0 ]; then
  echo "=== release: tests exit ${tests_status}, lint exit ${lint_status}" >&2
  exit 1
fi

for preset in tsan asan fuzz; do
  build "$preset"
  run_tests "$preset"
done
echo "=== all suites passed (in ${SECONDS} s)"

#!/usr/bin/env bash
# Lint: clang-format (Google-based .clang-format) over every C++ file, then clang-tidy
# (.clang-tidy) over the sources of lib/, server/ and client/, using a build's
# compile_commands.json. Any unformatted file or any clang-tidy finding fails (exit 1).
# scripts/test.sh runs it after the release build, so CI runs it.
# Usage: scripts/lint.sh [--fix] [BUILD_DIR]   (--fix: rewrite files with clang-format and stop;
#        BUILD_DIR defaults to build/release)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--fix" ]; then
  git ls-files '*.cc' '*.h' | xargs clang-format -i
  exit 0
fi
build_dir="${1:-build/release}"

status=0
mapfile -t files < <(git ls-files '*.cc' '*.h')
if ! clang-format --dry-run -Werror "${files[@]}"; then
  echo "lint: clang-format found unformatted files (run scripts/lint.sh --fix)" >&2
  status=1
fi

if [ ! -f "$build_dir/compile_commands.json" ]; then
  echo "lint: $build_dir/compile_commands.json missing; run scripts/build.sh first" >&2
  exit 1
fi
# Only sources the build compiles (a preset may leave some out); one clang-tidy per core.
findings="$(mktemp)"
trap 'rm -f "$findings"' EXIT
git ls-files 'lib/*.cc' 'server/*.cc' 'client/*.cc' |
  while read -r source; do
    if grep -q "\"file\": \"[^\"]*/$source\"" "$build_dir/compile_commands.json"; then
      echo "$source"
    fi
  done |
  xargs -P "$(nproc)" -n 4 clang-tidy -p "$build_dir" --quiet 2>/dev/null |
  grep -E -A3 "(warning|error):" >"$findings" || true
if [ -s "$findings" ]; then
  cat "$findings"
  echo "lint: clang-tidy findings above (.clang-tidy lists the checks)" >&2
  status=1
fi
[ "$status" -eq 0 ] && echo "lint: clean"
exit "$status"

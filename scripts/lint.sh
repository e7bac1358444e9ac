#!/usr/bin/env bash
# Checks formatting (clang-format, Google-based .clang-format) and runs clang-tidy (.clang-tidy)
# over the project's C++ sources, using build/release/compile_commands.json.
# Usage: scripts/lint.sh [--fix]   (--fix rewrites files with clang-format instead of checking)
set -euo pipefail
cd "$(dirname "$0")/.."

mapfile -t files < <(git ls-files '*.cc' '*.h')
if [ "${1:-}" = "--fix" ]; then
  clang-format -i "${files[@]}"
  exit 0
fi

status=0
if ! clang-format --dry-run -Werror "${files[@]}"; then
  echo "lint: clang-format found unformatted files (run scripts/lint.sh --fix)" >&2
  status=1
fi
if [ -f build/release/compile_commands.json ]; then
  mapfile -t sources < <(git ls-files 'lib/*.cc' 'server/*.cc' 'client/*.cc')
  if ! clang-tidy -p build/release --quiet "${sources[@]}" 2>/dev/null | grep -E "warning:|error:"; then
    :
  fi
else
  echo "lint: build/release/compile_commands.json missing; run scripts/build.sh first" >&2
fi
exit "$status"

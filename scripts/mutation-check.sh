#!/usr/bin/env bash
# Mutation check of the core: applies each broken version of lib/ in tests/mutants/ to a copy of
# this tree, builds the core's unit tests and requires that the tests the patch names fail.
# A mutant that survives means a guarantee no test defends. Run on demand (not in CI: it builds
# and runs the unit suite once per mutant, several minutes in all).
# Usage: scripts/mutation-check.sh [tests/mutants/NAME.patch ...]
set -euo pipefail
cd "$(dirname "$0")/.."
die() { echo "mutation-check: $*" >&2; exit 1; }

mutants=("$@")
if [ ${#mutants[@]} -eq 0 ]; then mutants=(tests/mutants/*.patch); fi

# Outside the repository: `git apply` there patches plain files, and the copy cannot touch ours.
# The same directory every run, so that a second run rebuilds only what changed; a lock keeps two
# runs from patching one copy at once (MUTATION_WORK names another directory for a parallel run).
work="${MUTATION_WORK:-${TMPDIR:-/tmp}/flightcache-mutation}"
tree="$work/src"
mkdir -p "$tree"
exec 9>"$work/lock"
flock -n 9 || die "another mutation check is using $work (set MUTATION_WORK for a parallel run)"
# The tree as it is now (committed or not), without build output.
rm -rf "$tree/lib" "$tree/tests"
{ git ls-files -z; git ls-files -z --others --exclude-standard; } |
  grep -zv '^build/' | tar --null -T - -cf - | tar -xf - -C "$tree"
here="$PWD"

cmake -S "$tree" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DFLIGHTCACHE_BUILD_SERVER=OFF -DFLIGHTCACHE_BUILD_BENCHMARKS=OFF >/dev/null
build_and_test() {  # $1: ctest regex. Returns 0 if they pass, 1 if any fails, 2 if the build fails
  cmake --build "$work/build" >"$work/build.log" 2>&1 || { echo "build failed"; return 2; }
  (cd "$work/build" && ctest -R "$1" -j "$(nproc)" --timeout 120 >"$work/ctest.log" 2>&1) || return 1
}

echo "== baseline: the unmutated tree must pass"
build_and_test 'PitfallTest|FlightCache|HedgerTest|OriginFetcherTest' ||
  die "the unmutated tree fails its tests: see $work/ctest.log"

survivors=0
for patch in "${mutants[@]}"; do
  name="$(basename "$patch" .patch)"
  catch="$(sed -n 's/^# catch: //p' "$patch")"
  [ -n "$catch" ] || die "$patch has no '# catch:' line"
  (cd "$tree" && git apply "$here/$patch") || die "$patch does not apply"
  status=0
  build_and_test "$catch" || status=$?
  if [ "$status" -eq 0 ]; then
    echo "SURVIVED  $name  ($catch passed)"
    survivors=$((survivors + 1))
  elif [ "$status" -eq 2 ]; then
    die "$name does not build (a mutant must compile to count): see $work/build.log"
  else
    echo "killed    $name  ($(grep -cE '\*\*\*Failed|\*\*\*Exception|\*\*\*Timeout' "$work/ctest.log") failing in $catch)"
  fi
  (cd "$tree" && git apply -R "$here/$patch")
done
echo "== ${#mutants[@]} mutants, $survivors survived"
[ "$survivors" -eq 0 ]

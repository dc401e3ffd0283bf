#!/usr/bin/env bash
# Longer runs of the property tests (docs/testing.md, "Fuzzing"): each
# `#[test]` in crates/*/tests/prop_*.rs is one fuzz target. A target runs
# batches of fresh random cases until FUZZ_SECS seconds have passed, then
# stops by itself; a failure prints the smallest failing input.
#
#   scripts/fuzz.sh                      # every target, FUZZ_SECS each
#   scripts/fuzz.sh envelope_near_valid  # one target
#   scripts/fuzz.sh list                 # the targets
#
# FUZZ_SECS (default 60) bounds each target; PROPTEST_CASES sets the batch
# size (default 256). Stable Rust only: no nightly, no AFL++.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${FUZZ_SECS:-60}"
want="${1:-}"

# "<package> <test file> <target>" for every #[test] of the prop_* files.
targets() {
  for f in crates/*/tests/prop_*.rs; do
    local pkg test
    pkg="$(basename "$(dirname "$(dirname "$f")")")"
    test="$(basename "$f" .rs)"
    grep -A1 '^#\[test\]' "$f" | sed -n 's/^fn \([a-z0-9_]*\)().*/\1/p' |
      while read -r name; do echo "$pkg $test $name"; done
  done
}

if [ "$want" = list ]; then
  targets | awk '{print $3 "\t(" $1 ", tests/" $2 ".rs)"}'
  exit 0
fi

selected="$(targets | awk -v t="$want" 't == "" || $3 == t')"
if [ -z "$selected" ]; then
  echo "no fuzz target '$want' (scripts/fuzz.sh list)" >&2
  exit 2
fi

# Build every test binary first, so the time bound is spent fuzzing.
echo "$selected" | awk '{print "-p " $1 " --test " $2}' | sort -u | while read -r args; do
  # shellcheck disable=SC2086
  cargo test -q $args --no-run
done

failed=()
while read -r pkg test name; do
  echo "== $name ($pkg, ${secs}s)"
  # The runner stops itself after FUZZ_SECS; `timeout` is the backstop
  # (start-up plus up to a minute of shrinking a failure).
  if ! FUZZ_SECS="$secs" timeout --signal=KILL "$((secs + 180))" \
    cargo test -q -p "$pkg" --test "$test" -- --exact "$name" --nocapture; then
    failed+=("$name")
  fi
done <<<"$selected"

if [ "${#failed[@]}" -gt 0 ]; then
  echo "FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "all fuzz targets passed"

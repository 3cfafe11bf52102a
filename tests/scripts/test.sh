#!/usr/bin/env bash
# The whole test suite: what .ci/run and the README's test command run.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash tests/scripts/deps.sh
cargo build --locked -p cli
# Tests the host cannot run record themselves here ("SKIPPED: <reason>").
skips="${CARGO_TARGET_DIR:-target}/tmp/skipped.log"
rm -f "$skips"
# Everything on cryo's default platform (systrap where the host runs it,
# else ptrace; `cryo doctor` says which)...
cargo test --locked --workspace
# ...then the end-to-end tests again on every other platform, so both run
# in CI. A platform this host cannot run is recorded as skipped.
cryo=${CARGO_TARGET_DIR:-target}/debug/cryo
doctor=$("$cryo" doctor || true)
default=$(sed -n 's/^ok *\([a-z]*\) *platform .*, the default$/\1/p' <<<"$doctor")
for p in systrap ptrace; do
  [[ $p == "$default" ]] && continue
  if grep -q "^ok *$p *platform" <<<"$doctor"; then
    echo "end-to-end tests on the $p platform" >&2
    CRYO_TEST_PLATFORM=$p cargo test --locked -p cryo-tests
  else
    mkdir -p "$(dirname "$skips")"
    echo "SKIPPED: end-to-end tests on $p: $(grep "^[A-Za-z]* *$p *platform" <<<"$doctor")" >>"$skips"
  fi
done
if [ -s "$skips" ]; then
  echo "$(wc -l <"$skips") test(s) skipped:" >&2
  cat "$skips" >&2
fi
cargo fmt --all -- --check
cargo clippy --locked --workspace --all-targets -- -D warnings

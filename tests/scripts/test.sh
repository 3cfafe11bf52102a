#!/usr/bin/env bash
# The whole test suite: what .ci/run and the README's test command run.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash tests/scripts/deps.sh
cargo build --locked -p cli
# Tests the host cannot run record themselves here ("SKIPPED: <reason>").
skips="${CARGO_TARGET_DIR:-target}/tmp/skipped.log"
rm -f "$skips"
cargo test --locked --workspace
if [ -s "$skips" ]; then
  echo "$(wc -l <"$skips") test(s) skipped:" >&2
  cat "$skips" >&2
fi
cargo fmt --all -- --check
cargo clippy --locked --workspace --all-targets -- -D warnings

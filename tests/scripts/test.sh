#!/usr/bin/env bash
# The whole test suite: what .ci/run and the README's test command run.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash tests/scripts/deps.sh
cargo build --locked -p cli
cargo test --locked --workspace
cargo fmt --all -- --check
cargo clippy --locked --workspace --all-targets -- -D warnings

#!/usr/bin/env bash
# cryo's main job, end to end: build, run a program in the sandbox.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash tests/scripts/deps.sh
cargo build --locked --release -p cli
CRYO=target/release/cryo
echo "== cryo doctor"
$CRYO doctor
echo "== cryo do: uname -a inside the sandbox"
$CRYO do -- /bin/uname -a
echo "== cryo do: ls -la /"
$CRYO do -- /bin/ls -la /

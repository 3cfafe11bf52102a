#!/usr/bin/env bash
# cryo's main job, end to end: build, run a program in the sandbox,
# checkpoint it mid-run, restore it from the statefile in a new sandbox.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash tests/scripts/deps.sh
cargo build --locked --release -p cli
CRYO="$PWD/target/release/cryo"
WORK=$(mktemp -d /tmp/cryo-demo.XXXXXX)
ROOT="$WORK/root"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

echo "== cryo doctor"
"$CRYO" doctor

echo "== cryo do: uname -a inside the sandbox (its own kernel, release 4.4.0)"
"$CRYO" do -- /bin/uname -a

echo "== cryo do: a counting Python program, checkpointed after 2 s"
"$CRYO" --root "$ROOT" do --id demo -- /usr/bin/python3 -c '
import time
for i in range(1000):
    print("tick", i, flush=True)
    time.sleep(0.2)
' > "$WORK/before.log" &
sleep 2
"$CRYO" --root "$ROOT" checkpoint --image-path "$WORK/image" demo
wait
echo "before the checkpoint it printed:"; tail -n 3 "$WORK/before.log"

echo "== cryo inspect"
"$CRYO" inspect "$WORK/image/checkpoint.cryo"

echo "== cryo restore (from a moved image): it continues where it stopped"
mv "$WORK/image" "$WORK/moved-image"
timeout 2 "$CRYO" --root "$ROOT" restore --image-path "$WORK/moved-image" --id demo-restored > "$WORK/after.log" || true
head -n 3 "$WORK/after.log"

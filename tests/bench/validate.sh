#!/usr/bin/env bash
# The cost of restore's validation of hostile-sized statefiles: 100,000
# mappings, 60,000 pipes, 100,000 tmpfs files and a 2^40-entry argv claim,
# each judged by restore's whole validation (sentry/tests/hostile_records.rs
# prints a "bench:" line for each). These guard that judging stays
# n log n; they are timings, so they live here and not in the tests.
# Nothing to compare with: no other system validates a cryo statefile.
#   ROUNDS=5 PROFILE=dev|release bash tests/bench/validate.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ROUNDS=${ROUNDS:-5}
PROFILE=${PROFILE:-dev}
cd "$REPO_ROOT"
flags=()
[[ $PROFILE == release ]] && flags=(--release)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
log "building the hostile_records tests ($PROFILE)"
cargo test "${flags[@]}" -q -p sentry --test hostile_records --no-run 2>"$tmp/build" ||
	die "build failed: $(one_line "$(cat "$tmp/build")")"
for r in $(seq 1 "$ROUNDS"); do
	log "round $r/$ROUNDS"
	cargo test "${flags[@]}" -q -p sentry --test hostile_records -- \
		--test-threads=1 --nocapture judged_whole pipes_are_accepted \
		tmpfs_files_are_accepted 2_pow_40 2>&1 |
		grep -o "bench: .*" | sed "s/^bench: //" >>"$tmp/lines"
done
# "100000 mappings judged in 1.23s" -> the name before " in ", the time in ms.
awk -v dir="$tmp" '{
	t = $NF; v = t + 0
	if (t ~ /ms$/) ms = v; else if (t ~ /µs$|us$/) ms = v / 1000; else if (t ~ /ns$/) ms = v / 1e6; else ms = v * 1000
	name = $0; sub(/ in [^ ]*$/, "", name)
	key = name; gsub(/[^a-z0-9]+/, "_", key)
	print ms > (dir "/k." key); print name > (dir "/name." key)
}' "$tmp/lines"
echo "## restore's validation of large statefiles ($PROFILE build, $ROUNDS rounds, $(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg))"
echo
echo "| statefile | median ms | min–max ms |"
echo "|---|---:|---:|"
for k in "$tmp"/k.*; do
	read -r m lo hi < <(stats "$k")
	name=$(head -n1 "$tmp/name.${k##*/k.}")
	echo "| $name | $(fmt "$m") | $(fmt "$lo")–$(fmt "$hi") |"
done

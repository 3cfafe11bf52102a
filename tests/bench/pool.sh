#!/usr/bin/env bash
# Warm pools: how long a request waits for a ready python3, and what each
# pooled sandbox costs in memory.
#
#   sudo tests/bench/pool.sh > results.md
#
# The program is a python3 server that imports json, decimal, email,
# http.client, sqlite3, csv, datetime, hashlib and re, prints "ready" and then
# answers each line on stdin with one JSON line (the same server as
# tests/tests/pool.rs). It is checkpointed once, blocked in its read of
# stdin. Then, REPS times each, interleaved, the time from starting the
# command until the first answer arrives (the request is written at once):
#   take     `cryo pool take P` from a pool of SIZE sandboxes of the statefile
#            (waiting for the pool to be full again between takes);
#   restore  a fresh `cryo restore --image-path IMG`;
#   do       a cold `cryo do -- python3 -c SERVER` (python starts and imports);
#   runsc    a cold `runsc do -- python3 -c SERVER` (gVisor; skipped if there
#            is no runsc). runsc's restore is not measured: a `runsc do`
#            container cannot be checkpointed by name, and an OCI bundle of
#            the host's python is beyond this script.
# Memory: PSS (/proc/PID/smaps_rollup, summed over the sandbox process and
# every process under it: stubs, gofer) of each ready sandbox of the pool
# (from `cryo pool stats`) against one `cryo restore`d copy waiting for its
# first request.
#
# Needs: bash >= 5, python3, awk; root for runsc. Knobs (environment): CRYO
# (a cryo binary; default: target/release/cryo, built), RUNSC, REPS (10), SIZE
# (4), PLATFORM (cryo's default).
set -euo pipefail
export LC_ALL=C
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

REPS=${REPS:-10}
SIZE=${SIZE:-4}
W=$(mktemp -d /tmp/cryo-pool-bench.XXXXXX)
ROOT=$W/root
IMG=$W/img
mkdir -p "$ROOT"

find_cryo "$W/build.log"
[[ -n $CRYO_BIN ]] || die "$CRYO_FAIL"
PLAT=()
[[ -n ${PLATFORM:-} ]] && PLAT=(--platform "$PLATFORM")
cryo() { "$CRYO_BIN" --root "$ROOT" "${PLAT[@]}" "$@"; }

cleanup() {
	cryo pool destroy bench >/dev/null 2>&1 || true
	rm -rf "$W"
}
trap cleanup EXIT

SERVER='
import json, decimal, email, email.parser, email.policy, http.client, sqlite3, csv, datetime, hashlib, os, random, re, sys
sqlite3.connect(":memory:").execute("select 1")
print("ready", flush=True)
for line in sys.stdin:
    print(json.dumps({"echo": line.strip(), "urandom": os.urandom(8).hex(), "sum": str(sum(decimal.Decimal(1) / decimal.Decimal(k) for k in range(1, 8)))}), flush=True)
'

# pss_tree PID: PSS in KiB of PID and every process under it.
pss_tree() {
	local p total=0 kb
	local -a todo=("$1")
	declare -A kids=()
	for p in /proc/[0-9]*; do
		local st
		st=$(cat "$p/stat" 2>/dev/null) || continue
		st=${st##*) }
		read -r _ ppid _ <<<"$st"
		kids[$ppid]+=" ${p#/proc/}"
	done
	while ((${#todo[@]})); do
		p=${todo[0]}
		todo=("${todo[@]:1}")
		kb=$(awk '/^Pss:/ { print $2; exit }' "/proc/$p/smaps_rollup" 2>/dev/null || true)
		total=$((total + ${kb:-0}))
		# shellcheck disable=SC2206
		[[ -n ${kids[$p]:-} ]] && todo+=(${kids[$p]})
	done
	echo "$total"
}

# first_answer OUTFILE CMD...: starts CMD, writes one request, and appends to
# OUTFILE the milliseconds until its first JSON line (a "ready" line before it
# is skipped); then closes its stdin and waits for it. With MEASURE_PSS set,
# the PSS (KiB) of CMD's tree once it answered goes to $MEASURE_PSS.
first_answer() {
	local out=$1
	shift
	local t0 t1 line
	t0=$(now_us)
	coproc RUN { "$@" 2>>"$W/stderr.log"; }
	local pid=$RUN_PID
	echo "request" >&"${RUN[1]}"
	while read -r -t 120 line <&"${RUN[0]}"; do
		[[ $line == "{"* ]] && break
	done
	t1=$(now_us)
	[[ $line == "{"* ]] || die "$* did not answer (stderr: $(one_line "$(cat "$W/stderr.log")"))"
	if [[ -n ${MEASURE_PSS:-} ]]; then
		pss_tree "$pid" >"$MEASURE_PSS"
	fi
	exec {RUN[1]}>&-
	wait "$pid" || true
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", (b - a) / 1000 }' >>"$out"
}

log "checkpointing the server"
coproc SRV { cryo do --id srv -- /usr/bin/python3 -c "$SERVER" 2>>"$W/stderr.log"; }
SRV_PID_SAVED=$SRV_PID
read -r -t 120 first <&"${SRV[0]}" || die "the server did not start"
[[ $first == ready ]] || die "the server said $first"
cryo checkpoint --image-path "$IMG" srv >/dev/null || die "cryo checkpoint failed"
wait "$SRV_PID_SAVED" || true
statefile_mib=$(du -m "$IMG/checkpoint.cryo" | cut -f1)

log "creating a pool of $SIZE"
cryo pool create --image-path "$IMG" --size "$SIZE" bench || die "cryo pool create failed"
wait_full() {
	local i
	for i in $(seq 600); do
		cryo pool stats --format json bench | grep -q "\"ready\": $SIZE," && return 0
		sleep 0.1
	done
	die "the pool did not fill up"
}
wait_full
ready_pss_kib=$(cryo pool stats --format json bench | awk -F': ' '/"pss_bytes"/ { gsub(/,/, "", $2); print int($2 / 1024); exit }')
memfile_kib=$(cryo pool stats --format json bench | awk -F': ' '/"sandbox_memory_bytes"/ { gsub(/,/, "", $2); print int($2 / 1024); exit }')

RUNSC_OK=""
if [[ -x $RUNSC && $(id -u) -eq 0 ]]; then
	RUNSC_OK=1
fi

for r in $(seq "$REPS"); do
	log "round $r of $REPS"
	wait_full
	first_answer "$W/take.ms" "$CRYO_BIN" --root "$ROOT" "${PLAT[@]}" pool take bench
	if [[ $r -eq 1 ]]; then
		MEASURE_PSS=$W/restored.kib first_answer "$W/restore.ms" "$CRYO_BIN" --root "$ROOT" "${PLAT[@]}" restore --image-path "$IMG"
	else
		first_answer "$W/restore.ms" "$CRYO_BIN" --root "$ROOT" "${PLAT[@]}" restore --image-path "$IMG"
	fi
	first_answer "$W/do.ms" "$CRYO_BIN" --root "$ROOT" "${PLAT[@]}" do -- /usr/bin/python3 -c "$SERVER"
	if [[ -n $RUNSC_OK ]]; then
		first_answer "$W/runsc.ms" "$RUNSC" --network=none do -- /usr/bin/python3 -c "$SERVER"
	fi
done

read -r take_med take_min take_max <<<"$(stats "$W/take.ms")"
read -r rest_med rest_min rest_max <<<"$(stats "$W/restore.ms")"
read -r do_med do_min do_max <<<"$(stats "$W/do.ms")"
runsc_med="" runsc_min="" runsc_max=""
if [[ -s $W/runsc.ms ]]; then
	read -r runsc_med runsc_min runsc_max <<<"$(stats "$W/runsc.ms")"
fi
restored_kib=$(cat "$W/restored.kib")
per_pooled_kib=$((ready_pss_kib / SIZE))

echo "# Warm pool: take → first answer of a python3 server"
echo
echo "cryo: $CRYO_BIN ($CRYO_NOTE)${PLATFORM:+, --platform $PLATFORM}; $(nproc) CPUs; REPS=$REPS, pool of $SIZE; statefile ${statefile_mib} MiB; $(date -u +%Y-%m-%dT%H:%M:%SZ)"
[[ -n $RUNSC_OK ]] && echo "runsc: $("$RUNSC" --version 2>/dev/null | head -n1)"
echo
echo "| start → first answer | median ms | min | max | vs take |"
echo "| --- | ---: | ---: | ---: | ---: |"
printf '| cryo pool take | %s | %s | %s | 1x |\n' "$(fmt "$take_med")" "$(fmt "$take_min")" "$(fmt "$take_max")"
printf '| cryo restore | %s | %s | %s | %s |\n' "$(fmt "$rest_med")" "$(fmt "$rest_min")" "$(fmt "$rest_max")" "$(ratio "$rest_med" "$take_med")"
printf '| cryo do (cold) | %s | %s | %s | %s |\n' "$(fmt "$do_med")" "$(fmt "$do_min")" "$(fmt "$do_max")" "$(ratio "$do_med" "$take_med")"
if [[ -n $runsc_med ]]; then
	printf '| runsc do (cold) | %s | %s | %s | %s |\n' "$(fmt "$runsc_med")" "$(fmt "$runsc_min")" "$(fmt "$runsc_max")" "$(ratio "$runsc_med" "$take_med")"
else
	echo "| runsc do (cold) | – | – | – | not run (no runsc at $RUNSC, or not root) |"
fi
echo
echo "| memory (PSS, whole process tree) | MiB | vs one restored copy |"
echo "| --- | ---: | ---: |"
printf '| one cryo restore, waiting | %s | 1x |\n' "$(fmt "$(awk -v k="$restored_kib" 'BEGIN { print k / 1024 }')")"
printf '| pool of %s, ready | %s | %s |\n' "$SIZE" "$(fmt "$(awk -v k="$ready_pss_kib" 'BEGIN { print k / 1024 }')")" "$(ratio "$ready_pss_kib" "$restored_kib")"
printf '| per pooled sandbox | %s | %s |\n' "$(fmt "$(awk -v k="$per_pooled_kib" 'BEGIN { print k / 1024 }')")" "$(ratio "$per_pooled_kib" "$restored_kib")"
printf '| memory file of one sandbox (memfd blocks, its own in every sandbox) | %s | %s |\n' "$(fmt "$(awk -v k="$memfile_kib" 'BEGIN { print k / 1024 }')")" "$(ratio "$memfile_kib" "$restored_kib")"
echo
echo "PSS counts only pages mapped in a process: a memory-file page the Sentry wrote with pwrite(2) and no stub has mapped yet is in no process's PSS, so a held sandbox's PSS is below what it holds; the memory file's row is what each sandbox holds of its own (the pool shares no pages between its sandboxes yet)."

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
#            (waiting for the pool to be full again between takes), and from
#            a pool created with --share-memory (its take copies the memory in);
#   restore  a fresh `cryo restore --image-path IMG`;
#   do       a cold `cryo do -- python3 -c SERVER` (python starts and imports);
#   runsc    a cold `runsc do -- python3 -c SERVER` (gVisor; skipped if there
#            is no runsc). runsc's restore is not measured: a `runsc do`
#            container cannot be checkpointed by name, and an OCI bundle of
#            the host's python is beyond this script.
# Memory: PSS (/proc/PID/smaps_rollup) of the whole process tree plus the
# memfds it holds, each once (memory files, the pool's shared copy of the
# statefile's memory): the pool's daemon with its ready sandboxes against
# one `cryo restore`d copy waiting for its first request.
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
	cryo pool destroy shared >/dev/null 2>&1 || true
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

# memfd_kib PID...: KiB the memfds these processes hold (their blocks),
# each counted once however many hold it: the memory files and the pool's
# shared copy, which PSS misses where no process maps their pages.
memfd_kib() {
	local p l
	for p in "$@"; do
		for l in /proc/"$p"/fd/*; do
			[[ $(readlink "$l" 2>/dev/null) == /memfd:* ]] || continue
			stat -L -c '%i %b %B' "$l" 2>/dev/null
		done
	done | sort -u -k1,1 | awk '{ t += $2 * $3 } END { printf "%d\n", t / 1024 }'
}

# tree PID: PID and every process under it, one per line.
tree() {
	local p
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
		echo "$p"
		# shellcheck disable=SC2206
		[[ -n ${kids[$p]:-} ]] && todo+=(${kids[$p]})
	done
}

# total_kib PID: PSS of PID's tree plus the memfds it holds, in KiB.
total_kib() {
	local -a ps
	mapfile -t ps < <(tree "$1")
	echo $(($(pss_tree "$1") + $(memfd_kib "${ps[@]}")))
}

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
		total_kib "$pid" >"$MEASURE_PSS"
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

log "creating two pools of $SIZE (one with --share-memory)"
cryo pool create --image-path "$IMG" --size "$SIZE" bench || die "cryo pool create failed"
cryo pool create --image-path "$IMG" --size "$SIZE" --share-memory shared || die "cryo pool create --share-memory failed"
# wait_full POOL
wait_full() {
	local i
	for i in $(seq 600); do
		cryo pool stats --format json "$1" | grep -q "\"ready\": $SIZE," && return 0
		sleep 0.1
	done
	die "the pool $1 did not fill up"
}
# stat_of POOL KEY: a number from `pool stats --format json`.
stat_of() { cryo pool stats --format json "$1" | awk -F': ' -v k="\"$2\"" '$1 ~ k { gsub(/,/, "", $2); print $2; exit }'; }
wait_full bench
wait_full shared
pool_kib=$(total_kib "$(stat_of bench daemon_pid)")
spool_kib=$(total_kib "$(stat_of shared daemon_pid)")
shared_kib=$(($(stat_of shared shared_memory_bytes) / 1024))

RUNSC_OK=""
if [[ -x $RUNSC && $(id -u) -eq 0 ]]; then
	RUNSC_OK=1
fi

for r in $(seq "$REPS"); do
	log "round $r of $REPS"
	wait_full bench
	first_answer "$W/take.ms" "$CRYO_BIN" --root "$ROOT" "${PLAT[@]}" pool take bench
	wait_full shared
	first_answer "$W/stake.ms" "$CRYO_BIN" --root "$ROOT" "${PLAT[@]}" pool take shared
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
read -r stake_med stake_min stake_max <<<"$(stats "$W/stake.ms")"
read -r rest_med rest_min rest_max <<<"$(stats "$W/restore.ms")"
read -r do_med do_min do_max <<<"$(stats "$W/do.ms")"
runsc_med="" runsc_min="" runsc_max=""
if [[ -s $W/runsc.ms ]]; then
	read -r runsc_med runsc_min runsc_max <<<"$(stats "$W/runsc.ms")"
fi
restored_kib=$(cat "$W/restored.kib")
per_pooled_kib=$((pool_kib / SIZE))
per_spooled_kib=$(((spool_kib - shared_kib) / SIZE))

mib_of() { fmt "$(awk -v k="$1" 'BEGIN { print k / 1024 }')"; }

echo "# Warm pool: take → first answer of a python3 server"
echo
echo "cryo: $CRYO_BIN ($CRYO_NOTE)${PLATFORM:+, --platform $PLATFORM}; $(nproc) CPUs; REPS=$REPS, pool of $SIZE; statefile ${statefile_mib} MiB; $(date -u +%Y-%m-%dT%H:%M:%SZ)"
[[ -n $RUNSC_OK ]] && echo "runsc: $("$RUNSC" --version 2>/dev/null | head -n1)"
echo
echo "| start → first answer | median ms | min | max | vs take |"
echo "| --- | ---: | ---: | ---: | ---: |"
printf '| cryo pool take | %s | %s | %s | 1x |\n' "$(fmt "$take_med")" "$(fmt "$take_min")" "$(fmt "$take_max")"
printf '| cryo pool take, --share-memory | %s | %s | %s | %s |\n' "$(fmt "$stake_med")" "$(fmt "$stake_min")" "$(fmt "$stake_max")" "$(ratio "$stake_med" "$take_med")"
printf '| cryo restore | %s | %s | %s | %s |\n' "$(fmt "$rest_med")" "$(fmt "$rest_min")" "$(fmt "$rest_max")" "$(ratio "$rest_med" "$take_med")"
printf '| cryo do (cold) | %s | %s | %s | %s |\n' "$(fmt "$do_med")" "$(fmt "$do_min")" "$(fmt "$do_max")" "$(ratio "$do_med" "$take_med")"
if [[ -n $runsc_med ]]; then
	printf '| runsc do (cold) | %s | %s | %s | %s |\n' "$(fmt "$runsc_med")" "$(fmt "$runsc_min")" "$(fmt "$runsc_max")" "$(ratio "$runsc_med" "$take_med")"
else
	echo "| runsc do (cold) | – | – | – | not run (no runsc at $RUNSC, or not root) |"
fi
echo
echo "Memory: PSS of the whole process tree plus the memfds it holds (memory files, the pool's shared copy; PSS alone misses memfd pages no process maps)."
echo
echo "| memory | MiB | vs one restored copy |"
echo "| --- | ---: | ---: |"
printf '| one cryo restore, waiting for its first request | %s | 1x |\n' "$(mib_of "$restored_kib")"
printf '| a pool: daemon and %s ready sandboxes | %s | %s |\n' "$SIZE" "$(mib_of "$pool_kib")" "$(ratio "$pool_kib" "$restored_kib")"
printf '| per ready sandbox | %s | %s |\n' "$(mib_of "$per_pooled_kib")" "$(ratio "$per_pooled_kib" "$restored_kib")"
printf '| a --share-memory pool: daemon and %s ready sandboxes | %s | %s |\n' "$SIZE" "$(mib_of "$spool_kib")" "$(ratio "$spool_kib" "$restored_kib")"
printf '| of which the shared copy of the statefile memory | %s | %s |\n' "$(mib_of "$shared_kib")" "$(ratio "$shared_kib" "$restored_kib")"
printf '| per ready sandbox, beyond the shared copy | %s | %s |\n' "$(mib_of "$per_spooled_kib")" "$(ratio "$per_spooled_kib" "$restored_kib")"

#!/usr/bin/env bash
# The stall of `checkpoint --leave-running`: how long a running program stops
# while it is checkpointed and left running, cryo (both platforms) against
# gVisor's runsc (systrap and ptrace) in one interleaved run.
#
#   sudo tests/bench/freeze.sh > freeze.md
#
# The guest is tests/bench/guests/stall.c: it fills SIZE MiB with
# pseudo-random words, then loops writing one word of the next page and
# reading CLOCK_MONOTONIC, and every 100 ms prints the longest gap between
# two iterations in that window (max_us) and how many iterations it ran.
# For each size (64 and 512 MiB), repetition and system it:
#   1. starts the guest and waits for WARM windows (1 s),
#   2. runs `checkpoint --leave-running` (timed: the command's wall time),
#      noting how many windows the guest had printed before and after,
#   3. waits for 5 more windows, then stops the guest;
# the stall is the largest max_us of the windows from the one the command
# began in to the one after it returned; the baseline, the largest of the
# windows before the command (the host's own noise: other processes, the
# sandbox's timers); progress, the iterations per window while the command
# ran against those before it (how much the save slowed the program down).
#
#   cryo   cryo --root R [--platform P] do --id ID -- GUEST SIZE >out &
#          cryo --root R checkpoint --leave-running --image-path IMG ID
#   runsc  an OCI bundle (rootfs: the static guest), `runsc run --detach`,
#          `runsc checkpoint --leave-running --image-path IMG ID`; every call
#          with --root TMP --network=none --platform=P.
#
# Needs: root, gcc with static glibc, the anchors for runsc
# (shared/anchors/install-anchors -> /opt/cryo-anchors; without them the
# runsc rows say so). Knobs (environment): CRYO, ANCHORS, RUNSC, SIZES
# ("64 512"), REPS (5), SYSTEMS ("cryo-systrap cryo-ptrace runsc-systrap
# runsc-ptrace"), CRYO_CKPT_FLAGS, RUNSC_CKPT_FLAGS, START_TIMEOUT (120 s),
# OP_TIMEOUT (180 s).
set -euo pipefail
export LC_ALL=C
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

read -r -a SIZES <<<"${SIZES:-64 512}"
REPS=${REPS:-5}
read -r -a SYSTEMS <<<"${SYSTEMS:-cryo-systrap cryo-ptrace runsc-systrap runsc-ptrace}"
read -r -a CRYO_CKPT_FLAGS <<<"${CRYO_CKPT_FLAGS:-}"
read -r -a RUNSC_CKPT_FLAGS <<<"${RUNSC_CKPT_FLAGS:-}"
START_TIMEOUT=${START_TIMEOUT:-120}
OP_TIMEOUT=${OP_TIMEOUT:-180}
WARM=10  # windows before the checkpoint
AFTER=5  # windows after it returned

need_root
for s in "${SIZES[@]}"; do [[ $s =~ ^[0-9]+$ && $s -ge 1 ]] || die "bad size '$s' in SIZES"; done

W=$(mktemp -d /tmp/cryo-bench-freeze.XXXXXX)
chmod 755 "$W"
GUEST=$W/stall
RUNSC_ROOT=$W/runsc-root
CRYO_ROOT=$W/cryo-root
mkdir -p "$W/res"

declare -A CHILD=()      # our background children
declare -A RUNSC_LIVE=() # runsc container id -> platform
declare -A CRYO_LIVE=()  # cryo container ids

stop_pid() {
	local pid=$1 i
	if [[ -e /proc/$pid ]]; then
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < 20; i++)); do
			[[ -e /proc/$pid ]] || break
			[[ $(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null) != Z ]] || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	if [[ -n ${CHILD[$pid]:-} ]]; then
		wait "$pid" 2>/dev/null || true
		unset "CHILD[$pid]"
	fi
}

is_guest() { [[ $(readlink "/proc/$1/exe" 2>/dev/null) == "$GUEST" ]]; }

cleanup() {
	local rc=$? id pid
	trap - EXIT INT TERM
	for id in "${!CRYO_LIVE[@]}"; do
		timeout 10 "$CRYO_BIN" --root "$CRYO_ROOT" kill "$id" KILL >/dev/null 2>&1 || true
	done
	for id in "${!RUNSC_LIVE[@]}"; do
		timeout 20 "$RUNSC" --root "$RUNSC_ROOT" --network=none "--platform=${RUNSC_LIVE[$id]}" kill "$id" KILL >/dev/null 2>&1 || true
		timeout 20 "$RUNSC" --root "$RUNSC_ROOT" --network=none "--platform=${RUNSC_LIVE[$id]}" delete -force "$id" >/dev/null 2>&1 || true
	done
	for pid in "${!CHILD[@]}"; do stop_pid "$pid"; done
	# Any process still running this run's own guest binary was started by it.
	for pid in /proc/[0-9]*; do
		pid=${pid#/proc/}
		if is_guest "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
	done
	rm -rf "$W"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "work dir $W"
build_static "$GUEST" "$BENCH_DIR/guests/stall.c"

declare -A FAIL=()
declare -a NOTES=()
CRYO_BIN="" CRYO_FAIL="" CRYO_NOTE=""
need_cryo=0
for s in "${SYSTEMS[@]}"; do
	case $s in
	cryo-systrap | cryo-ptrace) need_cryo=1 ;;
	runsc-systrap | runsc-ptrace)
		[[ -x $RUNSC ]] || FAIL[$s]="no runsc at $RUNSC (run shared/anchors/install-anchors as root)"
		;;
	*) die "unknown system $s (known: cryo-systrap cryo-ptrace runsc-systrap runsc-ptrace)" ;;
	esac
done
if ((need_cryo)); then
	find_cryo "$W/cargo-build.log"
	if [[ -n $CRYO_FAIL ]]; then
		for s in cryo-systrap cryo-ptrace; do FAIL[$s]=$CRYO_FAIL; done
	fi
fi

# The runsc bundle: rootfs holds only the static guest.
B=$W/bundle
mkdir -p "$B/rootfs"
cp "$GUEST" "$B/rootfs/stall"

# windows LOG: how many complete window lines LOG holds.
windows() { grep -c '^w=[0-9]* max_us=[0-9]* iters=[0-9]*$' "$1" 2>/dev/null || true; }

# wait_windows LOG N: until LOG has N windows, or START_TIMEOUT.
wait_windows() {
	local deadline=$((SECONDS + START_TIMEOUT)) c
	while :; do
		c=$(windows "$1")
		((${c:-0} < $2)) || return 0
		if ((SECONDS > deadline)); then
			REASON="guest printed ${c:-0} of $2 windows in ${START_TIMEOUT}s: $(one_line "$(cat "$1" "$3" 2>/dev/null)")"
			return 1
		fi
		sleep 0.02
	done
}

# measure LOG ERR CMD...: steps 2 and 3 (the guest runs, logging to LOG);
# sets STALL_MS BASE_MS CKPT_MS PROGRESS, or REASON and returns 1.
measure() {
	local logf=$1 errf=$2 n0 n1 t0 t1 rc=0
	shift 2
	wait_windows "$logf" "$WARM" "$errf" || return 1
	n0=$(windows "$logf")
	t0=${EPOCHREALTIME/./}
	timeout -k 5 "$OP_TIMEOUT" "$@" </dev/null >"$W/ckpt.log" 2>&1 || rc=$?
	t1=${EPOCHREALTIME/./}
	n1=$(windows "$logf")
	if ((rc != 0)); then
		REASON="checkpoint exit $rc: $(one_line "$(cat "$W/ckpt.log")")"
		return 1
	fi
	[[ -n $(find "$W/img" -type f -size +0 -print -quit 2>/dev/null) ]] || {
		REASON="checkpoint succeeded but wrote no image"
		return 1
	}
	wait_windows "$logf" "$((n1 + AFTER))" "$errf" || return 1
	CKPT_MS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) / 1000 }')
	# Windows are numbered from 0 in the order printed: n0 (0-based) is the
	# first that can hold the stall, n1 + 1 the last.
	# The first three windows of the command hold the freeze itself when
	# the program goes on at once (cryo); the rest, the save beside it.
	read -r STALL_MS BASE_MS PROGRESS FIRST_MS < <(grep '^w=' "$logf" | awk -F'[= ]' -v a="$n0" -v b="$((n1 + 1))" '
		{ i = NR - 1; g = $4 / 1000; k = $6 }
		i >= 2 && i < a { if (g > base) base = g; bi += k; bn++ }
		i >= a && i <= b { if (g > stall) stall = g; si += k; sn++ }
		i >= a && i <= a + 2 && i <= b { if (g > first) first = g }
		END { printf "%.2f %.2f %.0f %.2f\n", stall, base, (bn && bi) ? 100 * (si / sn) / (bi / bn) : 0, first }')
}

bench_cryo() {
	local plat=$1 size=$2 rep=$3 id="f-$1-$2-$3" pid
	local out=$W/cryo.out err=$W/cryo.err
	rm -rf "$W/img" "$out" "$err"
	# The Sentry logs how long it held the tasks (stall_us) and what it
	# copied aside (peak_bytes).
	CRYO_LOG=sentry::state::save=info "$CRYO_BIN" --root "$CRYO_ROOT" --platform "$plat" "do" --id "$id" -- "$GUEST" "$size" </dev/null >>"$out" 2>>"$err" &
	pid=$!
	CHILD[$pid]=1
	CRYO_LIVE[$id]=1
	local ok=0
	measure "$out" "$err" "$CRYO_BIN" --root "$CRYO_ROOT" checkpoint --leave-running \
		--image-path "$W/img" "${CRYO_CKPT_FLAGS[@]}" "$id" || ok=1
	if ((ok == 0)) && ! kill -0 "$pid" 2>/dev/null; then
		REASON="the sandbox did not keep running"
		ok=1
	fi
	timeout 10 "$CRYO_BIN" --root "$CRYO_ROOT" kill "$id" KILL >/dev/null 2>&1 || true
	stop_pid "$pid"
	unset "CRYO_LIVE[$id]"
	rm -rf "$W/img"
	local log
	log=$(sed 's/\x1b\[[0-9;]*m//g' "$err")
	SENTRY_MS=$(grep -o 'stall_us=[0-9]*' <<<"$log" | tail -n1 | cut -d= -f2 | awk '{ printf "%.2f", $1 / 1000 }')
	PEAK_MIB=$(grep -o 'peak_bytes: [0-9]*' <<<"$log" | tail -n1 | awk '{ printf "%.1f", $2 / 1048576 }')
	return $ok
}

bench_runsc() {
	local plat=$1 size=$2 rep=$3 id="f-r$1-$2-$3" rc=0 ok=0
	local out=$W/runsc.out err=$W/runsc.err
	local -a g=(--root "$RUNSC_ROOT" --network=none "--platform=$plat")
	rm -rf "$W/img" "$out" "$err" "$B/config.json"
	(cd "$B" && "$RUNSC" spec -- /stall "$size") >/dev/null 2>&1 || {
		REASON="runsc spec failed"
		return 1
	}
	RUNSC_LIVE[$id]=$plat
	timeout -k 5 "$OP_TIMEOUT" "$RUNSC" "${g[@]}" run --detach --bundle "$B" "$id" </dev/null >>"$out" 2>>"$err" || rc=$?
	if ((rc != 0)); then
		REASON="runsc run exit $rc: $(one_line "$(cat "$err")")"
		ok=1
	else
		measure "$out" "$err" "$RUNSC" "${g[@]}" checkpoint --leave-running \
			--image-path "$W/img" "${RUNSC_CKPT_FLAGS[@]}" "$id" || ok=1
	fi
	timeout 20 "$RUNSC" "${g[@]}" kill "$id" KILL >/dev/null 2>&1 || true
	timeout 20 "$RUNSC" "${g[@]}" delete -force "$id" >/dev/null 2>&1 || true
	unset "RUNSC_LIVE[$id]"
	rm -rf "$W/img"
	return $ok
}

for size in "${SIZES[@]}"; do
	for ((rep = 1; rep <= REPS; rep++)); do
		for s in "${SYSTEMS[@]}"; do
			[[ -z ${FAIL[$s]:-} && -z ${FAIL[$s.$size]:-} ]] || continue
			log "$size MiB, run $rep/$REPS: $s"
			REASON="" STALL_MS="" BASE_MS="" CKPT_MS="" PROGRESS="" SENTRY_MS="" PEAK_MIB="" FIRST_MS=""
			ok=1
			case $s in
			cryo-*) bench_cryo "${s#cryo-}" "$size" "$rep" || ok=0 ;;
			runsc-*) bench_runsc "${s#runsc-}" "$size" "$rep" || ok=0 ;;
			esac
			if ((ok)); then
				r=$W/res/$s.$size
				echo "$STALL_MS" >>"$r.stall"
				echo "$BASE_MS" >>"$r.base"
				echo "$CKPT_MS" >>"$r.ckpt"
				echo "$PROGRESS" >>"$r.progress"
				[[ $s != cryo-* ]] || echo "$FIRST_MS" >>"$r.first"
				[[ -z $SENTRY_MS ]] || echo "$SENTRY_MS" >>"$r.sentry"
				[[ -z $PEAK_MIB ]] || echo "$PEAK_MIB" >>"$r.peak"
			else
				log "  failed: $REASON"
				FAIL[$s.$size]=$REASON
			fi
		done
	done
done

# --- report ---------------------------------------------------------------------------
cell() {
	local st
	st=$(stats "$1")
	if [[ -z $st ]]; then
		printf '–'
		return
	fi
	read -r m lo hi <<<"$st"
	printf '%s (%s–%s)' "$(fmt "$m" "${2:-1}")" "$(fmt "$lo" "${2:-1}")" "$(fmt "$hi" "${2:-1}")"
}
median() { stats "$1" | awk '{ print $1 }'; }

echo "# cryo checkpoint --leave-running stall"
echo
echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ); host: $(uname -sr), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
if [[ -x $RUNSC ]]; then anchors_versions | grep '^runsc' | sed 's/^/- /'; fi
[[ -z $CRYO_BIN ]] || echo "- cryo: $CRYO_BIN ($CRYO_NOTE)"
echo "- guest: tests/bench/guests/stall.c (static), SIZE MiB of random words, one word of the next page written per iteration; $REPS runs per system and size, systems interleaved"
echo "- cells: median (min–max); stall: the longest gap between two iterations of the guest's loop in the windows the checkpoint ran in; baseline: the longest in the 0.8 s before it; progress: iterations per 100 ms while the checkpoint ran, % of before; cryo only: at the freeze, the longest gap in the command's first three windows (the freeze and the first faults after it; for runsc the pause spans the whole command), Sentry hold, how long the Sentry held the tasks (its log's stall_us: stop, kernel state, freeze), copied aside, the most memory its side buffer held"
echo
echo "| guest | system | stall (ms) | baseline (ms) | at the freeze (ms) | Sentry hold (ms) | checkpoint command (ms) | progress meanwhile | copied aside (MiB) |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
for size in "${SIZES[@]}"; do
	for s in "${SYSTEMS[@]}"; do
		r=$W/res/$s.$size
		why=${FAIL[$s]:-${FAIL[$s.$size]:-}}
		if [[ -n $why && ! -s $r.stall ]]; then
			echo "| $size MiB | $s | failed: $(one_line "$why") | | | | | | |"
			continue
		fi
		echo "| $size MiB | $s | $(cell "$r.stall" 2) | $(cell "$r.base" 2) | $(cell "$r.first" 2) | $(cell "$r.sentry" 2) | $(cell "$r.ckpt") | $(cell "$r.progress" 0)% | $(cell "$r.peak") |"
		[[ -z $why ]] || NOTES+=("$s $size MiB: a run failed: $why")
	done
done
echo
echo "| guest | stall: cryo-systrap / runsc-systrap | cryo-ptrace / runsc-ptrace | cryo-systrap / runsc-ptrace |"
echo "|---|---:|---:|---:|"
for size in "${SIZES[@]}"; do
	m() { [[ -s $W/res/$1.$size.stall ]] && median "$W/res/$1.$size.stall" || true; }
	echo "| $size MiB | $(ratio "$(m cryo-systrap)" "$(m runsc-systrap)") | $(ratio "$(m cryo-ptrace)" "$(m runsc-ptrace)") | $(ratio "$(m cryo-systrap)" "$(m runsc-ptrace)") |"
done
echo
echo "Ratios are median / median; lower is better for cryo. \"–\": a system has no result."
if ((${#NOTES[@]})); then
	echo
	echo "Notes:"
	for n in "${NOTES[@]}"; do echo "- $n"; done
fi

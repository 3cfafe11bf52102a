#!/usr/bin/env bash
# Checkpoint and restore: cryo against gVisor's runsc (systrap and ptrace
# platforms) and CRIU (the same guest run natively), in one interleaved run.
#
#   sudo tests/bench/checkpoint.sh > results.md
#
# The guest is tests/guests/ckpt_counter.c: it fills SIZE MiB (a quarter of the
# pages zero), then every 100 ms recomputes a checksum over all of it and
# prints "counter=N ...". For each system, guest size (64 and 512 MiB) and
# repetition it:
#   1. starts the guest, waits until it has printed 3 counters,
#   2. checkpoints it (the guest exits; timed: the checkpoint command's wall time),
#   3. measures the statefile (apparent size of the whole image directory),
#   4. restores it and measures the time from starting the restore command
#      until the restored guest's output grows (polled every 1 ms by
#      tools/waitgrow.c), then kills it.
# Step 4 includes what is left of the guest's 100 ms sleep and one checksum
# pass over the buffer (the same work on every system). The first counter
# printed after restore must be the last one before the checkpoint plus one;
# a mismatch is listed under "Notes".
#
# How each system is driven (found by experiment, runsc 0.0~20240729, CRIU 4.1.1):
#   cryo   cryo --root R do --id ID -- GUEST SIZE >out &
#          cryo --root R checkpoint --image-path IMG ID     (the sandbox exits)
#          cryo --root R restore --image-path IMG --id ID2 >out2 &  (foreground)
#   runsc  `runsc do` containers cannot be named, so an OCI bundle is built:
#          rootfs = the static guest + /etc/passwd, config.json from `runsc spec`
#          and terminal false. `runsc run --detach ... >out` hands its stdout to
#          the container, which keeps it after runsc exits; `runsc checkpoint
#          --image-path IMG ID` (default compression flate-best-speed; the
#          sandbox exits but the container stays listed, so `delete -force`);
#          `runsc restore --detach --image-path IMG --bundle B ID2 >>out2` gives
#          the restored guest restore's stdout the same way.
#   criu   the guest runs natively under setsid (its own session, stdio on
#          files: no --shell-job needed); `criu dump -t PID -D IMG` (kills it),
#          `criu restore -D IMG -d` (re-opens the same out file, which must not
#          have changed size; the guest keeps its pid).
#
# Needs: root, gcc with static glibc, the anchors (shared/anchors/install-anchors
# -> /opt/cryo-anchors). Knobs (environment): CRYO, ANCHORS, RUNSC, CRIU,
# SIZES ("64 512"), PROCS (1: processes in the guest's tree, e.g. 10), REPS (3), SYSTEMS ("cryo cryo-unconfined runsc-systrap runsc-ptrace criu";
# cryo-unconfined is cryo with CRYO_UNCONFINED=1: the Sentry without its
# namespaces, capability drop and seccomp filter, for the cost of those),
# RUNSC_CKPT_FLAGS (extra `runsc checkpoint` flags, e.g. "--compression=none"),
# CRYO_CKPT_FLAGS (extra `cryo checkpoint` flags), START_TIMEOUT (120 s),
# OP_TIMEOUT (180 s per checkpoint or restore).
set -euo pipefail
export LC_ALL=C
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

read -r -a SIZES <<<"${SIZES:-64 512}"
REPS=${REPS:-3}
PROCS=${PROCS:-1}
[[ $PROCS =~ ^[0-9]+$ && $PROCS -ge 1 && $PROCS -le 64 ]] || die "bad PROCS '$PROCS' (1 to 64)"
read -r -a SYSTEMS <<<"${SYSTEMS:-cryo cryo-unconfined runsc-systrap runsc-ptrace criu}"
read -r -a RUNSC_CKPT_FLAGS <<<"${RUNSC_CKPT_FLAGS:-}"
read -r -a CRYO_CKPT_FLAGS <<<"${CRYO_CKPT_FLAGS:-}"
START_TIMEOUT=${START_TIMEOUT:-120}
OP_TIMEOUT=${OP_TIMEOUT:-180}
COUNTERS_BEFORE=3

need_root
[[ -x $RUNSC ]] || die "no runsc at $RUNSC: run shared/anchors/install-anchors as root first"
[[ -x $CRIU ]] || die "no criu at $CRIU: run shared/anchors/install-anchors as root first"
for s in "${SIZES[@]}"; do [[ $s =~ ^[0-9]+$ ]] || die "bad size '$s' in SIZES"; done

W=$(mktemp -d /tmp/cryo-bench-ckpt.XXXXXX)
chmod 755 "$W"
GUEST=$W/ckpt_counter
RUNSC_ROOT=$W/runsc-root
CRYO_ROOT=$W/cryo-root
mkdir -p "$W/res"

# --- what is running, so that nothing is left behind ------------------------------
declare -A CHILD=()      # pids of our background children (not yet reaped)
declare -A FOREIGN=()    # pids of CRIU-restored guests (children of init)
declare -A RUNSC_LIVE=() # runsc container id -> platform
declare -A CRYO_LIVE=()  # cryo container ids

# stop_pid PID: TERM, up to 2 s, then KILL; reaps it if it is our child.
stop_pid() {
	local pid=$1 i
	if [[ -e /proc/$pid ]]; then
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < 20; i++)); do
			[[ -e /proc/$pid ]] || break
			# A zombie child is gone for our purposes; wait reaps it below.
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

# is_guest PID: PID is (still) a process running our guest binary.
is_guest() { [[ $(readlink "/proc/$1/exe" 2>/dev/null) == "$GUEST" ]]; }

reap_all() {
	local id pid
	for id in "${!CRYO_LIVE[@]}"; do
		timeout 10 "$CRYO_BIN" --root "$CRYO_ROOT" kill "$id" KILL >/dev/null 2>&1 || true
		unset "CRYO_LIVE[$id]"
	done
	for id in "${!RUNSC_LIVE[@]}"; do
		timeout 20 "$RUNSC" --root "$RUNSC_ROOT" --network=none "--platform=${RUNSC_LIVE[$id]}" kill "$id" KILL >/dev/null 2>&1 || true
		timeout 20 "$RUNSC" --root "$RUNSC_ROOT" --network=none "--platform=${RUNSC_LIVE[$id]}" delete -force "$id" >/dev/null 2>&1 || true
		unset "RUNSC_LIVE[$id]"
	done
	for pid in "${!CHILD[@]}"; do stop_pid "$pid"; done
	for pid in "${!FOREIGN[@]}"; do
		if is_guest "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
		unset "FOREIGN[$pid]"
	done
}

cleanup() {
	local rc=$? id pid
	trap - EXIT INT TERM
	reap_all
	# Containers runsc still lists under our private root (e.g. a restore that
	# timed out before we learnt its id).
	if [[ -d $RUNSC_ROOT ]]; then
		for id in $("$RUNSC" --root "$RUNSC_ROOT" list -quiet 2>/dev/null); do
			log "cleanup: runsc container $id was left: deleting it"
			timeout 20 "$RUNSC" --root "$RUNSC_ROOT" kill "$id" KILL >/dev/null 2>&1 || true
			timeout 20 "$RUNSC" --root "$RUNSC_ROOT" delete -force "$id" >/dev/null 2>&1 || true
		done
	fi
	# Last resort: any process still running our own guest binary (a path
	# unique to this run) was started by this run.
	for pid in /proc/[0-9]*; do
		pid=${pid#/proc/}
		if is_guest "$pid"; then
			log "cleanup: guest process $pid was left: killing it"
			kill -KILL "$pid" 2>/dev/null || true
		fi
	done
	rm -rf "$W"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- build --------------------------------------------------------------------------
log "work dir $W"
build_static "$GUEST" "$REPO_ROOT/tests/guests/ckpt_counter.c"
gcc -O2 -Wall -Wextra -o "$W/waitgrow" "$BENCH_DIR/tools/waitgrow.c" || die "cannot build tools/waitgrow.c"

declare -A FAIL=()  # FAIL[system] or FAIL[system.size]: why it did not run
declare -a NOTES=()
CRYO_BIN=""
CRYO_FAIL=""
CRYO_NOTE=""
for s in "${SYSTEMS[@]}"; do
	case $s in
	cryo | cryo-unconfined)
		[[ -n $CRYO_BIN || -n $CRYO_FAIL ]] || find_cryo "$W/cargo-build.log"
		[[ -z $CRYO_FAIL ]] || FAIL[$s]=$CRYO_FAIL
		;;
	runsc-systrap | runsc-ptrace | criu) ;;
	*) die "unknown system $s (known: cryo cryo-unconfined runsc-systrap runsc-ptrace criu)" ;;
	esac
done

# runsc bundles, one per size: rootfs holds only the static guest and /etc/passwd.
for size in "${SIZES[@]}"; do
	b=$W/bundle-$size
	mkdir -p "$b/rootfs/etc"
	cp "$GUEST" "$b/rootfs/ckpt_counter"
	printf 'root:x:0:0:root:/root:/sbin/nologin\n' >"$b/rootfs/etc/passwd"
	(cd "$b" && "$RUNSC" spec -- /ckpt_counter "$size" /etc/passwd -1 "$PROCS") || die "runsc spec failed"
	sed -i 's/"terminal": true/"terminal": false/' "$b/config.json"
	# (this runsc's spec has no "terminal" key: false is the default)
	! grep -q '"terminal": *true' "$b/config.json" || die "could not set terminal=false in $b/config.json"
done

# --- one measurement's steps ----------------------------------------------------------
# Each bench_* function sets CKPT_MS, SIZE_B, RESTORE_MS, LAST_BEFORE,
# FIRST_AFTER on success, or REASON and returns 1.

# wait_counters LOG N [PID]: until LOG has N counter lines; fails when PID
# (if given) exits first or after START_TIMEOUT.
wait_counters() {
	local logf=$1 n=$2 pid=${3:-} deadline=$((SECONDS + START_TIMEOUT)) c
	while :; do
		# (LOG may not exist yet: the background job opens it itself.)
		c=$(grep -c '^counter=' "$logf" 2>/dev/null || true)
		((${c:-0} < n)) || break
		if [[ -n $pid ]] && { [[ ! -e /proc/$pid ]] || [[ $(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null) == Z ]]; }; then
			REASON="guest exited before printing $n counters"
			return 1
		fi
		if ((SECONDS > deadline)); then
			REASON="guest printed fewer than $n counters in ${START_TIMEOUT}s"
			return 1
		fi
		sleep 0.05
	done
}

last_counter() { sed -n 's/^counter=\([0-9]*\) .*/\1/p' "$1" | tail -n1; }

# timed_checkpoint ERRFILE CMD...: runs CMD (with OP_TIMEOUT), sets CKPT_MS.
timed_checkpoint() {
	local errf=$1 t0 t1 rc=0
	shift
	t0=${EPOCHREALTIME/./}
	timeout -k 5 "$OP_TIMEOUT" "$@" </dev/null >"$errf" 2>&1 || rc=$?
	t1=${EPOCHREALTIME/./}
	if ((rc != 0)); then
		REASON="checkpoint exit $rc: $(one_line "$(cat "$errf")")"
		return 1
	fi
	CKPT_MS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) / 1000 }')
}

# image_size DIR: apparent bytes of everything in DIR; fails if there is nothing.
image_size() {
	SIZE_B=$(du -s --apparent-size -B1 "$1" 2>/dev/null | cut -f1)
	if [[ -z $SIZE_B ]] || [[ -z $(find "$1" -type f -size +0 -print -quit) ]]; then
		REASON="checkpoint succeeded but wrote no image in $1"
		return 1
	fi
}

# timed_restore DETACHED WATCH WATCHSIZE STDOUT STDERR CMD...: starts CMD in the
# background and sets RESTORE_MS to the time until WATCH grows beyond
# WATCHSIZE bytes. DETACHED=1: CMD returns once the guest runs (runsc
# --detach, criu -d), and its failure fails the restore; DETACHED=0: CMD
# stays in the foreground while the guest runs (cryo): RESTORE_PID is left
# running for the caller to stop.
timed_restore() {
	local detached=$1 watch=$2 wsize=$3 so=$4 se=$5 t0 t1 wpid done_pid rc=0 wrc=0
	shift 5
	t0=${EPOCHREALTIME/./}
	if ((detached)); then
		timeout -k 5 "$OP_TIMEOUT" "$@" </dev/null >>"$so" 2>>"$se" &
	else
		"$@" </dev/null >>"$so" 2>>"$se" &
	fi
	RESTORE_PID=$!
	CHILD[$RESTORE_PID]=1
	"$W/waitgrow" "$watch" "$wsize" "$((OP_TIMEOUT * 1000))" >"$W/waitgrow.out" &
	wpid=$!
	CHILD[$wpid]=1
	wait -n -p done_pid "$wpid" "$RESTORE_PID" || rc=$?
	unset "CHILD[$done_pid]"
	if [[ $done_pid == "$RESTORE_PID" ]]; then
		if ((rc != 0 || !detached)); then
			stop_pid "$wpid"
			REASON="restore exit $rc: $(one_line "$(cat "$se")")"
			return 1
		fi
		wait "$wpid" || wrc=$?
		unset "CHILD[$wpid]"
	else
		wrc=$rc
		if ((detached)); then
			rc=0
			wait "$RESTORE_PID" || rc=$?
			unset "CHILD[$RESTORE_PID]"
			if ((rc != 0)); then
				REASON="restore exit $rc after the guest printed: $(one_line "$(cat "$se")")"
				return 1
			fi
		fi
	fi
	if ((wrc != 0)); then
		REASON="restored guest printed nothing within ${OP_TIMEOUT}s: $(one_line "$(cat "$se")")"
		return 1
	fi
	t1=$(<"$W/waitgrow.out")
	RESTORE_MS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) / 1000 }')
}

# first_counter_after LOG SKIP: the first counter in LOG after its first SKIP
# bytes, waiting up to 5 s for a whole line; then, with PROCS > 1, how many
# of the guest's children that line says are alive.
first_counter_after() {
	local i line=""
	for ((i = 0; i < 100; i++)); do
		line=$(tail -c "+$(($2 + 1))" "$1" | tr -d '\0' | grep -m1 '^counter=[0-9]* .*$' || true)
		[[ -z $line ]] || break
		sleep 0.05
	done
	printf '%s %s' "$(sed -n 's/^counter=\([0-9]*\) .*/\1/p' <<<"$line")" \
		"$(sed -n 's/.* alive=\([0-9]*\)$/\1/p' <<<"$line")"
}

# bench_cryo SIZE REP [unconfined]
bench_cryo() {
	local size=$1 rep=$2 id="b$1-$2${3:+-u}" pid i
	local out=$W/cryo.out err=$W/cryo.err out2=$W/cryo.out2 err2=$W/cryo.err2 img=$W/img
	local -a cryo=("$CRYO_BIN")
	[[ -z ${3:-} ]] || cryo=(env CRYO_UNCONFINED=1 "$CRYO_BIN")
	rm -rf "$img" "$out" "$err" "$out2" "$err2"
	"${cryo[@]}" --root "$CRYO_ROOT" "do" --id "$id" -- "$GUEST" "$size" /etc/passwd -1 "$PROCS" </dev/null >>"$out" 2>>"$err" &
	pid=$!
	CHILD[$pid]=1
	CRYO_LIVE[$id]=1
	if ! wait_counters "$out" "$COUNTERS_BEFORE" "$pid"; then
		REASON="$REASON: $(one_line "$(cat "$err" "$out")")"
		return 1
	fi
	timed_checkpoint "$W/cryo.ckpt.log" "$CRYO_BIN" --root "$CRYO_ROOT" checkpoint \
		--image-path "$img" "${CRYO_CKPT_FLAGS[@]}" "$id" || return 1
	# Without --leave-running the sandbox exits after the checkpoint.
	for ((i = 0; i < 300; i++)); do
		[[ -e /proc/$pid && $(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null) != Z ]] || break
		sleep 0.1
	done
	if [[ -e /proc/$pid && $(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null) != Z ]]; then
		NOTES+=("cryo $size MiB run $rep: \`cryo do\` still running 30 s after the checkpoint (stopped it)")
	fi
	stop_pid "$pid"
	unset "CRYO_LIVE[$id]"
	image_size "$img" || return 1
	LAST_BEFORE=$(last_counter "$out")
	CRYO_LIVE[$id-r]=1
	timed_restore 0 "$out2" 0 "$out2" "$err2" \
		"${cryo[@]}" --root "$CRYO_ROOT" restore --image-path "$img" --id "$id-r" || {
		stop_pid "$RESTORE_PID"
		return 1
	}
	read -r FIRST_AFTER ALIVE_AFTER < <(first_counter_after "$out2" 0) || true
	timeout 10 "$CRYO_BIN" --root "$CRYO_ROOT" kill "$id-r" KILL >/dev/null 2>&1 || true
	stop_pid "$RESTORE_PID"
	unset "CRYO_LIVE[$id-r]"
	rm -rf "$img"
}

bench_runsc() {
	local plat=$1 size=$2 rep=$3 id="c-$1-$2-$3" b=$W/bundle-$2 rc=0
	local out=$W/runsc.out err=$W/runsc.err out2=$W/runsc.out2 err2=$W/runsc.err2 img=$W/img
	local -a g=(--root "$RUNSC_ROOT" --network=none "--platform=$plat")
	rm -rf "$img" "$out" "$err" "$out2" "$err2"
	RUNSC_LIVE[$id]=$plat
	timeout -k 5 "$OP_TIMEOUT" "$RUNSC" "${g[@]}" run --detach --bundle "$b" "$id" </dev/null >>"$out" 2>>"$err" || rc=$?
	if ((rc != 0)); then
		REASON="runsc run exit $rc: $(one_line "$(cat "$err")")"
		return 1
	fi
	if ! wait_counters "$out" "$COUNTERS_BEFORE"; then
		REASON="$REASON: $(one_line "$(cat "$err" "$out")")"
		return 1
	fi
	timed_checkpoint "$W/runsc.ckpt.log" "$RUNSC" "${g[@]}" checkpoint \
		--image-path "$img" "${RUNSC_CKPT_FLAGS[@]}" "$id" || return 1
	# The sandbox has exited, but the container is still listed as running.
	timeout 20 "$RUNSC" "${g[@]}" delete -force "$id" >/dev/null 2>&1 || true
	unset "RUNSC_LIVE[$id]"
	image_size "$img" || return 1
	LAST_BEFORE=$(last_counter "$out")
	RUNSC_LIVE[$id-r]=$plat
	timed_restore 1 "$out2" 0 "$out2" "$err2" \
		"$RUNSC" "${g[@]}" restore --detach --image-path "$img" --bundle "$b" "$id-r" || return 1
	read -r FIRST_AFTER ALIVE_AFTER < <(first_counter_after "$out2" 0) || true
	timeout 20 "$RUNSC" "${g[@]}" kill "$id-r" KILL >/dev/null 2>&1 || true
	timeout 20 "$RUNSC" "${g[@]}" delete -force "$id-r" >/dev/null 2>&1 || true
	unset "RUNSC_LIVE[$id-r]"
	rm -rf "$img"
}

bench_criu() {
	local size=$1 pid wsize
	local out=$W/criu.out err=$W/criu.err img=$W/img
	rm -rf "$img" "$out" "$err"
	mkdir -p "$img"
	# setsid makes the guest its own session and group leader (so no
	# --shell-job); in a non-interactive shell it execs without forking, so
	# $! is the guest itself.
	setsid "$GUEST" "$size" /etc/passwd -1 "$PROCS" </dev/null >>"$out" 2>>"$err" &
	pid=$!
	CHILD[$pid]=1
	if ! wait_counters "$out" "$COUNTERS_BEFORE" "$pid"; then
		REASON="$REASON: $(one_line "$(cat "$err" "$out")")"
		return 1
	fi
	if ! is_guest "$pid"; then
		REASON="setsid forked: \$! is not the guest"
		return 1
	fi
	timed_checkpoint "$W/criu.dump.out" "$CRIU" dump -t "$pid" -D "$img" -o "$W/criu.dump.log" || {
		REASON="$REASON (log: $(one_line "$(grep -v RLIMIT_NOFILE "$W/criu.dump.log" | grep -i error)"))"
		return 1
	}
	# criu dump killed the guest: reap it so that its pid is free for restore.
	stop_pid "$pid"
	image_size "$img" || return 1
	LAST_BEFORE=$(last_counter "$out")
	wsize=$(stat -c %s "$out")
	FOREIGN[$pid]=1
	timed_restore 1 "$out" "$wsize" "$W/criu.restore.out" "$W/criu.restore.out" \
		"$CRIU" restore -D "$img" -d -o "$W/criu.restore.log" || {
		REASON="$REASON (log: $(one_line "$(grep -v RLIMIT_NOFILE "$W/criu.restore.log" | grep -i error)"))"
		return 1
	}
	read -r FIRST_AFTER ALIVE_AFTER < <(first_counter_after "$out" "$wsize") || true
	# CRIU restores the guest with its old pid, as a child of init.
	if is_guest "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
	unset "FOREIGN[$pid]"
	rm -rf "$img"
}

# --- the run ----------------------------------------------------------------------------
# Warm the host's memory once (the first touch on a fresh VM is much slower).
for size in "${SIZES[@]}"; do
	log "warm-up: $size MiB natively"
	"$GUEST" "$size" /etc/passwd 1 >/dev/null
done

for size in "${SIZES[@]}"; do
	for ((rep = 1; rep <= REPS; rep++)); do
		for s in "${SYSTEMS[@]}"; do
			[[ -z ${FAIL[$s]:-} && -z ${FAIL[$s.$size]:-} ]] || continue
			log "$size MiB, run $rep/$REPS: $s"
			REASON="" CKPT_MS="" SIZE_B="" RESTORE_MS="" LAST_BEFORE="" FIRST_AFTER="" ALIVE_AFTER="" RESTORE_PID=""
			ok=1
			case $s in
			cryo) bench_cryo "$size" "$rep" || ok=0 ;;
			cryo-unconfined) bench_cryo "$size" "$rep" unconfined || ok=0 ;;
			runsc-*) bench_runsc "${s#runsc-}" "$size" "$rep" || ok=0 ;;
			criu) bench_criu "$size" "$rep" || ok=0 ;;
			esac
			reap_all
			rm -rf "$W/img"
			if ((!ok)); then
				FAIL[$s.$size]=${REASON:-unknown error}
				log "$s $size MiB failed: ${FAIL[$s.$size]}"
				continue
			fi
			printf '%s\n' "$CKPT_MS" >>"$W/res/$s.$size.ckpt"
			printf '%s\n' "$SIZE_B" >>"$W/res/$s.$size.size"
			printf '%s\n' "$RESTORE_MS" >>"$W/res/$s.$size.restore"
			log "$s $size MiB: checkpoint $CKPT_MS ms, image $SIZE_B bytes, restore->output $RESTORE_MS ms (counter $LAST_BEFORE -> ${FIRST_AFTER:-?})"
			if [[ -z $FIRST_AFTER || -z $LAST_BEFORE || $FIRST_AFTER -ne $((LAST_BEFORE + 1)) ]]; then
				NOTES+=("$s $size MiB run $rep: last counter before checkpoint ${LAST_BEFORE:-none}, first after restore ${FIRST_AFTER:-none} (expected +1)")
			fi
			if ((PROCS > 1)) && [[ ${ALIVE_AFTER:-} != $((PROCS - 1)) ]]; then
				NOTES+=("$s $size MiB run $rep: ${ALIVE_AFTER:-no} children alive after restore (expected $((PROCS - 1)))")
			fi
		done
	done
done

# --- report -------------------------------------------------------------------------------
# cell SYSTEM SIZE METRIC SCALE DEC: "median (min–max)" of a result, divided by SCALE.
cell() {
	local med lo hi
	read -r med lo hi < <(stats "$W/res/$1.$2.$3") || true
	if [[ -z ${med:-} ]]; then
		printf '–'
		return
	fi
	printf '%s (%s–%s)' "$(fmt "$(awk -v x="$med" -v s="$4" 'BEGIN { print x / s }')" "$5")" \
		"$(fmt "$(awk -v x="$lo" -v s="$4" 'BEGIN { print x / s }')" "$5")" \
		"$(fmt "$(awk -v x="$hi" -v s="$4" 'BEGIN { print x / s }')" "$5")"
}
median_of() { stats "$W/res/$1.$2.$3" | cut -d' ' -f1; }

cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
printf '# cryo checkpoint/restore benchmarks\n\n'
printf -- '- date: %s; host: Linux %s, %s, %s CPUs\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(uname -r)" "$cpu" "$(nproc)"
while read -r line; do printf -- '- %s\n' "$line"; done < <(anchors_versions)
if [[ -n $CRYO_BIN ]]; then
	printf -- '- cryo: %s (%s)\n' "$CRYO_BIN" "$CRYO_NOTE"
fi
printf -- '- guest: tests/guests/ckpt_counter.c (static), a quarter of its pages zero, a tree of %s process(es) sharing its memory copy-on-write; %s runs per system and size, systems interleaved\n' "$PROCS" "$REPS"
# shellcheck disable=SC2016 # backquotes are Markdown
printf -- '- runsc checkpoint flags: %s; cryo checkpoint flags: %s; criu: `dump -t PID -D IMG`, `restore -D IMG -d`\n' \
	"${RUNSC_CKPT_FLAGS[*]:-(defaults: --compression=flate-best-speed)}" "${CRYO_CKPT_FLAGS[*]:-(defaults)}"
printf -- '- cells: median (min–max); restore → output includes the rest of the guest'"'"'s 100 ms sleep and one checksum pass over its memory\n\n'

printf '| guest | system | checkpoint (ms) | statefile (MiB) | restore → output (ms) |\n'
printf '|---|---|---:|---:|---:|\n'
for size in "${SIZES[@]}"; do
	for s in "${SYSTEMS[@]}"; do
		reason=${FAIL[$s]:-${FAIL[$s.$size]:-}}
		if [[ -n $reason ]]; then
			printf '| %s MiB | %s | failed: %s | | |\n' "$size" "$s" "$reason"
			continue
		fi
		printf '| %s MiB | %s | %s | %s | %s |\n' "$size" "$s" \
			"$(cell "$s" "$size" ckpt 1 1)" "$(cell "$s" "$size" size 1048576 1)" "$(cell "$s" "$size" restore 1 1)"
	done
done

printf '\n| guest | metric | cryo / runsc-systrap | cryo / runsc-ptrace | cryo / criu | runsc-systrap / criu |\n'
printf '|---|---|---:|---:|---:|---:|\n'
for size in "${SIZES[@]}"; do
	for m in ckpt size restore; do
		case $m in
		ckpt) label="checkpoint time" ;;
		size) label="statefile size" ;;
		restore) label="restore → output" ;;
		esac
		c=$(median_of cryo "$size" "$m")
		rs=$(median_of runsc-systrap "$size" "$m")
		rp=$(median_of runsc-ptrace "$size" "$m")
		cr=$(median_of criu "$size" "$m")
		printf '| %s MiB | %s | %s | %s | %s | %s |\n' "$size" "$label" \
			"$(ratio "$c" "$rs")" "$(ratio "$c" "$rp")" "$(ratio "$c" "$cr")" "$(ratio "$rs" "$cr")"
	done
done
printf '\nRatios are median / median; lower is better for cryo. "–": a system has no result.\n'
if ((${#NOTES[@]})); then
	printf '\nNotes:\n\n'
	for n in "${NOTES[@]}"; do printf -- '- %s\n' "$n"; done
fi

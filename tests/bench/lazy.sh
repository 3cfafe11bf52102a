#!/usr/bin/env bash
# Lazy restore (issue 15): how long `cryo restore` takes until the restored
# guest runs again, eager against `--lazy` against `--lazy` with the
# working set an earlier lazy restore recorded (working-set.cryo) prefetched.
#
# The guest (guests/lazy_ticks.c) fills SIZE MiB and prints a line every
# 10 ms after reading one byte of every STRIDE-th MiB, so its first line
# after a restore needs only that working set. The time is from starting
# `cryo restore` (in the foreground) until its output grows (tools/waitgrow,
# polling every 1 ms). Each rep boots the guest and checkpoints it once,
# then restores that statefile three ways in turn: eager; lazy with no
# working-set.cryo (which records one as it ends); lazy again (which
# prefetches it before resuming). The restored guest's first line must
# carry the sum it printed before the checkpoint (else a note).
#
# Knobs (environment): CRYO, SIZES ("512"), STRIDE (16), REPS (3),
# PLATFORM (cryo's default), START_TIMEOUT (120 s), OP_TIMEOUT (120 s).
# cryo only: runsc and CRIU have no lazy restore of a statefile to compare.
set -euo pipefail
export LC_ALL=C
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

read -r -a SIZES <<<"${SIZES:-512}"
STRIDE=${STRIDE:-16}
REPS=${REPS:-3}
START_TIMEOUT=${START_TIMEOUT:-120}
OP_TIMEOUT=${OP_TIMEOUT:-120}
MODES=(eager lazy lazy-prefetch)
for s in "${SIZES[@]}"; do [[ $s =~ ^[0-9]+$ ]] || die "bad size '$s' in SIZES"; done
[[ $STRIDE =~ ^[1-9][0-9]*$ ]] || die "bad STRIDE '$STRIDE'"

W=$(mktemp -d /tmp/cryo-bench-lazy.XXXXXX)
chmod 755 "$W"
GUEST=$W/lazy_ticks
ROOT=$W/cryo-root
mkdir -p "$W/res"
declare -A CHILD=() # background children not yet reaped
declare -a NOTES=()

cleanup() {
	local rc=$? pid
	trap - EXIT INT TERM
	for pid in "${!CHILD[@]}"; do
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$W"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

build_static "$GUEST" "$BENCH_DIR/guests/lazy_ticks.c"
gcc -O2 -Wall -Wextra -o "$W/waitgrow" "$BENCH_DIR/tools/waitgrow.c" || die "cannot build tools/waitgrow.c"
find_cryo "$W/cargo-build.log"
[[ -z $CRYO_FAIL ]] || die "$CRYO_FAIL"
cryo=("$CRYO_BIN" --root "$ROOT")
[[ -z ${PLATFORM:-} ]] || cryo+=(--platform "$PLATFORM")

# wait_lines FILE N: until FILE has N lines, at most START_TIMEOUT.
wait_lines() {
	local deadline=$((SECONDS + START_TIMEOUT))
	until [[ -e $1 ]] && (($(wc -l <"$1") >= $2)); do
		((SECONDS < deadline)) || die "no $2 lines in $1 within ${START_TIMEOUT}s: $(one_line "$(cat "$1" "$1.err" 2>/dev/null)")"
		sleep 0.02
	done
}

sum_of() { sed -n "${2:-1}s/.* sum=\([0-9a-f]*\).*/\1/p" "$1"; }

# end ID PID: the sandbox ID killed, its `cryo` process PID reaped.
end() {
	timeout 10 "${cryo[@]}" kill "$1" KILL >/dev/null 2>&1 || true
	wait "$2" 2>/dev/null || true
	unset "CHILD[$2]"
}

# timed_restore ID FLAGS...: sets MS, the time until the restored guest's
# output grows.
timed_restore() {
	local id=$1 out=$W/$1.out t0 t1 pid
	shift
	: >"$out"
	t0=$(now_us)
	"${cryo[@]}" restore --image-path "$W/img" --id "$id" "$@" </dev/null >"$out" 2>"$out.err" &
	pid=$!
	CHILD[$pid]=1
	t1=$("$W/waitgrow" "$out" 0 "$((OP_TIMEOUT * 1000))") ||
		die "restore $* printed nothing in ${OP_TIMEOUT}s: $(one_line "$(cat "$out.err")")"
	MS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) / 1000 }')
	wait_lines "$out" 1
	FIRST_SUM=$(sum_of "$out")
	end "$id" "$pid"
}

for size in "${SIZES[@]}"; do
	for ((rep = 1; rep <= REPS; rep++)); do
		rm -rf "$W/img"
		src=src-$size-$rep
		"${cryo[@]}" do --id "$src" -- "$GUEST" "$size" "$STRIDE" </dev/null >"$W/src.out" 2>"$W/src.out.err" &
		pid=$!
		CHILD[$pid]=1
		wait_lines "$W/src.out" 3
		"${cryo[@]}" checkpoint --image-path "$W/img" "$src" >/dev/null 2>"$W/ckpt.err" ||
			die "checkpoint failed: $(one_line "$(cat "$W/ckpt.err")")"
		wait "$pid" 2>/dev/null || true
		unset "CHILD[$pid]"
		want=$(sum_of "$W/src.out")
		for mode in "${MODES[@]}"; do
			case $mode in
			eager) flags=() ;;
			lazy)
				rm -f "$W/img/working-set.cryo"
				flags=(--lazy)
				;;
			lazy-prefetch)
				[[ -f $W/img/working-set.cryo ]] ||
					NOTES+=("$size MiB run $rep: the lazy restore recorded no working set")
				flags=(--lazy)
				;;
			esac
			timed_restore "r-$size-$rep-$mode" "${flags[@]}"
			printf '%s\n' "$MS" >>"$W/res/$mode.$size"
			log "$size MiB run $rep: $mode restore -> guest runs: $MS ms"
			[[ $FIRST_SUM == "$want" ]] ||
				NOTES+=("$size MiB run $rep $mode: first sum $FIRST_SUM, before the checkpoint $want")
		done
	done
done

cell() {
	local s
	s=$(stats "$1")
	[[ -n $s ]] || { printf 'no result'; return; }
	read -r m lo hi <<<"$s"
	printf '%s (%s–%s)' "$(fmt "$m")" "$(fmt "$lo")" "$(fmt "$hi")"
}

printf '# cryo lazy restore\n\n'
printf -- '- cryo: %s (%s)\n' "$CRYO_BIN" "$CRYO_NOTE"
printf -- '- guest: lazy_ticks SIZE %s (reads every %s-th MiB, prints every 10 ms); %s reps; platform %s\n' \
	"$STRIDE" "$STRIDE" "$REPS" "${PLATFORM:-default}"
printf -- '- cells: median (min–max) ms from starting `cryo restore` until the restored guest printed\n\n'
printf '| guest | restore | until the guest runs again (ms) | / eager |\n|---|---|---:|---:|\n'
for size in "${SIZES[@]}"; do
	e=$(stats "$W/res/eager.$size" | cut -d' ' -f1)
	for mode in "${MODES[@]}"; do
		m=$(stats "$W/res/$mode.$size" | cut -d' ' -f1)
		printf '| %s MiB | %s | %s | %s |\n' "$size" "$mode" "$(cell "$W/res/$mode.$size")" "$(ratio "$m" "$e")"
	done
done
if ((${#NOTES[@]})); then
	printf '\nNotes:\n\n'
	for n in "${NOTES[@]}"; do printf -- '- %s\n' "$n"; done
fi

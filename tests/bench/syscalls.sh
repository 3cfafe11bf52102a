#!/usr/bin/env bash
# Syscall cost and startup: cryo against native Linux and gVisor's runsc
# (ptrace and systrap platforms), cryo on both of its platforms, in one
# interleaved run.
#
#   sudo tests/bench/syscalls.sh > results.md
#
# Measures, for each system:
#   getppid          ns per syscall(SYS_getppid), timed inside the guest
#   clock_gettime    ns per libc clock_gettime(CLOCK_MONOTONIC) (the vDSO
#                    where the system has one), timed inside the guest
#   open/read/close  ns per open(/etc/hostname)+read+close, timed inside the guest
#   fork             ns per fork+_exit+waitpid, timed inside the guest
#   fork+exec        ns per fork+execve(/bin/true)+waitpid
#   pipe round trip  ns per one byte there and back between two processes
#   futex round trip ns per wake/wait there and back between two threads
#   fork bomb        ns per process of a fork bomb (every process forks)
#                    growing to N_BOMB processes, in its own process group
#   do /bin/true     wall time of starting a sandbox that runs /bin/true
#   sh pipelines     wall time of a sandbox running `sh SCRIPT`, a script of
#                    100 two-command pipelines (`echo N | tr 0-9 a-j`)
#                    (hyperfine -N when installed, else a timed loop)
# Each guest runs REPS times per system, the systems interleaved; the table
# gives the median, min–max and ratios against native and against runsc.
# A system that cannot run gets "failed: <reason>" in its rows.
#
# Needs: root (runsc do), gcc with static glibc, the anchors
# (shared/anchors/install-anchors -> /opt/cryo-anchors), optionally hyperfine.
# Knobs (environment): CRYO (a cryo binary; default target/release/cryo, built
# if missing), ANCHORS, RUNSC, REPS (5), N_GETPPID_NATIVE (2000000),
# N_GETPPID (20000), N_CLOCK (1000000, every system: each has a vDSO;
# CRYO_VDSO_FALLBACK=1 makes cryo's trap), N_ORC_NATIVE (200000), N_ORC (5000), ORC_FILE
# (/etc/hostname), N_FORK (200), N_FORKEXEC (50), N_BOMB (1000), N_PINGPONG (2000; 50x
# natively), TRUE_RUNS (10), SYSTEMS ("native cryo-ptrace
# cryo-systrap cryo-ptrace-unconfined cryo-systrap-unconfined runsc-ptrace
# runsc-systrap"; plain "cryo" is cryo on its default platform; the
# -unconfined ones run with CRYO_UNCONFINED=1, the Sentry without its
# namespaces, capability drop and seccomp filter: the cost of those),
# CRYO_BASE (a second cryo binary, e.g. built from main, for a before/after
# in the same run: systems cryo-base-ptrace and cryo-base-systrap run it and
# a closing table gives cryo-P / cryo-base-P per benchmark),
# BENCHES (every benchmark: "getppid clock orc fork forkexec bomb pipe
# futex true script"), TIMEOUT (120 s per guest run).
set -euo pipefail
export LC_ALL=C
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

REPS=${REPS:-5}
N_GETPPID_NATIVE=${N_GETPPID_NATIVE:-2000000}
N_GETPPID=${N_GETPPID:-20000}
N_CLOCK=${N_CLOCK:-1000000}
N_ORC_NATIVE=${N_ORC_NATIVE:-200000}
N_ORC=${N_ORC:-5000}
ORC_FILE=${ORC_FILE:-/etc/hostname}
TRUE_RUNS=${TRUE_RUNS:-10}
N_FORK=${N_FORK:-200}
N_FORKEXEC=${N_FORKEXEC:-50}
N_PINGPONG=${N_PINGPONG:-2000}
N_BOMB=${N_BOMB:-1000}
TIMEOUT=${TIMEOUT:-120}
read -r -a SYSTEMS <<<"${SYSTEMS:-native cryo-ptrace cryo-systrap cryo-ptrace-unconfined cryo-systrap-unconfined runsc-ptrace runsc-systrap}"
read -r -a BENCHES <<<"${BENCHES:-getppid clock orc fork forkexec bomb pipe futex true script}"
# wanted BENCH: whether BENCHES names it.
wanted() { [[ " ${BENCHES[*]} " == *" $1 "* ]]; }

need_root
[[ -x $RUNSC ]] || die "no runsc at $RUNSC: run shared/anchors/install-anchors as root first"
[[ -r $ORC_FILE ]] || die "ORC_FILE=$ORC_FILE is not readable"

# The work dir must be visible inside the sandboxes: runsc do (and cryo do)
# show the host's root read-only, so /tmp is fine.
W=$(mktemp -d /tmp/cryo-bench-syscalls.XXXXXX)
chmod 755 "$W"
cleanup() {
	local rc=$?
	rm -rf "$W"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "work dir $W"
build_static "$W/getppid_loop" "$BENCH_DIR/guests/getppid_loop.c"
build_static "$W/clock_loop" "$BENCH_DIR/guests/clock_loop.c"
build_static "$W/open_read_close" "$BENCH_DIR/guests/open_read_close.c"
build_static "$W/procs" "$BENCH_DIR/guests/procs.c"

declare -A FAIL=() # FAIL[system]: why the system could not run at all
declare -A BFAIL=() # BFAIL[system.bench]: why one benchmark failed

CRYO_BIN=""
CRYO_FAIL=""
CRYO_NOTE=""
for s in "${SYSTEMS[@]}"; do
	if [[ $s == cryo-base-* ]]; then
		[[ -n ${CRYO_BASE:-} && -x ${CRYO_BASE:-} ]] || FAIL[$s]="CRYO_BASE=${CRYO_BASE:-} is not an executable"
	elif [[ $s == cryo || $s == cryo-* ]]; then
		[[ -n $CRYO_BIN || -n $CRYO_FAIL ]] || find_cryo "$W/cargo-build.log"
		[[ -z $CRYO_FAIL ]] || FAIL[$s]=$CRYO_FAIL
	fi
done

# prefix SYSTEM: sets PREFIX to the command line that runs a program in SYSTEM.
prefix() {
	case $1 in
	native) PREFIX=() ;;
	cryo) PREFIX=("$CRYO_BIN" --root "$W/cryo-root" "do" --) ;;
	cryo-ptrace | cryo-systrap)
		PREFIX=("$CRYO_BIN" --root "$W/cryo-root" "--platform=${1#cryo-}" "do" --)
		;;
	cryo-base-ptrace | cryo-base-systrap)
		PREFIX=("$CRYO_BASE" --root "$W/cryo-root" "--platform=${1#cryo-base-}" "do" --)
		;;
	cryo-ptrace-unconfined | cryo-systrap-unconfined)
		local plat=${1#cryo-}
		PREFIX=(env CRYO_UNCONFINED=1 "$CRYO_BIN" --root "$W/cryo-root" "--platform=${plat%-unconfined}" "do" --)
		;;
	runsc-ptrace | runsc-systrap)
		PREFIX=("$RUNSC" --network=none "--platform=${1#runsc-}" "do")
		;;
	*) die "unknown system $1 (known: native cryo cryo-ptrace cryo-systrap cryo-base-ptrace cryo-base-systrap cryo-ptrace-unconfined cryo-systrap-unconfined runsc-ptrace runsc-systrap)" ;;
	esac
}

# run_guest SYSTEM BENCH: one run; appends ns/op to $W/SYSTEM.BENCH or sets BFAIL.
run_guest() {
	local sys=$1 bench=$2 n out rc=0 ns
	local -a args
	case $bench in
	getppid)
		n=$N_GETPPID
		[[ $sys == native ]] && n=$N_GETPPID_NATIVE
		args=("$W/getppid_loop" "$n")
		;;
	clock) args=("$W/clock_loop" "$N_CLOCK") ;;
	orc)
		n=$N_ORC
		[[ $sys == native ]] && n=$N_ORC_NATIVE
		args=("$W/open_read_close" "$n" "$ORC_FILE")
		;;
	fork) args=("$W/procs" fork "$N_FORK") ;;
	forkexec) args=("$W/procs" forkexec "$N_FORKEXEC") ;;
	bomb) args=("$W/procs" bomb "$N_BOMB") ;;
	pipe | futex)
		n=$N_PINGPONG
		[[ $sys == native ]] && n=$((N_PINGPONG * 50))
		args=("$W/procs" "$bench" "$n")
		;;
	esac
	prefix "$sys"
	out=$(timeout -k 5 "$TIMEOUT" "${PREFIX[@]}" "${args[@]}" </dev/null 2>&1) || rc=$?
	ns=$(printf '%s\n' "$out" | sed -n 's/.*ns_per_op=\([0-9.]*\).*/\1/p' | tail -n1)
	if [[ $rc -ne 0 || -z $ns ]]; then
		if [[ $rc -eq 124 ]]; then
			BFAIL[$sys.$bench]="timed out after ${TIMEOUT}s"
		else
			BFAIL[$sys.$bench]="exit $rc: $(one_line "$out")"
		fi
		log "$sys $bench failed: ${BFAIL[$sys.$bench]}"
		return 0
	fi
	printf '%s\n' "$ns" >>"$W/$sys.$bench"
	log "$sys $bench: $ns ns/op"
}

# --- syscalls: REPS rounds, systems interleaved ---------------------------------
for ((rep = 1; rep <= REPS; rep++)); do
	log "round $rep/$REPS"
	for bench in getppid clock orc fork forkexec bomb pipe futex; do
		wanted "$bench" || continue
		for s in "${SYSTEMS[@]}"; do
			[[ -z ${FAIL[$s]:-} && -z ${BFAIL[$s.$bench]:-} ]] || continue
			run_guest "$s" "$bench"
		done
	done
done

# --- do /bin/true wall time ------------------------------------------------------
# true_time SYSTEM [BENCH CMD...]: appends wall times (ms) of "SYSTEM do CMD"
# (default: /bin/true) to $W/SYSTEM.BENCH (default: true).
true_time() {
	local sys=$1 bench=${2:-true} out rc=0 i t0 t1
	local -a cmd_args=(/bin/true)
	[[ $# -gt 2 ]] && cmd_args=("${@:3}")
	prefix "$sys"
	# One checked run first, of a program whose output proves that it ran: a
	# broken system gets a reason, not a hyperfine abort or a bogus time.
	out=$(timeout -k 5 "$TIMEOUT" "${PREFIX[@]}" /bin/echo cryo-bench-ran </dev/null 2>&1) || rc=$?
	if [[ $rc -ne 0 || $out != *cryo-bench-ran* ]]; then
		BFAIL[$sys.$bench]="do /bin/echo: exit $rc: $(one_line "$out")"
		log "$sys $bench failed: ${BFAIL[$sys.$bench]}"
		return 0
	fi
	if command -v hyperfine >/dev/null; then
		local cmd runs=$TRUE_RUNS
		[[ $sys == native ]] && runs=$((TRUE_RUNS * 10))
		cmd=$(printf '%q ' "${PREFIX[@]}" "${cmd_args[@]}")
		if ! hyperfine -N --warmup 2 --runs "$runs" --export-json "$W/$sys.$bench.json" \
			--style none "$cmd" >"$W/$sys.$bench.hyperfine.log" 2>&1; then
			BFAIL[$sys.$bench]="hyperfine: $(one_line "$(cat "$W/$sys.$bench.hyperfine.log")")"
			return 0
		fi
		# The JSON has every run's time in seconds under "times".
		tr -d ' \n' <"$W/$sys.$bench.json" | sed -n 's/.*"times":\[\([^]]*\)\].*/\1/p' |
			tr ',' '\n' | awk 'NF { printf "%.6f\n", $1 * 1000 }' >"$W/$sys.$bench"
	else
		for ((i = 0; i < 2; i++)); do "${PREFIX[@]}" "${cmd_args[@]}" </dev/null >/dev/null 2>&1 || true; done
		for ((i = 0; i < TRUE_RUNS; i++)); do
			t0=$(now_us)
			timeout -k 5 "$TIMEOUT" "${PREFIX[@]}" "${cmd_args[@]}" </dev/null >/dev/null 2>&1 || rc=$?
			t1=$(now_us)
			if [[ $rc -ne 0 ]]; then
				BFAIL[$sys.$bench]="exit $rc on run $i"
				return 0
			fi
			awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", (b - a) / 1000 }' >>"$W/$sys.$bench"
		done
	fi
	log "$sys $bench: median $(stats "$W/$sys.$bench" | cut -d' ' -f1) ms"
}
# 100 two-command pipelines, each a fork+exec of echo's and tr's processes.
for ((i = 1; i <= 100; i++)); do printf 'echo %d | tr 0-9 a-j >/dev/null\n' "$i"; done >"$W/pipelines.sh"
for s in "${SYSTEMS[@]}"; do
	[[ -z ${FAIL[$s]:-} ]] || continue
	if wanted true; then
		log "do /bin/true: $s"
		true_time "$s"
	fi
	if wanted script; then
		log "sh pipelines: $s"
		true_time "$s" script /bin/sh "$W/pipelines.sh"
	fi
done

# --- report ----------------------------------------------------------------------
median_of() { stats "$W/$1.$2" | cut -d' ' -f1; }

cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
printf '# cryo syscall benchmarks\n\n'
printf -- '- date: %s; host: Linux %s, %s, %s CPUs\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(uname -r)" "$cpu" "$(nproc)"
while read -r line; do printf -- '- %s\n' "$line"; done < <(anchors_versions)
if [[ -n $CRYO_BIN ]]; then
	printf -- '- cryo: %s (%s)\n' "$CRYO_BIN" "$CRYO_NOTE"
fi
if [[ -n ${CRYO_BASE:-} ]]; then
	printf -- '- cryo-base: %s (CRYO_BASE)\n' "$CRYO_BASE"
fi
printf -- '- %s runs per system, interleaved; iterations per run: getppid %s native / %s sandboxed, clock_gettime %s, open/read/close of %s %s native / %s sandboxed\n' \
	"$REPS" "$N_GETPPID_NATIVE" "$N_GETPPID" "$N_CLOCK" "$ORC_FILE" "$N_ORC_NATIVE" "$N_ORC"
if command -v hyperfine >/dev/null; then
	printf -- '- do /bin/true: %s (-N, 2 warm-up runs, %s runs; %s natively)\n' "$(hyperfine --version)" "$TRUE_RUNS" "$((TRUE_RUNS * 10))"
else
	printf -- '- do /bin/true: %s timed runs (no hyperfine)\n' "$TRUE_RUNS"
fi
# shellcheck disable=SC2016 # backquotes are Markdown
printf -- '- runsc: %s; cryo: %s\n\n' '`runsc --network=none --platform=P do GUEST`' '`cryo --root TMP --platform=P do -- GUEST`'

printf '| benchmark | system | median | min–max | × native | × cryo-ptrace | × runsc-ptrace | × runsc-systrap |\n'
printf '|---|---|---:|---:|---:|---:|---:|---:|\n'
for bench in getppid clock orc fork forkexec bomb pipe futex true script; do
	wanted "$bench" || continue
	case $bench in
	getppid) label="getppid (ns/call)" dec=0 ;;
	clock) label="clock_gettime(MONOTONIC) (ns/call)" dec=1 ;;
	orc) label="open/read/close (ns/iteration)" dec=0 ;;
	fork) label="fork+exit+wait (ns)" dec=0 ;;
	forkexec) label="fork+execve(/bin/true)+wait (ns)" dec=0 ;;
	bomb) label="fork bomb to $N_BOMB processes (ns per process)" dec=0 ;;
	pipe) label="pipe round trip, 2 processes (ns)" dec=0 ;;
	futex) label="futex round trip, 2 threads (ns)" dec=0 ;;
	true) label="do /bin/true (ms)" dec=2 ;;
	script) label="sh of 100 pipelines (ms, with sandbox start)" dec=1 ;;
	esac
	nat=$(median_of native "$bench")
	rp=$(median_of runsc-ptrace "$bench")
	rs=$(median_of runsc-systrap "$bench")
	cp=$(median_of cryo-ptrace "$bench")
	for s in "${SYSTEMS[@]}"; do
		reason=${FAIL[$s]:-${BFAIL[$s.$bench]:-}}
		if [[ -n $reason ]]; then
			printf '| %s | %s | failed: %s | | | | | |\n' "$label" "$s" "$reason"
			continue
		fi
		med="" lo="" hi=""
		read -r med lo hi < <(stats "$W/$s.$bench") || true
		if [[ -z ${med:-} ]]; then
			printf '| %s | %s | failed: no result | | | | | |\n' "$label" "$s"
			continue
		fi
		printf '| %s | %s | %s | %s–%s | %s | %s | %s | %s |\n' "$label" "$s" \
			"$(fmt "$med" "$dec")" "$(fmt "$lo" "$dec")" "$(fmt "$hi" "$dec")" \
			"$(ratio "$med" "$nat")" "$(ratio "$med" "$cp")" "$(ratio "$med" "$rp")" "$(ratio "$med" "$rs")"
	done
done
printf '\nRatios are median / median (the row system against the column system); lower is faster.\n'

# The cost of the Sentry's confinement: each platform against itself with
# CRYO_UNCONFINED=1 (aim: under 5% on getppid and open/read/close).
printf '\n| benchmark | confined / unconfined, ptrace | confined / unconfined, systrap |\n|---|---:|---:|\n'
for bench in getppid orc fork true; do
	row=""
	for plat in ptrace systrap; do
		c=$(median_of "cryo-$plat" "$bench")
		u=$(median_of "cryo-$plat-unconfined" "$bench")
		row+=" $(ratio "${c:-}" "${u:-}") |"
	done
	printf '| %s |%s\n' "$bench" "$row"
done

# Before/after: each platform against the CRYO_BASE binary, same run.
if [[ -n ${CRYO_BASE:-} ]]; then
	printf '\n| benchmark | cryo-ptrace / cryo-base-ptrace | cryo-systrap / cryo-base-systrap |\n|---|---:|---:|\n'
	for bench in getppid clock orc fork forkexec bomb pipe futex true script; do
		wanted "$bench" || continue
		row=""
		for plat in ptrace systrap; do
			row+=" $(ratio "$(median_of "cryo-$plat" "$bench")" "$(median_of "cryo-base-$plat" "$bench")") |"
		done
		printf '| %s |%s\n' "$bench" "$row"
	done
fi

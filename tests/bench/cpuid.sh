#!/usr/bin/env bash
# The cost of a cpuid instruction: natively, under cryo with
# --cpu-features=host (cpuid runs on the CPU) and with
# --cpu-features=x86-64-v2 (cpuid faults, CPUID faulting, and the Sentry
# answers it from the masked set), on each of cryo's platforms.
#
#   tests/bench/cpuid.sh > results.md
#
# glibc and libgcc execute cpuid a few dozen times at start-up (IFUNC
# selection), so this is what a profile adds to every exec; a program that
# executes cpuid in a loop pays it each time. Each system runs REPS times,
# interleaved; the table gives the median ns per cpuid, min–max and the
# ratio against native.
#
# Needs: gcc with static glibc, a cryo binary, a CPU with CPUID faulting for
# the profile rows (`cryo doctor` says; without it they fail, naming why).
# Knobs (environment): CRYO (a cryo binary; default target/release/cryo,
# built if missing), REPS (5), N_NATIVE (1000000), N (20000), SYSTEMS
# ("native cryo-systrap-host cryo-systrap-v2 cryo-ptrace-host
# cryo-ptrace-v2"), TIMEOUT (120 s per run).
set -euo pipefail
export LC_ALL=C
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

REPS=${REPS:-5}
N_NATIVE=${N_NATIVE:-1000000}
N=${N:-20000}
TIMEOUT=${TIMEOUT:-120}
read -r -a SYSTEMS <<<"${SYSTEMS:-native cryo-systrap-host cryo-systrap-v2 cryo-ptrace-host cryo-ptrace-v2}"

W=$(mktemp -d /tmp/cryo-bench-cpuid.XXXXXX)
chmod 755 "$W"
trap 'rm -rf "$W"' EXIT
build_static "$W/cpuid_loop" "$BENCH_DIR/guests/cpuid_loop.c"
find_cryo "$W/build.log"

# run SYSTEM: one measurement's ns_per_op on stdout, or "failed: why".
run() {
	local sys=$1 out
	case $sys in
	native) out=$(timeout "$TIMEOUT" "$W/cpuid_loop" "$N_NATIVE" 2>&1) || true ;;
	cryo-*)
		if [[ -z $CRYO_BIN ]]; then
			printf 'failed: %s' "$CRYO_FAIL"
			return
		fi
		local rest=${sys#cryo-} platform profile
		platform=${rest%-*}
		profile=${rest##*-}
		[[ $profile == v2 ]] && profile=x86-64-v2
		out=$(timeout "$TIMEOUT" "$CRYO_BIN" --root "$W/root" --platform "$platform" \
			--cpu-features "$profile" do -- "$W/cpuid_loop" "$N" 2>&1) || true
		;;
	*) out="unknown system $sys" ;;
	esac
	local ns
	ns=$(printf '%s\n' "$out" | sed -n 's/.*ns_per_op=\([0-9.]*\).*/\1/p')
	if [[ -n $ns ]]; then printf '%s' "$ns"; else printf 'failed: %s' "$(one_line "$out")"; fi
}

declare -A FAIL
for ((r = 1; r <= REPS; r++)); do
	for sys in "${SYSTEMS[@]}"; do
		log "rep $r/$REPS: $sys"
		v=$(run "$sys")
		if [[ $v == failed:* ]]; then FAIL[$sys]=${v#failed: }; else echo "$v" >>"$W/$sys.ns"; fi
	done
done

native=$(stats "$W/native.ns" | awk '{ print $1 }')
echo "## cpuid cost"
echo
echo "cryo: ${CRYO_BIN:-none} (${CRYO_NOTE:-$CRYO_FAIL}); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'); $REPS reps, interleaved"
echo
echo "| system | ns per cpuid (median) | min–max | vs native |"
echo "|---|---|---|---|"
for sys in "${SYSTEMS[@]}"; do
	if [[ -n ${FAIL[$sys]:-} ]]; then
		echo "| $sys | failed: ${FAIL[$sys]} | | |"
		continue
	fi
	read -r med lo hi <<<"$(stats "$W/$sys.ns")"
	echo "| $sys | $(fmt "$med") | $(fmt "$lo")–$(fmt "$hi") | $(ratio "$med" "$native") |"
done

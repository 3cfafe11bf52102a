#!/usr/bin/env bash
# Container start as an OCI runtime: cryo against gVisor's runsc (and runc,
# where it can run containers), in one interleaved run.
#
#   sudo tests/bench/oci.sh > results.md
#
# Measures, for each runtime, the wall time of:
#   podman run   `podman --runtime R run --rm --network none --rootfs DIR
#                /bin/true` (podman, conmon, the runtime's create/start/
#                delete and the container's /bin/true)
#   run          `R --root ROOT run --bundle B ID`: create, start, the
#                container's /bin/true in the foreground, and the delete
#                a foreground run does itself when the container exits
#   podman checkpoint / restore
#                `podman container checkpoint NAME` of a running
#                container (a shell printing a counter every 100 ms), then
#                `podman container restore NAME`, each until podman
#                returns (podman asks the runtime whether it checkpoints;
#                a runtime that cannot gets "failed: <podman's reason>")
# DIR and B hold a busybox-static root. Each measurement runs REPS times,
# the runtimes interleaved; the table gives the median, min–max and the
# ratio against runsc. A runtime that cannot run gets "failed: <reason>".
#
# Needs: root, podman (tests/scripts/deps.sh installs it), busybox-static,
# the anchors' runsc (shared/anchors/install-anchors -> /opt/cryo-anchors).
# Knobs (environment): CRYO, ANCHORS, RUNSC, RUNC (/usr/sbin/runc),
# REPS (10), RUNTIMES ("cryo runsc runc"), TIMEOUT (60 s per command).
set -euo pipefail
export LC_ALL=C
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

REPS=${REPS:-10}
RUNC=${RUNC:-/usr/sbin/runc}
TIMEOUT=${TIMEOUT:-60}
read -r -a RUNTIMES <<<"${RUNTIMES:-cryo runsc runc}"

need_root
command -v podman >/dev/null || die "no podman: run tests/scripts/deps.sh"
BUSYBOX=$(command -v busybox) || die "no busybox: run tests/scripts/deps.sh"

W=$(mktemp -d /tmp/cryo-bench-oci.XXXXXX)
cleanup() {
	local rc=$?
	trap - EXIT
	podman rm -af >/dev/null 2>&1 || true
	rm -rf "$W"
	exit "$rc"
}
trap cleanup EXIT
mkdir -p "$W/res"

find_cryo "$W/cargo-build.log"
[[ -n $CRYO_BIN ]] || log "cryo: $CRYO_FAIL"

# A busybox root, as a bundle for the runtimes and as podman's --rootfs.
ROOTFS=$W/bundle/rootfs
mkdir -p "$ROOTFS/bin" "$ROOTFS/etc" "$ROOTFS/proc" "$ROOTFS/dev" "$ROOTFS/sys" "$ROOTFS/tmp"
cp "$BUSYBOX" "$ROOTFS/bin/busybox"
for applet in sh true sleep echo; do ln -sf busybox "$ROOTFS/bin/$applet"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$ROOTFS/etc/passwd"
(cd "$W/bundle" && "$RUNSC" spec -- /bin/true) || die "runsc spec failed"
sed -i 's/"terminal": *true/"terminal": false/' "$W/bundle/config.json"

# The runtime command line for runtime $1 (global flags included).
runtime_cmd() {
	case $1 in
	cryo) printf '%s\n' "$CRYO_BIN" ;;
	runsc) printf '%s\n' "$RUNSC" --network=none ;;
	runc) printf '%s\n' "$RUNC" ;;
	esac
}

# The runtime binary podman gets for $1, and its extra podman flags.
podman_runtime() {
	case $1 in
	cryo) printf '%s\n' --runtime "$CRYO_BIN" ;;
	runsc) printf '%s\n' --runtime "$RUNSC" --runtime-flag network=none ;;
	runc) printf '%s\n' --runtime "$RUNC" ;;
	esac
}

declare -A FAIL=()

# timed KEY CMD...: runs CMD, appends its wall time (ms) to res/KEY, or
# records why it failed.
timed() {
	local key=$1 t0 t1 out
	shift
	t0=$(now_us)
	if ! out=$(timeout "$TIMEOUT" "$@" 2>&1 </dev/null); then
		FAIL[$key]=$(one_line "$out")
		return 1
	fi
	t1=$(now_us)
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f\n", (b - a) / 1000 }' >>"$W/res/$key"
}

bench_podman() {
	local r=$1 flags
	mapfile -t flags < <(podman_runtime "$r")
	timed "$r.podman" podman "${flags[@]}" run --rm --network none --rootfs "$ROOTFS" /bin/true
}

bench_run_delete() {
	local r=$1 rep=$2 cmd
	mapfile -t cmd < <(runtime_cmd "$r")
	local R=$W/root-$r B=$W/bundle ID=bench-$r-$rep
	mkdir -p "$R"
	local ok=0
	timed "$r.run" "${cmd[@]}" --root "$R" run --bundle "$B" "$ID" || ok=1
	# Nothing is left after a foreground run; this only cleans up a failure.
	"${cmd[@]}" --root "$R" delete --force "$ID" >/dev/null 2>&1 || true
	return "$ok"
}

# podman checkpoint and restore of one running container, each timed.
bench_podman_checkpoint() {
	local r=$1 rep=$2 flags name=bench-ckpt-$1-$2
	mapfile -t flags < <(podman_runtime "$r")
	local ok=0
	if ! out=$(podman "${flags[@]}" run -d --name "$name" --network none --rootfs "$ROOTFS" \
		sh -c 'i=0; while :; do i=$((i+1)); echo $i; sleep 0.1; done' 2>&1); then
		FAIL[$r.pckpt]=$(one_line "$out")
		FAIL[$r.prestore]=${FAIL[$r.pckpt]}
		return 1
	fi
	for _ in $(seq 100); do
		[[ -n $(podman logs "$name" 2>/dev/null) ]] && break
		sleep 0.05
	done
	if timed "$r.pckpt" podman container checkpoint "$name"; then
		timed "$r.prestore" podman container restore "$name" || ok=1
	else
		FAIL[$r.prestore]="no checkpoint to restore"
		ok=1
	fi
	podman rm -f "$name" >/dev/null 2>&1 || true
	return "$ok"
}

for r in "${RUNTIMES[@]}"; do
	case $r in
	cryo) [[ -n $CRYO_BIN ]] || FAIL[cryo]=$CRYO_FAIL ;;
	runsc) [[ -x $RUNSC ]] || FAIL[runsc]="no runsc at $RUNSC: run shared/anchors/install-anchors" ;;
	runc) [[ -x $RUNC ]] || FAIL[runc]="no runc at $RUNC" ;;
	*) die "unknown runtime $r (known: cryo runsc runc)" ;;
	esac
done

for ((rep = 1; rep <= REPS; rep++)); do
	for r in "${RUNTIMES[@]}"; do
		[[ -z ${FAIL[$r]:-} ]] || continue
		log "run $rep/$REPS: $r"
		[[ -n ${FAIL[$r.podman]:-} ]] || bench_podman "$r" || log "$r podman run failed: ${FAIL[$r.podman]}"
		[[ -n ${FAIL[$r.run]:-} ]] || bench_run_delete "$r" "$rep" || log "$r run failed: ${FAIL[$r.run]}"
		[[ -n ${FAIL[$r.pckpt]:-} ]] || bench_podman_checkpoint "$r" "$rep" ||
			log "$r podman checkpoint/restore failed: ${FAIL[$r.pckpt]:-${FAIL[$r.prestore]:-}}"
	done
done

cell() {
	local med lo hi
	read -r med lo hi < <(stats "$W/res/$1") || true
	if [[ -z ${med:-} ]]; then
		printf 'failed: %s' "${FAIL[${1%%.*}]:-${FAIL[$1]:-no result}}"
		return
	fi
	printf '%s (%s–%s)' "$(fmt "$med")" "$(fmt "$lo")" "$(fmt "$hi")"
}
median_of() { stats "$W/res/$1" | cut -d' ' -f1; }

cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
printf '# cryo OCI runtime benchmarks\n\n'
printf -- '- date: %s; host: Linux %s, %s, %s CPUs\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(uname -r)" "$cpu" "$(nproc)"
while read -r line; do printf -- '- %s\n' "$line"; done < <(anchors_versions)
printf -- '- podman %s; runc %s\n' "$(podman --version | awk '{ print $3 }')" "$("$RUNC" --version 2>/dev/null | awk 'NR == 1 { print $3 }')"
[[ -z $CRYO_BIN ]] || printf -- '- cryo: %s (%s)\n' "$CRYO_BIN" "$CRYO_NOTE"
printf -- '- %s runs per runtime, interleaved; cells: median (min–max) in ms of wall time\n\n' "$REPS"
printf '| benchmark | runtime | time (ms) | × runsc |\n|---|---|---:|---:|\n'
for what in podman run pckpt prestore; do
	case $what in
	podman) name='podman run --rm /bin/true' ;;
	run) name='run (create+start+/bin/true+delete)' ;;
	pckpt) name='podman container checkpoint' ;;
	prestore) name='podman container restore' ;;
	esac
	for r in "${RUNTIMES[@]}"; do
		printf '| %s | %s | %s | %s |\n' "$name" "$r" "$(cell "$r.$what")" \
			"$(ratio "$(median_of "$r.$what")" "$(median_of "runsc.$what")")"
	done
done

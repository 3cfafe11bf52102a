#!/usr/bin/env bash
# Loopback networking cost: cryo's in-Sentry TCP/UDP stack against native
# Linux and gVisor's runsc (netstack), in one interleaved run.
#
#   sudo tests/bench/inet.sh > results.md
#
# Measures, for each system (timed inside the guest, guests/inet_bench.c):
#   tcp round trip   ns per one-byte round trip between two processes
#   udp round trip   the same over datagrams
#   tcp bulk         ns per MiB (and MiB/s) from one process to another
#   redis SET/GET    ns per request of `redis-benchmark -q -n N_REDIS`
#                    against a redis-server in the same sandbox
# Each guest runs REPS times per system, the systems interleaved; the table
# gives the median, min–max and ratios against native and runsc.
# A system that cannot run gets "failed: <reason>" in its rows.
#
# Knobs (environment): CRYO, ANCHORS, RUNSC (as syscalls.sh), REPS (5),
# N_RR (2000; 50x natively), N_BULK (64 MiB; 4x natively), SYSTEMS ("native
# cryo-ptrace cryo-systrap runsc-ptrace runsc-systrap"), TIMEOUT (120 s).
set -euo pipefail
export LC_ALL=C
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

REPS=${REPS:-5}
N_RR=${N_RR:-2000}
N_BULK=${N_BULK:-64}
TIMEOUT=${TIMEOUT:-120}
read -r -a SYSTEMS <<<"${SYSTEMS:-native cryo-ptrace cryo-systrap runsc-ptrace runsc-systrap}"

W=$(mktemp -d /tmp/cryo-bench-inet.XXXXXX)
chmod 755 "$W"
trap 'rm -rf "$W"' EXIT
trap 'exit 130' INT TERM
log "work dir $W"
build_static "$W/inet_bench" "$BENCH_DIR/guests/inet_bench.c"

declare -A FAIL=() BFAIL=()
CRYO_BIN="" CRYO_FAIL="" CRYO_NOTE=""
for s in "${SYSTEMS[@]}"; do
	if [[ $s == cryo-* ]]; then
		[[ -n $CRYO_BIN || -n $CRYO_FAIL ]] || find_cryo "$W/cargo-build.log"
		[[ -z $CRYO_FAIL ]] || FAIL[$s]=$CRYO_FAIL
	fi
	if [[ $s == runsc-* && ! -x $RUNSC ]]; then
		FAIL[$s]="no runsc at $RUNSC (shared/anchors/install-anchors)"
	fi
done

prefix() {
	case $1 in
	native) PREFIX=() ;;
	cryo-ptrace | cryo-systrap) PREFIX=("$CRYO_BIN" --root "$W/cryo-root" "--platform=${1#cryo-}" "do" --) ;;
	runsc-ptrace | runsc-systrap) PREFIX=("$RUNSC" --network=none "--platform=${1#runsc-}" "do") ;;
	*) die "unknown system $1" ;;
	esac
}

run_guest() {
	local sys=$1 bench=$2 n out rc=0 ns
	case $bench in
	tcp_rr | udp_rr)
		n=$N_RR
		[[ $sys == native ]] && n=$((N_RR * 50))
		;;
	tcp_bulk)
		n=$N_BULK
		[[ $sys == native ]] && n=$((N_BULK * 4))
		;;
	esac
	prefix "$sys"
	out=$(timeout -k 5 "$TIMEOUT" "${PREFIX[@]}" "$W/inet_bench" "$bench" "$n" </dev/null 2>&1) || rc=$?
	ns=$(printf '%s\n' "$out" | sed -n 's/.*ns_per_op=\([0-9.]*\).*/\1/p' | tail -n1)
	if [[ $rc -ne 0 || -z $ns ]]; then
		BFAIL[$sys.$bench]="exit $rc: $(one_line "$out")"
		log "$sys $bench failed: ${BFAIL[$sys.$bench]}"
		return 0
	fi
	printf '%s\n' "$ns" >>"$W/$sys.$bench"
	log "$sys $bench: $ns ns/op"
}

# redis-server and redis-benchmark (Debian's) in one sandbox: requests per
# second of SET and GET over loopback, as ns per request.
REDIS_SH='port=$1
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize no >/dev/null 2>&1 &
for i in $(seq 150); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.2; done
redis-benchmark -q -n "$2" -p "$port" -t set,get --csv |
	awk -F, '"'"'{ gsub(/"/, ""); if ($1 == "SET" || $1 == "GET") printf "%s_ns=%.0f\n", tolower($1), 1e9 / $2 }'"'"'
redis-cli -p "$port" shutdown nosave >/dev/null 2>&1
wait'
N_REDIS=${N_REDIS:-20000}
run_redis() {
	local sys=$1 out rc=0 v k
	prefix "$sys"
	out=$(timeout -k 5 "$TIMEOUT" "${PREFIX[@]}" /bin/sh -c "$REDIS_SH" sh "$((20000 + RANDOM % 20000))" "$N_REDIS" </dev/null 2>&1) || rc=$?
	for k in set get; do
		v=$(printf '%s\n' "$out" | sed -n "s/^${k}_ns=\([0-9.]*\)$/\1/p" | tail -n1)
		if [[ $rc -ne 0 || -z $v ]]; then
			BFAIL[$sys.redis_$k]="exit $rc: $(one_line "$out")"
			log "$sys redis $k failed: ${BFAIL[$sys.redis_$k]}"
			continue
		fi
		printf '%s\n' "$v" >>"$W/$sys.redis_$k"
		log "$sys redis $k: $v ns/request"
	done
}
BENCHES=(tcp_rr udp_rr tcp_bulk)
if command -v redis-benchmark >/dev/null && command -v redis-server >/dev/null; then
	BENCHES+=(redis_set redis_get)
else
	log "no redis-server/redis-benchmark: tests/scripts/deps.sh installs them; redis rows left out"
fi

for ((rep = 1; rep <= REPS; rep++)); do
	log "round $rep/$REPS"
	for bench in tcp_rr udp_rr tcp_bulk; do
		for s in "${SYSTEMS[@]}"; do
			[[ -z ${FAIL[$s]:-} && -z ${BFAIL[$s.$bench]:-} ]] || continue
			run_guest "$s" "$bench"
		done
	done
	[[ " ${BENCHES[*]} " == *" redis_set "* ]] || continue
	for s in "${SYSTEMS[@]}"; do
		[[ -z ${FAIL[$s]:-} && -z ${BFAIL[$s.redis_set]:-} ]] || continue
		run_redis "$s"
	done
done

median_of() { stats "$W/$1.$2" | cut -d' ' -f1; }
printf '# cryo loopback networking benchmarks\n\n'
printf -- '- date: %s; host: Linux %s, %s CPUs\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(uname -r)" "$(nproc)"
[[ -z $CRYO_BIN ]] || printf -- '- cryo: %s (%s)\n' "$CRYO_BIN" "$CRYO_NOTE"
printf -- '- %s runs per system, interleaved; round trips %s (x50 natively), bulk %s MiB (x4 natively)\n\n' "$REPS" "$N_RR" "$N_BULK"
printf '| benchmark | system | median | min–max | × native | × runsc-ptrace | × runsc-systrap |\n'
printf '|---|---|---:|---:|---:|---:|---:|\n'
for bench in "${BENCHES[@]}"; do
	case $bench in
	tcp_rr) label="TCP round trip (ns)" ;;
	udp_rr) label="UDP round trip (ns)" ;;
	tcp_bulk) label="TCP bulk (ns per MiB)" ;;
	redis_set) label="redis-benchmark SET (ns per request)" ;;
	redis_get) label="redis-benchmark GET (ns per request)" ;;
	esac
	nat=$(median_of native "$bench")
	rp=$(median_of runsc-ptrace "$bench")
	rs=$(median_of runsc-systrap "$bench")
	for s in "${SYSTEMS[@]}"; do
		reason=${FAIL[$s]:-${BFAIL[$s.$bench]:-}}
		if [[ -n $reason ]]; then
			printf '| %s | %s | failed: %s | | | | |\n' "$label" "$s" "$reason"
			continue
		fi
		med="" lo="" hi=""
		read -r med lo hi < <(stats "$W/$s.$bench") || true
		if [[ -z ${med:-} ]]; then
			printf '| %s | %s | failed: no result | | | | |\n' "$label" "$s"
			continue
		fi
		printf '| %s | %s | %s | %s–%s | %s | %s | %s |\n' "$label" "$s" \
			"$(fmt "$med" 0)" "$(fmt "$lo" 0)" "$(fmt "$hi" 0)" \
			"$(ratio "$med" "$nat")" "$(ratio "$med" "$rp")" "$(ratio "$med" "$rs")"
	done
done

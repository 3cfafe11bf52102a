#!/usr/bin/env bash
# File system costs: cryo against native Linux and gVisor's runsc (systrap
# and ptrace), in one interleaved run (issue 10's benchmark).
#
#   sudo tests/bench/fs.sh > fs.md
#
# Measures, for each system (medians of REPS runs, the systems interleaved):
#   open/read/close  ns per open+read 256 B+close of a small host file
#   stat 8 deep      ns per stat() of a host file eight components deep
#   find /usr/lib    ms of `find /usr/lib -xdev | wc -l` over the host root
#   du /usr/share    ms of `du -s /usr/share`
#   files tmpfs      ms to create and then delete N_FILES files in /dev/shm
#   files overlay    the same in a directory of the root (/tmp): the overlay
#                    in cryo and runsc, the host's disk natively
#   read 100 MB      ms to read a 100 MiB host file sequentially (1 MiB reads)
#   tar xzf          ms of `tar xzf` of a gzip archive of /usr/include
#                    (its size is in the report) into /tmp
#   sqlite3 inserts  ms of sqlite3 running N_ROWS INSERTs in one transaction
#                    into a new database in /tmp
# Each is timed inside the sandbox (CLOCK_MONOTONIC in a guest, or `date
# +%s%N` around the command in `sh -c`), so sandbox start-up is left out.
#
# Needs: root (runsc do), gcc with static glibc, the anchors
# (shared/anchors/install-anchors -> /opt/cryo-anchors), sqlite3, tar, gzip.
# Knobs (environment): CRYO (default target/release/cryo, built if missing),
# CRYO_BEFORE (another cryo binary, shown as the system "cryo-before", e.g.
# an older build, for a before/after), ANCHORS, RUNSC, REPS (3),
# N_ORC (5000; 20x natively), N_STAT (5000; 20x natively), N_FILES (10000),
# N_ROWS (10000), SYSTEMS ("native cryo-systrap runsc-systrap runsc-ptrace";
# also cryo-ptrace, cryo-before), BENCHES (all of: orc stat8 find du
# files_tmpfs files_overlay read tar sqlite), TIMEOUT (300 s per run).
set -euo pipefail
export LC_ALL=C
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

REPS=${REPS:-3}
N_ORC=${N_ORC:-5000}
N_STAT=${N_STAT:-5000}
N_FILES=${N_FILES:-10000}
N_ROWS=${N_ROWS:-10000}
TIMEOUT=${TIMEOUT:-300}
read -r -a SYSTEMS <<<"${SYSTEMS:-native cryo-systrap runsc-systrap runsc-ptrace}"
read -r -a BENCHES <<<"${BENCHES:-orc stat8 find du files_tmpfs files_overlay read tar sqlite}"

need_root
[[ -x $RUNSC ]] || die "no runsc at $RUNSC: run shared/anchors/install-anchors as root first"
for p in sqlite3 tar gzip find du; do
	command -v "$p" >/dev/null || die "$p is missing"
done

# The work dir must be visible inside the sandboxes (their root is the
# host's, read-only, with writes kept in memory): /tmp is.
W=$(mktemp -d /tmp/cryo-bench-fs.XXXXXX)
chmod 755 "$W"
cleanup() {
	local rc=$?
	rm -rf "$W"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "work dir $W"
build_static "$W/open_read_close" "$BENCH_DIR/guests/open_read_close.c"
build_static "$W/fs_ops" "$BENCH_DIR/guests/fs_ops.c"
printf 'small host file\n' >"$W/small"
mkdir -p "$W/d1/d2/d3/d4/d5/d6/d7"
printf 'eight deep\n' >"$W/d1/d2/d3/d4/d5/d6/d7/f8"
log "making a 100 MiB file and the tar archive"
head -c $((100 << 20)) /dev/urandom >"$W/big"
tar czf "$W/include.tgz" -C /usr include
TGZ_MB=$(du -m "$W/include.tgz" | cut -f1)
{
	echo "BEGIN;"
	for ((i = 1; i <= N_ROWS; i++)); do
		printf "INSERT INTO t VALUES(%d, 'row number %d');\n" "$i" "$i"
	done
	echo "COMMIT;"
} >"$W/inserts.sql"
FIND_N=$(find /usr/lib -xdev | wc -l)
DU_N=$(find /usr/share -xdev | wc -l)

declare -A FAIL=()  # FAIL[system]: why the system could not run at all
declare -A BFAIL=() # BFAIL[system.bench]: why one benchmark failed

CRYO_BIN=""
CRYO_FAIL=""
CRYO_NOTE=""

for s in "${SYSTEMS[@]}"; do
	case $s in
	cryo-before)
		[[ -x ${CRYO_BEFORE:-} ]] || FAIL[$s]="CRYO_BEFORE is not set to a cryo binary"
		;;
	cryo | cryo-*)
		[[ -n $CRYO_BIN || -n $CRYO_FAIL ]] || find_cryo "$W/cargo-build.log"
		[[ -z $CRYO_FAIL ]] || FAIL[$s]=$CRYO_FAIL
		;;
	esac
done

# prefix SYSTEM: sets PREFIX to the command line that runs a program in SYSTEM.
prefix() {
	case $1 in
	native) PREFIX=() ;;
	cryo) PREFIX=("$CRYO_BIN" --root "$W/cryo-root" "do" --) ;;
	cryo-before) PREFIX=("$CRYO_BEFORE" --root "$W/cryo-root" "--platform=systrap" "do" --) ;;
	cryo-ptrace | cryo-systrap)
		PREFIX=("$CRYO_BIN" --root "$W/cryo-root" "--platform=${1#cryo-}" "do" --)
		;;
	runsc-ptrace | runsc-systrap)
		PREFIX=("$RUNSC" --network=none "--platform=${1#runsc-}" "do")
		;;
	*) die "unknown system $1" ;;
	esac
}

# timed COMMAND: a sh -c script that runs COMMAND (stdout discarded, so a
# failure's stderr is what is left) and prints ms= of it.
timed() {
	printf 't0=$(date +%%s%%N); %s >/dev/null || exit 1; t1=$(date +%%s%%N); echo ms=$(( (t1 - t0) / 1000 ))e-3' "$1"
}

# run SYSTEM BENCH: one run; appends its number to $W/SYSTEM.BENCH or sets BFAIL.
run() {
	local sys=$1 bench=$2 out rc=0 v key=ms mult=1 tmp
	local -a args
	# Scratch space inside the sandbox: /tmp (the overlay in a sandbox).
	tmp=/tmp/cryo-bench-fs-work.$sys.$bench
	[[ $sys == native ]] && mult=20
	case $bench in
	orc)
		args=("$W/open_read_close" $((N_ORC * mult)) "$W/small")
		key=ns_per_op
		;;
	stat8)
		args=("$W/fs_ops" stat "$W/d1/d2/d3/d4/d5/d6/d7/f8" $((N_STAT * mult)))
		key=ns_per_op
		;;
	find) args=(/bin/sh -c "$(timed 'find /usr/lib -xdev | wc -l')") ;;
	du) args=(/bin/sh -c "$(timed 'du -s /usr/share')") ;;
	files_tmpfs)
		args=(/bin/sh -c "d=/dev/shm/cryo-bench-fs.$sys; rm -rf \$d; mkdir \$d && $W/fs_ops files \$d $N_FILES; rmdir \$d")
		;;
	files_overlay)
		args=(/bin/sh -c "d=$tmp; rm -rf \$d; mkdir \$d && $W/fs_ops files \$d $N_FILES; rmdir \$d")
		;;
	read) args=("$W/fs_ops" read "$W/big") ;;
	tar)
		args=(/bin/sh -c "rm -rf $tmp; mkdir $tmp && $(timed "tar xzf $W/include.tgz -C $tmp"); rm -rf $tmp")
		;;
	sqlite)
		args=(/bin/sh -c "rm -rf $tmp; mkdir $tmp && $(timed "sqlite3 $tmp/db 'CREATE TABLE t(i INTEGER, v TEXT)' && sqlite3 $tmp/db < $W/inserts.sql"); rm -rf $tmp")
		;;
	*) die "unknown benchmark $bench" ;;
	esac
	prefix "$sys"
	out=$(timeout -k 5 "$TIMEOUT" "${PREFIX[@]}" "${args[@]}" </dev/null 2>&1) || rc=$?
	v=$(printf '%s\n' "$out" | sed -n "s/.*$key=\([0-9.e-]*\).*/\1/p" | tail -n1)
	if [[ $rc -ne 0 || -z $v ]]; then
		if [[ $rc -eq 124 ]]; then
			BFAIL[$sys.$bench]="timed out after ${TIMEOUT}s"
		else
			BFAIL[$sys.$bench]="exit $rc: $(one_line "$out")"
		fi
		log "$sys $bench failed: ${BFAIL[$sys.$bench]}"
		return 0
	fi
	v=$(awk -v x="$v" 'BEGIN { printf "%.3f", x }')
	printf '%s\n' "$v" >>"$W/$sys.$bench"
	log "$sys $bench: $v $key"
}

# Correctness first: what find and du report in a sandbox against the
# host's. A difference is noted in the table (runsc's du counts other block
# totals); a failing command fails its timed runs by itself.
declare -A NOTE=() # NOTE[system.bench]: how its result differed from native
check_same() {
	local sys=$1 what=$2 want=$3 got rc=0
	prefix "$sys"
	got=$(timeout -k 5 "$TIMEOUT" "${PREFIX[@]}" /bin/sh -c "$what" </dev/null 2>/dev/null) || rc=$?
	if [[ $rc -ne 0 || $got != "$want" ]]; then
		NOTE[$sys.$4]="result differs: '$(one_line "$got")' (exit $rc), natively '$(one_line "$want")'"
		log "$sys $4: ${NOTE[$sys.$4]}"
	fi
}
for s in "${SYSTEMS[@]}"; do
	[[ $s != native && -z ${FAIL[$s]:-} ]] || continue
	check_same "$s" 'find /usr/lib -xdev | wc -l' "$FIND_N" find
	check_same "$s" 'du -s /usr/share' "$(du -s /usr/share)" du
done

for ((rep = 1; rep <= REPS; rep++)); do
	log "round $rep/$REPS"
	for bench in "${BENCHES[@]}"; do
		for s in "${SYSTEMS[@]}"; do
			[[ -z ${FAIL[$s]:-} && -z ${BFAIL[$s.$bench]:-} ]] || continue
			run "$s" "$bench"
		done
	done
done

# --- report -----------------------------------------------------------------
title() {
	case $1 in
	orc) echo "open/read/close small host file (ns)" ;;
	stat8) echo "stat, 8 components deep (ns)" ;;
	find) echo "find /usr/lib -xdev ($FIND_N entries) (ms)" ;;
	du) echo "du -s /usr/share ($DU_N entries) (ms)" ;;
	files_tmpfs) echo "create+delete $N_FILES files, tmpfs (ms)" ;;
	files_overlay) echo "create+delete $N_FILES files, overlay /tmp (ms)" ;;
	read) echo "read 100 MiB host file (ms)" ;;
	tar) echo "tar xzf ${TGZ_MB} MB archive (ms)" ;;
	sqlite) echo "sqlite3 $N_ROWS inserts (ms)" ;;
	esac
}
echo "# File system benchmark"
echo
echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), $(uname -r), $(nproc) CPUs; medians of $REPS runs, min–max in brackets."
echo "cryo: ${CRYO_BIN:-none} (${CRYO_NOTE:-${CRYO_FAIL:-}})${CRYO_BEFORE:+; cryo-before: $CRYO_BEFORE}"
anchors_versions | sed 's/^/; /' | tr -d '\n'
echo
echo
printf '| benchmark |'
for s in "${SYSTEMS[@]}"; do printf ' %s |' "$s"; done
ratio_vs=""
for s in "${SYSTEMS[@]}"; do [[ $s == runsc-systrap ]] && ratio_vs=runsc-systrap; done
printf ' cryo-systrap / native | cryo-systrap / %s |\n' "${ratio_vs:-–}"
printf '|---|'
for _ in "${SYSTEMS[@]}" 1 2; do printf -- '---|'; done
echo
for bench in "${BENCHES[@]}"; do
	printf '| %s |' "$(title "$bench")"
	declare -A MED=()
	for s in "${SYSTEMS[@]}"; do
		if [[ -n ${FAIL[$s]:-} ]]; then
			printf ' failed: %s |' "${FAIL[$s]}"
		elif [[ -n ${BFAIL[$s.$bench]:-} ]]; then
			printf ' failed: %s |' "${BFAIL[$s.$bench]}"
		else
			read -r med lo hi <<<"$(stats "$W/$s.$bench")"
			MED[$s]=$med
			printf ' %s [%s–%s]%s |' "$(fmt "$med")" "$(fmt "$lo")" "$(fmt "$hi")" \
				"${NOTE[$s.$bench]:+ ($(printf '%s' "${NOTE[$s.$bench]}" | tr '\t' ' '))}"
		fi
	done
	printf ' %s | %s |\n' "$(ratio "${MED[cryo-systrap]:-}" "${MED[native]:-}")" \
		"$(ratio "${MED[cryo-systrap]:-}" "${MED[${ratio_vs:-none}]:-}")"
	unset MED
done

# shellcheck shell=bash
# Helpers shared by tests/bench/syscalls.sh and tests/bench/checkpoint.sh.
# Sourced, not run. Needs bash >= 5 (EPOCHREALTIME), awk, sort.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$BENCH_DIR/../.." && pwd)
ANCHORS=${ANCHORS:-/opt/cryo-anchors}
RUNSC=${RUNSC:-$ANCHORS/bin/runsc}
CRIU=${CRIU:-$ANCHORS/bin/criu}

log() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

# now_us: microseconds since the epoch, without forking (bash 5's EPOCHREALTIME;
# LC_ALL=C keeps its decimal separator a dot).
now_us() { local t=$EPOCHREALTIME; printf '%s' "${t/./}"; }

# one_line TEXT: the first line of TEXT that mentions an error, else its last
# non-empty line, made safe for a Markdown table cell (no pipes, at most 100
# characters).
one_line() {
	local s
	s=$(printf '%s\n' "$1" | tr -d '\r\0' | awk 'NF { l = $0 } NF && !e && tolower($0) ~ /error|fail|panic|unrecognized|unexpected|no such/ { e = $0 } END { print (e != "" ? e : l) }')
	s=${s//|/\/}
	[[ -n $s ]] || s="no output"
	printf '%s' "${s:0:100}"
}

# stats FILE: "median min max" of the numbers in FILE (one per line);
# prints nothing if FILE is missing or empty.
stats() {
	[[ -s $1 ]] || return 0
	sort -g "$1" | awk '{ v[NR] = $1 }
		END {
			if (NR == 0) exit
			m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
			printf "%.6g %.6g %.6g\n", m, v[1], v[NR]
		}'
}

# fmt NUMBER [DECIMALS]: a number for a table cell.
fmt() { awk -v x="$1" -v d="${2:-1}" 'BEGIN { printf "%.*f", d, x }'; }

# ratio A B: "A/B" as "12.3x", or "–" when either is missing or B is 0.
ratio() {
	if [[ -z ${1:-} || -z ${2:-} ]]; then
		printf '–'
		return
	fi
	awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) printf "–"; else if (a / b >= 10) printf "%.0fx", a / b; else if (a / b >= 0.1) printf "%.2fx", a / b; else printf "%.2gx", a / b }'
}

# build_static OUT SRC...: gcc -O2 -static, with tests/guests on the include path.
build_static() {
	local out=$1
	shift
	gcc -O2 -static -Wall -Wextra -I"$REPO_ROOT/tests/guests" -o "$out" "$@" ||
		die "gcc -static failed for $*"
}

# find_cryo LOGFILE: sets CRYO_BIN to a cryo binary or, when there is none,
# CRYO_FAIL to the reason; CRYO_NOTE says where the binary came from. With
# $CRYO set, that binary is used as is; otherwise `cargo build --release -p cli`
# brings target/release/cryo up to date (a no-op when it is), and if that
# build fails an existing older binary is used, marked stale. Never exits.
# shellcheck disable=SC2034 # CRYO_BIN, CRYO_FAIL and CRYO_NOTE are the results
find_cryo() {
	CRYO_BIN=""
	CRYO_FAIL=""
	CRYO_NOTE=""
	if [[ -n ${CRYO:-} ]]; then
		if [[ -x $CRYO ]]; then
			CRYO_BIN=$(realpath "$CRYO")
			CRYO_NOTE="\$CRYO"
		else
			CRYO_FAIL="\$CRYO=$CRYO is not an executable"
		fi
		return 0
	fi
	local bin=$REPO_ROOT/target/release/cryo
	log "building cryo: cargo build --release -p cli (log: $1)"
	if (cd "$REPO_ROOT" && cargo build --release -p cli) >"$1" 2>&1; then
		CRYO_NOTE="built from $(cd "$REPO_ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?') plus uncommitted changes, if any"
	else
		local why
		why="cargo build --release -p cli failed: $(one_line "$(grep -m1 -E '^error' "$1" || tail -n1 "$1")")"
		if [[ -x $bin ]]; then
			log "warning: $why; using the older $bin"
			CRYO_NOTE="STALE binary of $(date -r "$bin" -u +%Y-%m-%dT%H:%M:%SZ) ($why)"
		else
			CRYO_FAIL=$why
			return 0
		fi
	fi
	if [[ -x $bin ]]; then
		CRYO_BIN=$bin
	else
		CRYO_FAIL="no $bin after cargo build"
	fi
}

# need_root: the anchors (runsc, criu) need root; cryo does not.
need_root() {
	[[ $(id -u) -eq 0 ]] || die "run as root (runsc and criu need it); see tests/bench/README.md"
}

# anchors_versions: one line per reference system, for the report.
anchors_versions() {
	if [[ -r $ANCHORS/MANIFEST ]]; then
		grep -E '^(runsc|criu) ' "$ANCHORS/MANIFEST" | awk '!seen[$1]++ { printf "%s %s (Debian trixie package, %s)\n", $1, $2, "'"$ANCHORS"'/MANIFEST" }'
	else
		printf 'runsc: %s\n' "$("$RUNSC" --version 2>/dev/null | head -n1 || echo missing)"
		printf 'criu: %s\n' "$("$CRIU" --version 2>/dev/null | head -n1 || echo missing)"
	fi
}

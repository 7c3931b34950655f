#!/bin/sh
# Runs every fuzz target (or those named) for N seconds each; exits
# non-zero if any target crashed, hung or ran out of memory.
#
#   ./run.sh [-t SECONDS] [-j JOBS] [-k] [TARGET...]
#
#   -t  seconds per target (default 60)
#   -j  targets run at once (default 1)
#   -k  keep going after a crash (libFuzzer fork mode): collect every
#       crash of the run instead of stopping at the first; about ten
#       times fewer executions per second
#
# Environment: SANITIZER (default none; "address" works too), CARGO_TARGET_DIR.
# Crashes land in artifacts/<target>/; the corpus grows in corpus/<target>/
# on top of the checked-in seeds/<target>/.
set -eu

cd "$(dirname "$0")"

secs=60
jobs=1
keep=
while getopts t:j:k opt; do
	case $opt in
	t) secs=$OPTARG ;;
	j) jobs=$OPTARG ;;
	k) keep=1 ;;
	*) sed -n '2,18s/^# \{0,1\}//p' "$0" >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))

targets=${*:-$(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^iscsid-fuzz$')}
san=${SANITIZER:-none}

# No nightly toolchain here: RUSTC_BOOTSTRAP lets stable accept the -Z
# flags cargo-fuzz passes (sanitizer coverage, -Zsanitizer=address).
export RUSTC_BOOTSTRAP=1

[ -d seeds ] || cargo run -q --example seeds -- seeds
cargo fuzz build -s "$san"

dict() {
	case $1 in
	config) echo dicts/config.dict ;;
	text | negotiate | chap | session_login | session_ffp) echo dicts/iscsi.dict ;;
	esac
}

maxlen() {
	case $1 in
	framer | session_login | session_ffp | imsg | emuproto) echo 16384 ;;
	*) echo 4096 ;;
	esac
}

# iscsi.conf names are resolved with getaddrinfo(3), so fuzzed configs
# would send junk queries to the DNS server and wait seconds on each: run
# without a network where we can (no target needs one).
isolate=
unshare -n true 2>/dev/null && isolate="unshare -n"

# Crashes, hangs, memory blow-ups and leaks; slow-unit-* files are only noted.
problems() {
	ls "artifacts/$1" | grep -cE '^(crash|timeout|oom|leak)-' || true
}

mkdir -p logs
run_one() {
	t=$1
	mkdir -p "corpus/$t" "artifacts/$t" "seeds/$t"
	set -- -max_total_time="$secs" -max_len="$(maxlen "$t")" -timeout=10 \
		-rss_limit_mb=2048 -print_final_stats=1
	d=$(dict "$t")
	[ -n "$d" ] && set -- "$@" -dict="$d"
	[ -n "$keep" ] && set -- "$@" -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1
	before=$(problems "$t")
	slow_before=$(ls "artifacts/$t" | grep -c '^slow-unit-' || true)
	rc=0
	$isolate cargo fuzz run -s "$san" "$t" "corpus/$t" "seeds/$t" -- "$@" \
		>"logs/$t.log" 2>&1 || rc=$?
	after=$(problems "$t")
	slow=$(($(ls "artifacts/$t" | grep -c '^slow-unit-' || true) - slow_before))
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "logs/$t.log" | tail -n 1)
	# Fork mode prints no final stats; its progress lines start with the count.
	[ -n "$runs" ] || runs=$(grep -E '^#[0-9]+' "logs/$t.log" | tail -n 1 | sed 's/^#\([0-9]*\).*/\1/')
	last=$(grep -E '^#[0-9]+' "logs/$t.log" | tail -n 1 | sed 's/^#[0-9]*[: 	]*//; s/^[A-Z]* *//')
	if [ "$rc" -ne 0 ] || [ "$after" -gt "$before" ]; then
		echo "$t: CRASH (exit $rc, $((after - before)) new in artifacts/$t, log logs/$t.log)"
		return 1
	fi
	note=
	[ "$slow" -gt 0 ] && note=" ($slow new slow-unit in artifacts/$t)"
	echo "$t: ok, ${runs:-?} runs; $last$note"
}

failed=0
running=0
status=$(mktemp -d)
trap 'rm -rf "$status"' EXIT
for t in $targets; do
	(run_one "$t" || touch "$status/$t") &
	running=$((running + 1))
	if [ "$running" -ge "$jobs" ]; then
		wait
		running=0
	fi
done
wait
for f in "$status"/*; do
	[ -e "$f" ] && failed=1
done
exit "$failed"

#!/bin/sh
# Syscalls per I/O of iscsid's relay and engine (as root, on Debian): runs
# one benchmark case without the libiscsi baseline and, once it is under
# way, traces each process with strace -c for a fixed number of the
# kernel's commands, counted by "iscsictl show vscsi stats". Release
# binaries from target/release, or from -d DIR (an older build, to compare).
#
#   regress/syscalls.sh [-c case] [-n commands] [-d bindir]
#
#   -c  benchmark case (bench -h lists them; default 1, 4K rand read QD1)
#   -n  commands to trace (default 20000)
#   -d  directory with the iscsid and iscsictl to measure
set -eu
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "syscalls.sh: run as root" >&2; exit 1; }
command -v strace >/dev/null || apt-get install -y strace >/dev/null

case=1
count=20000
bindir=
while getopts c:n:d: opt; do
	case $opt in
	c) case=$OPTARG ;;
	n) count=$OPTARG ;;
	d) bindir=$OPTARG ;;
	*) sed -n '2,13s/^# \{0,1\}//p' "$0" >&2; exit 2 ;;
	esac
done
target=${CARGO_TARGET_DIR:-target}/release
bindir=${bindir:-$target}
out=$(mktemp -d /tmp/syscalls.XXXXXX)
trap 'kill $bench 2>/dev/null || true; rm -rf "$out"' EXIT

# Long enough to outlast the trace, which slows everything down.
ISCSID_BIN_DIR=$bindir "$target/bench" -c "$case" -n 1 -R 0 -x -S -t 600 \
    >"$out/bench" 2>&1 &
bench=$!
i=0
until grep -q "round 1" "$out/bench"; do
	i=$((i + 1))
	[ $i -lt 600 ] || { cat "$out/bench" >&2; exit 1; }
	sleep 0.1
done
relay=$(pgrep -P "$(pgrep -f "$bindir/iscsid -dv" | head -1)" -f -- "-R" | head -1)
engine=$(pgrep -P "$(pgrep -f "$bindir/iscsid -dv" | head -1)" -f -- "-E" | head -1)
sock=$(pgrep -af "$bindir/iscsid -dv" | head -1 | sed 's/.* -s \([^ ]*\).*/\1/')
commands() {
	"$bindir/iscsictl" -s "$sock" show vscsi stats |
	    awk '/ I2T calls / { print $1 }'
}
sleep 1
strace -c -f -o "$out/relay" -p "$relay" 2>/dev/null &
st1=$!
strace -c -f -o "$out/engine" -p "$engine" 2>/dev/null &
st2=$!
sleep 0.5
start=$(commands)
until [ $(($(commands) - start)) -ge "$count" ]; do
	sleep 0.25
done
done_=$(($(commands) - start))
kill -INT $st1 $st2
wait $st1 $st2 2>/dev/null || true
name=$("$target/bench" -h 2>&1 | sed -n "s/^  $case  //p")
echo "case $case ($name): $done_ commands traced, iscsid from $bindir"
for p in relay engine; do
	# strace -c rows: % time, seconds, usecs/call, calls, [errors,] name.
	awk -v n="$done_" -v p="$p" '
	    NF >= 5 && $1 ~ /^[0-9.]+$/ && $4 ~ /^[0-9]+$/ {
	        if ($NF == "total") total = $4; else calls[$NF] = $4 }
	    END {
	        printf "%-6s %6.2f syscalls per command:", p, total / n
	        for (c in calls) if (calls[c] / n >= 0.01) printf " %s %.2f", c, calls[c] / n
	        printf "\n"
	    }' "$out/$p"
done

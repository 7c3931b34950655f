#!/bin/sh
# The benchmark (as root, on Debian): installs what it needs, builds the
# release binaries and the write baseline (regress/perfwrite, against
# libiscsi) beside them, and runs regress/src/bin/bench from
# target/release so that the iscsid it starts is the release build.
# Arguments go to the benchmark (bench -h lists them), e.g.
#   sudo regress/bench.sh -n 2 -t 5 -o /tmp/bench.md
set -eu
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench.sh: run as root" >&2; exit 1; }
regress/setup.sh
cargo build --release --workspace --bins
release="${CARGO_TARGET_DIR:-target}/release"
cc -O2 -Wall -Werror -o "$release/iscsi-perf-write" \
    regress/perfwrite/iscsi-perf-write.c -liscsi
exec "$release/bench" "$@"

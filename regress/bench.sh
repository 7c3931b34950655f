#!/bin/sh
# The benchmark (as root, on Debian): installs what it needs, builds the
# release binaries, and runs regress/src/bin/bench.rs from target/release
# so that the iscsid it starts is the release build. Arguments go to the
# benchmark (bench -h lists them), e.g.
#   sudo regress/bench.sh -n 2 -t 5 -o /tmp/bench.md
set -eu
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench.sh: run as root" >&2; exit 1; }
regress/setup.sh
cargo build --release --workspace --bins
exec "${CARGO_TARGET_DIR:-target}/release/bench" "$@"

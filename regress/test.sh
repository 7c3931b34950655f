#!/bin/sh
# The whole test suite: unit tests, and integration tests that start tgtd
# and istgt on loopback, iscsid with the vscsi emulator, and check what
# comes back. Run as root on Debian.
set -eu
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "test.sh: run as root (privilege separation needs it)" >&2; exit 1; }
regress/setup.sh
cargo build --workspace --bins
cargo test --workspace -- --test-threads="${TEST_THREADS:-2}"

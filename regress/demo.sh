#!/bin/sh
# The demo (as root, on Debian): installs what it needs, builds, starts
# tgtd on loopback, iscsid with the vscsi emulator, attaches the disks,
# writes and reads back data, puts ext4 on a disk (FUSE file, loop device,
# mount, write, remount, read back, fsck), shows `iscsictl show`, stops
# everything.
set -eu
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "demo.sh: run as root" >&2; exit 1; }
regress/setup.sh
cargo build --release --workspace --bins
exec target/release/demo

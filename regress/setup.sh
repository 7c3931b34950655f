#!/bin/sh
# Installs what the demo, the tests and CI need on a fresh Debian machine
# (run as root): the real targets (tgt, istgt), libiscsi's tools and
# headers for the benchmark baseline (iscsi-perf, and the write tool built
# from regress/perfwrite), mandoc for the man pages, fio and e2fsprogs (and
# util-linux's losetup and mount) for the workloads on the FUSE disk files,
# bmake for the Makefile.bsd test, rust-src for the OpenBSD type-check,
# and the unprivileged user iscsid runs as. The FUSE layer mounts with
# mount(2) as root: no libfuse or fusermount is needed, only the kernel's
# fuse and loop drivers.
set -eu

need_pkgs=""
for p in tgt istgt libiscsi-bin libiscsi-dev mandoc iproute2 procps fio e2fsprogs util-linux mount bmake; do
	dpkg -s "$p" >/dev/null 2>&1 || need_pkgs="$need_pkgs $p"
done
if [ -n "$need_pkgs" ]; then
	echo "setup: installing$need_pkgs"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq $need_pkgs >/dev/null
fi

# The drivers may be modules not loaded yet (CI images); a kernel with them
# built in has the device nodes already.
for m in fuse:/dev/fuse loop:/dev/loop-control; do
	[ -e "${m#*:}" ] || modprobe "${m%%:*}" 2>/dev/null ||
	    echo "setup: WARNING: no ${m#*:} (modprobe ${m%%:*} failed); the FUSE workload tests will fail" >&2
done

if command -v rustup >/dev/null 2>&1; then
	rustup component list --installed 2>/dev/null | grep -q '^rust-src' ||
	    rustup component add rust-src >/dev/null 2>&1 ||
	    echo "setup: WARNING: could not install rust-src; the OpenBSD type-check will be skipped" >&2
fi

# iscsid's children chroot to the user's home and run as that user.
mkdir -p /var/empty
chmod 755 /var/empty
if ! id _iscsid >/dev/null 2>&1; then
	useradd --system --home-dir /var/empty --no-create-home \
	    --shell /usr/sbin/nologin _iscsid
fi
# A plain user for the "non-root client is refused" test.
if ! id _iscsitest >/dev/null 2>&1; then
	useradd --system --home-dir /nonexistent --no-create-home \
	    --shell /usr/sbin/nologin _iscsitest
fi

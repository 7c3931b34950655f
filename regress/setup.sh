#!/bin/sh
# Installs what the demo, the tests and CI need on a fresh Debian machine
# (run as root): the real targets (tgt, istgt), libiscsi's tools for the
# benchmark baseline, mandoc for the man pages, rust-src for the OpenBSD
# type-check, and the unprivileged user iscsid runs as.
set -eu

need_pkgs=""
for p in tgt istgt libiscsi-bin mandoc iproute2 procps; do
	dpkg -s "$p" >/dev/null 2>&1 || need_pkgs="$need_pkgs $p"
done
if [ -n "$need_pkgs" ]; then
	echo "setup: installing$need_pkgs"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq $need_pkgs >/dev/null
fi

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

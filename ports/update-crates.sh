#!/bin/sh
#
# Writes the MODCARGO_CRATES list of the port, crates.inc, from Cargo.lock:
# what the ports tree's "make modcargo-gen-crates" prints, with the license
# comments of "make modcargo-gen-crates-licenses", but without a ports tree.
# Licenses come from the local cargo registry for the crates that have been
# downloaded there ("cargo fetch"); the others get no comment.
#
# usage: update-crates.sh [Cargo.lock [crates.inc]]

set -eu

here=$(cd "$(dirname "$0")" && pwd)
lock=${1:-$here/../Cargo.lock}
out=${2:-$here/sysutils/iscsid/crates.inc}
registry=${CARGO_HOME:-$HOME/.cargo}/registry/src

license() {
	for f in "$registry"/*/"$1-$2"/Cargo.toml; do
		[ -f "$f" ] || continue
		sed -ne '/^license *=/{s/^license *= *"\([^"]*\)".*/\1/p;q;}' "$f"
		return
	done
}

tmp=$(mktemp "$out.XXXXXXXXXX")
trap 'rm -f "$tmp"' EXIT
{
	echo "# Generated from Cargo.lock by ports/update-crates.sh; do not edit."
	awk '/^\[\[package\]\]/ { n = ""; v = "" }
	    /^name = / { n = $3; gsub("\"", "", n) }
	    /^version = / { v = $3; gsub("\"", "", v) }
	    /^source = "registry\+https:\/\/github\.com\/rust-lang\/crates\.io-index"/ {
		print n, v
	    }' "$lock" |
	while read -r name version; do
		lic=$(license "$name" "$version")
		if [ -n "$lic" ]; then
			printf 'MODCARGO_CRATES +=\t%s\t%s\t# %s\n' \
			    "$name" "$version" "$lic"
		else
			printf 'MODCARGO_CRATES +=\t%s\t%s\n' "$name" "$version"
		fi
	done
} >"$tmp"
chmod 644 "$tmp"
mv "$tmp" "$out"

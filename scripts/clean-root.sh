#!/usr/bin/env bash
# A clean Debian 12 root, as a new user's machine is before anything is installed:
# the proof that scripts/install-deps.sh installs everything (tests/test_clean_root.py,
# bench/bench_cold_run.py --root).
#
#   clean-root.sh create DEST       DEST becomes a fresh copy of a minimal Debian 12 root
#                                   (debootstrap --variant=minbase, made once per machine
#                                   and kept in the cache as a tarball keyed by its recipe)
#   clean-root.sh exec DEST CMD...  run CMD as root inside DEST, with /proc, /sys and /dev
#                                   mounted for the time of the command
#   clean-root.sh destroy DEST      unmount whatever is still mounted there, remove DEST
#
# The root gets the host's apt sources (the same mirror and suites, so it installs what
# a Debian 12 machine installs), the host's CA bundle and pip configuration (the package
# index may only be reachable through a TLS proxy whose CA is in that bundle), and
# resolv.conf.  Nothing else of the host goes in.  Needs root and debootstrap.
set -euo pipefail

cache=${CMA_HARNESS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cma-harness}
suite=bookworm
recipe=1 # bump when the way the root is made changes

die() {
	echo "clean-root: error: $*" >&2
	exit 2
}

# The host's Debian mirror for $suite, read from its apt sources.
mirror() {
	bash "$(dirname "$0")/install-deps.sh" --mirror "$suite" || die "no apt source for Debian $suite"
}

# Path of the cached pristine root tarball, made on first use.
pristine() {
	local uri key tarball tmp
	uri=$(mirror)
	key=$(printf '%s\n' "$recipe" "$suite" "$uri" minbase | sha256sum | cut -c1-16)
	tarball=$cache/roots/debian-$suite-minbase-$key.tar
	if [ ! -f "$tarball" ]; then
		command -v debootstrap >/dev/null || die "debootstrap not found: run scripts/install-deps.sh"
		mkdir -p "$cache/roots"
		tmp=$(mktemp -d "$cache/roots/.make-XXXXXX")
		trap 'rm -rf "$tmp"' RETURN
		echo "clean-root: debootstrap $suite (once per machine)" >&2
		debootstrap --variant=minbase "$suite" "$tmp/root" "$uri" >"$tmp/debootstrap.log" 2>&1 || {
			tail -n 20 "$tmp/debootstrap.log" >&2
			die "debootstrap $suite failed"
		}
		tar -C "$tmp/root" -cf "$tmp/root.tar" .
		mv "$tmp/root.tar" "$tarball"
	fi
	echo "$tarball"
}

host_files() {
	local dest=$1 f
	rm -f "$dest/etc/apt/sources.list"
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources \
		/etc/resolv.conf /etc/pip.conf /etc/ssl/certs/ca-certificates.crt; do
		[ -f "$f" ] || continue
		mkdir -p "$dest$(dirname "$f")"
		cp -L "$f" "$dest$f"
	done
	# ca-certificates, when a package pulls it in, rebuilds the bundle from these.
	if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
		mkdir -p "$dest/usr/local/share/ca-certificates"
		cp -L /etc/ssl/certs/ca-certificates.crt "$dest/usr/local/share/ca-certificates/host-bundle.crt"
	fi
}

unmount_all() {
	local dest m
	dest=$(realpath "$1")
	# Deepest first.
	for m in $(awk -v d="$dest" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/mounts | sort -r); do
		umount -l "$m" 2>/dev/null || true
	done
}

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot and mount)"
cmd=${1:-}
dest=${2:-}
[ -n "$cmd" ] && [ -n "$dest" ] || die "usage: clean-root.sh create|exec|destroy DEST [CMD...]"
case $cmd in
create)
	[ ! -e "$dest" ] || [ -z "$(ls -A "$dest")" ] || die "$dest exists and is not empty"
	tarball=$(pristine)
	mkdir -p "$dest"
	tar -C "$dest" -xpf "$tarball"
	host_files "$dest"
	;;
exec)
	shift 2
	[ $# -gt 0 ] || die "exec needs a command"
	[ -x "$dest/bin/sh" ] || die "$dest is not a root made by 'clean-root.sh create'"
	trap 'unmount_all "$dest"' EXIT
	mount -t proc proc "$dest/proc"
	mount -t sysfs sys "$dest/sys"
	mount --rbind /dev "$dest/dev"
	mount --make-rslave "$dest/dev"
	chroot "$dest" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 CI="${CI:-}" \
		PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
	;;
destroy)
	[ -e "$dest" ] || exit 0
	unmount_all "$dest"
	rm -rf --one-file-system "$dest"
	;;
*)
	die "unknown command '$cmd' (create, exec or destroy)"
	;;
esac

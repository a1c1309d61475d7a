#!/usr/bin/env bash
# Install everything cma-harness needs on Debian 12, idempotently and quietly:
# the Debian packages, the armhf static busybox (from Debian's archive, via
# `apt-get download`), and the Python package in .venv.  Output goes to a log;
# only a failure prints it.
#
#   install-deps.sh                       everything above
#   install-deps.sh --kernel-source 6.12  only /usr/src/linux-source-6.12.tar.xz
#                                         (from bookworm-backports if need be)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${CMA_HARNESS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cma-harness}
log=$cache/logs/install-deps.log
mkdir -p "$cache/logs"
: >"$log"

packages=(qemu-system-arm gcc-arm-linux-gnueabihf linux-source-6.1 flex bison bc
	libssl-dev libelf-dev cpio device-tree-compiler ccache make patch xz-utils
	perl git python3-venv)

fail() {
	echo "install-deps: error: $1 (log: $log)" >&2
	tail -n 20 "$log" >&2
	exit 2
}

as_root() {
	if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi
}

apt_update() {
	# A mirror in mid-sync can fail one index; retry, then go on with what we have.
	for _ in 1 2 3; do
		as_root apt-get update -q >>"$log" 2>&1 && return 0
		sleep 3
	done
	echo "install-deps: warning: apt-get update reported errors; continuing" >&2
}

if [ "${1:-}" = --kernel-source ]; then
	version=${2:?usage: install-deps.sh --kernel-source VERSION}
	case $version in *[!0-9.]*) fail "bad kernel version '$version'" ;; esac
	[ -f "/usr/src/linux-source-$version.tar.xz" ] && exit 0
	echo "install-deps: installing linux-source-$version"
	apt_update
	if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		"linux-source-$version" >>"$log" 2>&1; then
		# Newer kernels than the release's own come from its backports suite.
		codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
		list=/etc/apt/sources.list.d/cma-harness-backports.sources
		printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: %s-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
			"$codename" | as_root tee "$list" >/dev/null
		apt_update
		as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q -t "$codename-backports" \
			"linux-source-$version" >>"$log" 2>&1 || fail "cannot install linux-source-$version"
	fi
	exit 0
fi

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
busybox=$cache/busybox/bin/busybox
updated=0
if ! dpkg --print-foreign-architectures | grep -qx armhf; then
	as_root dpkg --add-architecture armhf >>"$log" 2>&1 || fail "dpkg --add-architecture armhf failed"
	apt_update
	updated=1
fi
if [ ${#missing[@]} -gt 0 ]; then
	echo "install-deps: installing ${missing[*]}"
	[ $updated = 1 ] || { apt_update; updated=1; }
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
		"${missing[@]}" >>"$log" 2>&1 || fail "apt-get install failed"
fi

if [ ! -x "$busybox" ]; then
	echo "install-deps: fetching busybox-static:armhf"
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	chmod 755 "$tmp"
	(cd "$tmp" && apt-get download busybox-static:armhf >>"$log" 2>&1) || {
		[ $updated = 1 ] || apt_update
		(cd "$tmp" && apt-get download busybox-static:armhf >>"$log" 2>&1) ||
			fail "apt-get download busybox-static:armhf failed"
	}
	dpkg -x "$tmp"/busybox-static_*_armhf.deb "$tmp/root" >>"$log" 2>&1 || fail "dpkg -x failed"
	# An ARM ELF: e_machine (bytes 18-19) is 0x28.
	[ "$(od -An -tx1 -j18 -N1 "$tmp/root/bin/busybox" | tr -d ' ')" = 28 ] ||
		fail "the unpacked busybox is not an ARM binary"
	mkdir -p "$(dirname "$busybox")"
	install -m 0755 "$tmp/root/bin/busybox" "$busybox.tmp"
	mv "$busybox.tmp" "$busybox"
fi

venv=$repo/.venv
stamp=$venv/.installed
if [ ! -x "$venv/bin/python" ]; then
	python3 -m venv "$venv" >>"$log" 2>&1 || fail "python3 -m venv failed"
fi
if [ ! -f "$stamp" ] || [ "$repo/pyproject.toml" -nt "$stamp" ]; then
	echo "install-deps: installing the Python package into .venv"
	"$venv/bin/pip" install -q --disable-pip-version-check -e "$repo[test]" >>"$log" 2>&1 ||
		fail "pip install failed"
	touch "$stamp"
fi

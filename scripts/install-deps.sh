#!/usr/bin/env bash
# Install everything cma-harness needs on Debian 12, idempotently and quietly:
# the Debian packages, the armhf static busybox (from Debian's archive, via
# `apt-get download`), and the Python package in .venv.  Output goes to a log;
# only a failure prints it.
#
#   install-deps.sh                       everything above
#   install-deps.sh --kernel-source 6.12  only /usr/src/linux-source-6.12.tar.xz
#                                         (from bookworm-backports if need be)
#   install-deps.sh --mirror bookworm     print the Debian mirror this machine uses
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${CMA_HARNESS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cma-harness}
log=$cache/logs/install-deps.log
mkdir -p "$cache/logs"
: >"$log"

# Each package and what needs it (found by running this script on a debootstrap
# root: tests/test_clean_root.py):
packages=(
	qemu-system-arm                  # booting the boards
	gcc-arm-linux-gnueabihf          # the kernel and the static guest programs
	libc6-dev-armhf-cross            # their libc headers (only recommended by the compiler)
	gcc libc6-dev                    # the kernel's host programs (HOSTCC)
	linux-source-6.1                 # the default base
	flex bison bc perl make patch    # the kernel build
	libssl-dev libelf-dev            # scripts/sign-file, objtool's headers
	rsync                            # make headers_install
	kmod                             # depmod for the initramfs' modules
	cpio xz-utils                    # unpacking sources, packing the initramfs
	device-tree-compiler             # dtc and fdtget for the oracle
	ccache                           # rebuilds
	git                              # identifying a user's tree
	python3-venv                     # .venv
	debootstrap                      # the clean-root test (make test)
	openssh-server                   # the SSH-hosts test (tests/test_hosts_integration.py)
	iproute2                         # its network namespaces (ip netns)
	lava-common                      # LAVA's job schema (lava_common), which lava export validates against
	chromium chromium-driver         # the report's browser test (tests/test_report_browser.py)
)

fail() {
	echo "install-deps: error: $1 (log: $log)" >&2
	tail -n 20 "$log" >&2
	exit 2
}

as_root() {
	if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi
}

# The mirror this machine already installs $1 (a codename) from, read from its apt
# sources (deb822 or one-line format).
debian_mirror() {
	local uri
	uri=$(awk -v s="$1" '
		/^URIs:/ { u = $2 } /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == s) { print u; exit } }
		' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
	[ -n "$uri" ] || uri=$(awk -v s="$1" '$1 == "deb" && $3 == s { print $2; exit }' \
		/etc/apt/sources.list 2>/dev/null || true)
	[ -n "$uri" ] || fail "no apt source for Debian $1 on this machine"
	echo "$uri"
}

apt_update() {
	# A mirror in mid-sync can fail one index; retry, then go on with what we have.
	for _ in 1 2 3; do
		as_root apt-get update -q >>"$log" 2>&1 && return 0
		sleep 3
	done
	echo "install-deps: warning: apt-get update reported errors; continuing" >&2
}

if [ "${1:-}" = --mirror ]; then
	debian_mirror "${2:?usage: install-deps.sh --mirror CODENAME}"
	exit 0
fi

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
		printf 'Types: deb\nURIs: %s\nSuites: %s-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
			"$(debian_mirror "$codename")" "$codename" | as_root tee "$list" >/dev/null
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

# The copy inside an installed wheel (harness/data/scripts/) has no checkout to put in a venv.
[ -f "$repo/pyproject.toml" ] || exit 0
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

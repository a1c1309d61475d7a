"""Run inside a clean root after ``scripts/install-deps.sh``: the build steps a package can break.

``cma-harness doctor`` has already checked that every tool is there; this does the
real work that needs the subtler packages, short of compiling a whole kernel:
unpack Debian's linux-source-6.1 and apply the series (xz-utils, patch), configure
it with the board's defconfig and fragments (gcc and libc6-dev for the host
programs, flex, bison, make), ``make headers_install`` (rsync, perl), and
cross-compile every guest program statically against those headers
(gcc-arm-linux-gnueabihf, libc6-dev-armhf-cross).  It also checks the tools
``make test`` itself needs (debootstrap).

Prints ``clean-root probe: ok`` and exits 0, or one ``error:`` line and exits 2.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from harness import boards, kbuild, rootfs
from harness.errors import HarnessError
from harness.series import parse_series

_ARM_ELF = b"\x7fELF\x01\x01\x01"  # 32-bit little-endian; e_machine 0x28 (ARM) at offset 18


def probe(work: Path) -> list[Path]:
    """Configure, install the headers, compile the guest programs under ``work``; return them.

    Raises:
        HarnessError: any step failed (the message says which and why).
    """
    if shutil.which("debootstrap") is None:
        raise HarnessError("debootstrap not found (Debian package debootstrap): make test needs it")
    board = boards.load_board("vexpress-a9")
    source = kbuild.resolve_source(kbuild.DEFAULT_SOURCE)
    series = parse_series(kbuild.PATCHES_DIR / "series", source.version)
    request = kbuild.board_request(board.defconfig, board.fragments, source, series,
                                   os.cpu_count() or 1)
    tree = kbuild.install_headers(request, work / "headers", lambda message: None)
    built = rootfs.compile_guest_programs(work / "headers", tree, work / "bin")
    for program in built:
        head = program.read_bytes()[:20]
        if not head.startswith(_ARM_ELF) or head[18] != 0x28:
            raise HarnessError(f"{program} is not a 32-bit ARM executable")
    return built


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            built = probe(Path(tmp))
        except HarnessError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    print(f"clean-root probe: ok ({', '.join(p.name for p in built)} built against the headers)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

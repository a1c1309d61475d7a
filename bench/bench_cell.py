"""Benchmark: harness wall time per cell against a bare QEMU boot, and a no-change build.

The bare boot uses the same kernel, the same initramfs contents plus a
``/bench-init`` that mounts the same filesystems, runs the same commands as a
harness cell and powers off; QEMU's console goes to /dev/null.  The harness
side is :func:`harness.cell.run_cell` for the same command line.  Each side
runs ``--rounds`` times, alternating; medians are compared.

Usage: .venv/bin/python bench/bench_cell.py [--rounds 5] [--cmdline cma=64M]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import boards, kbuild, qemu, rootfs
from harness.cell import DEBUGFS_PAGES, run_cell
from harness.checks import CmaExpectation, Status
from harness.matrix import Cell
from harness.series import parse_series

# What rootfs/init does before the shell starts: the bare boots do the same.
BENCH_MOUNTS = """#!/bin/busybox sh
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug
mkdir -p /tmp
mount -t tmpfs tmpfs /tmp
"""
BENCH_INIT = BENCH_MOUNTS + """cat /proc/meminfo
for a in $(ls /sys/kernel/debug/cma); do cma-debugfs-probe "$a" {pages}; done
dmesg -r
poweroff -f
"""


def _time(fn: object) -> float:
    start = time.monotonic()
    fn()  # type: ignore[operator]
    return time.monotonic() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cmdline", default="cma=64M")
    parser.add_argument("--board", default="vexpress-a9")
    args = parser.parse_args()

    board = boards.load_board(args.board)
    source = kbuild.resolve_source(kbuild.DEFAULT_SOURCE)
    series = parse_series(kbuild.PATCHES_DIR / "series", source.version)
    request = kbuild.board_request(board.defconfig, board.fragments, source, series, os.cpu_count() or 1)
    kernel = kbuild.build_kernel(request, lambda msg: None)
    normal = rootfs.build_initramfs(kernel)
    with tempfile.TemporaryDirectory() as tmp:
        init = Path(tmp) / "bench-init"
        init.write_text(BENCH_INIT.format(pages=DEBUGFS_PAGES))
        init.chmod(0o755)
        bench = rootfs.build_initramfs(kernel, extra={"/bench-init": init})
        cmdline = qemu.kernel_cmdline(board, args.cmdline)
        bare_spec = qemu.BootSpec(board, kernel.zimage, kernel.dtb(board.dtb), bench.path,
                                  cmdline + " rdinit=/bench-init")
        spec = qemu.BootSpec(board, kernel.zimage, kernel.dtb(board.dtb), normal.path, cmdline)
        cell = Cell(board.name, args.cmdline, CmaExpectation("reserved", 64))
        bare_times, harness_times = [], []
        for i in range(args.rounds):
            bare_times.append(_time(lambda: subprocess.run(
                qemu.qemu_argv(bare_spec), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, check=True, timeout=120)))
            result = run_cell(cell, spec, Path(tmp) / f"cell{i}.log")
            if result.status is not Status.PASS:
                print(f"harness cell did not pass: {[(c.name, c.message) for c in result.checks]}")
                return 1
            harness_times.append(result.seconds)
    build_times = [_time(lambda: subprocess.run(
        [sys.executable, "-m", "harness.cli", "build"], stdout=subprocess.DEVNULL, check=True))
        for _ in range(3)]
    bare, harn = statistics.median(bare_times), statistics.median(harness_times)
    print(f"board {board.name}, cmdline {args.cmdline!r}, {args.rounds} rounds each")
    print(f"bare QEMU boot + commands + poweroff: median {bare:.2f}s  "
          f"(min {min(bare_times):.2f}, max {max(bare_times):.2f})")
    print(f"harness cell (run_cell):             median {harn:.2f}s  "
          f"(min {min(harness_times):.2f}, max {max(harness_times):.2f})")
    print(f"ratio harness/bare: {harn / bare:.3f}  (target <= 1.10)")
    print(f"no-change 'cma-harness build': median {statistics.median(build_times):.2f}s (target < 5 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

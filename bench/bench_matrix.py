"""Benchmark: a whole matrix with the harness (-j1 and -jN) against bare QEMU boots.

1. ``cma-harness run -j1`` and ``-jN`` (N = CPU count) of the matrix, kernel cached,
   each timed end to end as a user sees it (the CLI in a subprocess).
2. For every cell, a bare QEMU boot that runs exactly the commands the harness
   sent to that cell (read back from its console log: the marker-wrapped
   lines) from ``/bench-init`` and powers off, console to /dev/null; run one
   after another and summed.

Reports: ``-jN`` wall time / (sum of bare boots / cores) (target <= 1.3) and
``-j1`` / ``-jN`` (target >= 1.7 on 2 cores).

Usage: .venv/bin/python bench/bench_matrix.py [-m MATRIX] [--board NAME] [--cmdline C]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_cell import BENCH_MOUNTS  # bench/ is on sys.path when run as a script

from harness import boards, kbuild, matrix, qemu, rootfs
from harness.series import parse_series

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "harness.cli"]
# The harness's command lines: echo 'xxxxx''yyyyy'B; CMD; echo 'xxxxx''yyyyy'E $?
_SENT = re.compile(r"^echo '(\w+)''(\w+)'B; (.*); echo '\1''\2'E \$\?\r?$")
BENCH_INIT = BENCH_MOUNTS + """for w in $(cat /proc/cmdline); do
	case "$w" in cmaharness.bench=*) cell=${w#cmaharness.bench=} ;; esac
done
sh /bench/"$cell".sh > /dev/console 2>&1
poweroff -f
"""


def _run(args: list[str], results: Path) -> float:
    start = time.monotonic()
    proc = subprocess.run([*CLI, "run", *args, "-o", str(results)], capture_output=True, text=True,
                          cwd=REPO, check=False)
    took = time.monotonic() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"cma-harness run failed ({proc.returncode}): {proc.stderr.strip()}")
    return took


def _commands(log: Path) -> list[str]:
    lines = log.read_bytes().decode("utf-8", errors="replace").splitlines()
    return [m.group(3) for line in lines if (m := _SENT.match(line)) and m.group(3) != "true"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-m", "--matrix", type=Path, default=matrix.DEFAULT_MATRIX)
    parser.add_argument("--board")
    parser.add_argument("--cmdline")
    parser.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--warmup", action="store_true", help="one untimed run first (cold cache)")
    args = parser.parse_args()
    filters = ["-m", str(args.matrix)]
    filters += ["--board", args.board] if args.board else []
    filters += ["--cmdline", args.cmdline] if args.cmdline is not None else []
    cells = matrix.filter_cells(matrix.load_matrix(args.matrix), args.board, args.cmdline)
    cells = [c for c in cells if not c.skip]

    with tempfile.TemporaryDirectory(prefix="bench-matrix-") as tmp_name:
        tmp = Path(tmp_name)
        if args.warmup:
            _run([*filters, "-j1"], tmp / "warmup")  # builds/caches everything; not timed
        t_par = _run([*filters, f"-j{args.jobs}"], tmp / "par")
        t_one = _run([*filters, "-j1"], tmp / "one")
        logs = tmp / "par" / "latest" / "logs"

        source = kbuild.resolve_source(kbuild.DEFAULT_SOURCE)
        series = parse_series(kbuild.PATCHES_DIR / "series", source.version)
        scripts = tmp / "bench"
        scripts.mkdir()
        for cell in cells:
            (scripts / f"{cell.slug}.sh").write_text("\n".join(_commands(logs / f"{cell.slug}.log")) + "\n")
        init = tmp / "bench-init"
        init.write_text(BENCH_INIT)
        init.chmod(0o755)
        extra = {"/bench-init": init, **{f"/bench/{p.name}": p for p in scripts.iterdir()}}
        bare_total = 0.0
        for name in dict.fromkeys(c.board for c in cells):
            board = boards.load_board(name)
            request = kbuild.board_request(board.defconfig, board.fragments, source, series, 1)
            kernel = kbuild.build_kernel(request, lambda msg: None)
            initramfs = rootfs.build_initramfs(kernel, extra=extra)
            dtb = kernel.dtb(board.dtb) if board.dtb else None
            for cell in (c for c in cells if c.board == name):
                cmdline = (qemu.kernel_cmdline(board, cell.cmdline)
                           + f" rdinit=/bench-init cmaharness.bench={cell.slug}")
                spec = qemu.BootSpec(board, kernel.zimage, dtb, initramfs.path, cmdline)
                start = time.monotonic()
                subprocess.run(qemu.qemu_argv(spec), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, check=False, timeout=600)
                bare_total += time.monotonic() - start
    cores = os.cpu_count() or 1
    ideal = bare_total / cores
    print(f"matrix {args.matrix.name}: {len(cells)} cells, {cores} cores")
    print(f"bare QEMU, same commands, one after another: {bare_total:.1f}s (/ {cores} cores = {ideal:.1f}s)")
    print(f"harness -j{args.jobs}: {t_par:.1f}s   ratio to bare/cores: {t_par / ideal:.2f}  (target <= 1.3)")
    print(f"harness -j1: {t_one:.1f}s   speedup -j{args.jobs} over -j1: {t_one / t_par:.2f}x  "
          "(target >= 1.7 on 2 cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

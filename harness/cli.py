"""``cma-harness``: build, run, boot.

Exit status: 0 every cell met its expectation; 1 a check failed; 2 bad input or
an environment problem (one ``error:`` line names it); 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from rich.console import Console as RichConsole

from harness import boards, kbuild, matrix, qemu, results, rootfs
from harness.cell import CellResult, run_cell
from harness.cmdline import validate_cmdline
from harness.errors import HarnessError, InputError, PatchError
from harness.progress import Reporter
from harness.series import parse_series

out = RichConsole(highlight=False, soft_wrap=True)
if not out.is_terminal:
    out.width = 160  # CI logs: one row per cell, not folded at 80 columns
err = RichConsole(stderr=True, highlight=False, soft_wrap=True)


@dataclass(frozen=True)
class Prepared:
    """A board with its kernel and initramfs ready to boot."""

    board: boards.Board
    kernel: kbuild.KernelBuild
    initramfs: rootfs.Initramfs


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kernel-src", type=Path, default=kbuild.DEFAULT_SOURCE,
                   help="kernel source: a tarball or a directory (default: %(default)s)")
    p.add_argument("--series", type=Path, default=kbuild.PATCHES_DIR / "series",
                   help="quilt series file to apply (default: %(default)s)")
    p.add_argument("--build-jobs", type=int, default=os.cpu_count() or 1, metavar="N",
                   help="make -j for the kernel build (default: CPU count)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cma-harness", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build (or fetch from cache) the kernel and initramfs")
    _common(b)
    b.add_argument("--board", default="vexpress-a9", help="board whose config to build")
    r = sub.add_parser("run", help="boot every cell of a matrix and check it (JUnit XML out)")
    _common(r)
    r.add_argument("-m", "--matrix", type=Path, default=matrix.DEFAULT_MATRIX,
                   help="matrix TOML file (default: the embedded default matrix)")
    r.add_argument("--board", help="run only the cells of this board")
    r.add_argument("--cmdline", help="run only the cells with exactly this cmdline")
    r.add_argument("-o", "--results", type=Path, default=Path("results"),
                   help="results root directory (default: %(default)s)")
    o = sub.add_parser("boot", help="boot one board interactively (Ctrl-A x quits)")
    _common(o)
    o.add_argument("--board", default="vexpress-a9")
    o.add_argument("--cmdline", default="", help="extra kernel arguments, e.g. cma=64M")
    return parser


def _prepare(board_names: list[str], args: argparse.Namespace, rep: Reporter) -> dict[str, Prepared]:
    """Load boards, then build each distinct kernel once and its initramfs."""
    loaded = {name: boards.load_board(name) for name in dict.fromkeys(board_names)}
    kbuild.install_debian_source(args.kernel_src, rep)
    source = kbuild.resolve_source(args.kernel_src)
    series = parse_series(args.series, source.version)
    if args.build_jobs < 1:
        raise InputError("--build-jobs must be at least 1")
    prepared: dict[str, Prepared] = {}
    built: dict[tuple[str, tuple[str, ...]], tuple[kbuild.KernelBuild, rootfs.Initramfs]] = {}
    for name, board in loaded.items():
        key = (board.defconfig, board.fragments)
        if key not in built:
            try:
                request = kbuild.board_request(board.defconfig, board.fragments, source, series,
                                               args.build_jobs)
            except InputError as exc:
                raise InputError(f"boards/{name}.toml: {exc}") from exc
            rep.step(f"kernel for {name}: {board.defconfig} + {', '.join(board.fragments)}, "
                     f"{len(series.patches)} patch(es) from {args.series}")
            kernel = kbuild.build_kernel(request, rep)
            rep.step(f"kernel {kernel.release} ready ({kernel.directory})")
            initramfs = rootfs.build_initramfs(kernel)
            rep.step(f"initramfs ready ({initramfs.path})")
            built[key] = (kernel, initramfs)
        kernel, initramfs = built[key]
        kernel.dtb(board.dtb)  # fail early on a board whose dtb this kernel lacks
        prepared[name] = Prepared(board, kernel, initramfs)
    return prepared


def cmd_build(args: argparse.Namespace) -> int:
    with Reporter(out) as rep:
        ready = _prepare([args.board], args, rep)[args.board]
    out.print(f"zImage: {ready.kernel.zimage}\ninitramfs: {ready.initramfs.path}")
    return 0


def _spec(ready: Prepared, cmdline: str, interactive: bool = False) -> qemu.BootSpec:
    return qemu.BootSpec(ready.board, ready.kernel.zimage, ready.kernel.dtb(ready.board.dtb),
                         ready.initramfs.path, qemu.kernel_cmdline(ready.board, cmdline, interactive))


def cmd_run(args: argparse.Namespace) -> int:
    mat = matrix.load_matrix(args.matrix)
    if args.board is not None:
        boards.load_board(args.board)  # an unknown board is named as such
    if args.cmdline is not None:
        validate_cmdline(args.cmdline)
    cells = matrix.filter_cells(mat, args.board, args.cmdline)
    qemu_version = qemu.qemu_version()
    with Reporter(out) as rep:
        prepared = _prepare([c.board for c in cells], args, rep)
    run_dir = results.ResultsDir(args.results)
    done: list[CellResult] = []
    cmdlines: dict[str, str] = {}
    try:
        for i, cell in enumerate(cells, 1):
            spec = _spec(prepared[cell.board], cell.cmdline)
            cmdlines[cell.name] = spec.cmdline
            result = run_cell(cell, spec, run_dir.log_path(cell.slug))
            done.append(result)
            out.print(f"[{i}/{len(cells)}] {cell.name}: {result.status.value.upper()} "
                      f"({result.seconds:.1f}s)")
        first = prepared[cells[0].board].kernel
        prov = results.Provenance(first.release, first.source, first.series_hash,
                                  first.config_hash, first.toolchain, qemu_version)
        xml = results.build_junit(done, prov, cmdlines, run_dir.timestamp)
        final = run_dir.finish(xml, done)
    except BaseException:
        run_dir.discard()
        raise
    results.print_summary(done, out, final)
    out.print(f"JUnit: {final / 'junit.xml'}")
    return results.exit_status(done)


def cmd_boot(args: argparse.Namespace) -> int:
    validate_cmdline(args.cmdline)
    qemu.qemu_version()
    with Reporter(out) as rep:
        ready = _prepare([args.board], args, rep)[args.board]
    argv = qemu.qemu_argv(_spec(ready, args.cmdline, interactive=True), interactive=True)
    err.print(f"booting {args.board}; Ctrl-A x quits QEMU\n{qemu.printable(argv)}")
    return subprocess.run(argv, check=False).returncode


def _sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cma-harness`` console script."""
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm)
    try:
        return {"build": cmd_build, "run": cmd_run, "boot": cmd_boot}[args.command](args)
    except PatchError as exc:
        err.print(f"cma-harness: error: {exc}", markup=False)
        if exc.detail:
            err.print(exc.detail, markup=False)
        return 2
    except HarnessError as exc:
        err.print(f"cma-harness: error: {exc}", markup=False)
        return 2
    except KeyboardInterrupt:
        err.print("cma-harness: interrupted", markup=False)
        return 130


if __name__ == "__main__":
    sys.exit(main())

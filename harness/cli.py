"""``cma-harness``: build, run, boot, compare, merge.

Exit status: 0 every cell met its expectation (``compare``: no regression);
1 a check failed (``compare``: a testcase regressed — new failures, metric
changes and flaky cells do not count); 2 bad input or an environment problem
(one ``error:`` line names it); 130 interrupted.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from rich.console import Console as RichConsole
from rich.table import Table

from harness import boards, compare, kbuild, matrix, oracle, paths, qemu, report, results, rootfs, runner
from harness.cell import CellResult, ReservationCheck, oracle_expectation, run_cell
from harness.checks import CheckResult, Status
from harness.cmdline import validate_cmdline
from harness.doctor import HostNotReady, examine, preflight, raise_if_problems
from harness.errors import EnvironmentProblem, HarnessError, InputError, PatchError
from harness.progress import Reporter
from harness.series import parse_series, with_extra_patches

out = RichConsole(highlight=False, soft_wrap=True)
if not out.is_terminal:
    out.width = 160  # CI logs: one row per cell, not folded at 80 columns
err = RichConsole(stderr=True, highlight=False, soft_wrap=True)


@dataclass(frozen=True)
class Prepared:
    """A board with its kernel and initramfs ready to boot, and the oracle's view of its boot."""

    board: boards.Board
    kernel: kbuild.KernelBuild
    initramfs: rootfs.Initramfs
    boot: oracle.CmaBoot


def _oracle_boot(board: boards.Board, kernel: kbuild.KernelBuild,
                 initramfs: rootfs.Initramfs) -> oracle.CmaBoot:
    """What the cma= oracle needs to know of ``board`` booting ``kernel`` (RAM, image, initrd, dtb)."""
    with tempfile.TemporaryDirectory(prefix="cma-harness-dtb-") as tmp:
        dtb = kernel.dtb(board.dtb) if board.dtb else qemu.dump_dtb(board, Path(tmp) / "qemu.dtb")
        return oracle.boot_from_files(
            ram=board.ram, release=kernel.release, config=kernel.directory / "config",
            system_map=kernel.directory / "System.map", dtb=dtb, initrd=initramfs.path,
            zimage=kernel.zimage, dtb_total_size=None if board.dtb else dtb.stat().st_size,
            loader=board.loader)


def expect_for(cell: matrix.Cell, ready: Prepared, full_cmdline: str) -> ReservationCheck | None:
    """The cell's ``cma-reservation`` judge: the oracle's, unless the matrix wrote ``expect``."""
    if cell.expect is not None:
        return None
    try:
        return oracle_expectation(oracle.predict(full_cmdline, ready.boot))
    except InputError as exc:
        message = f"the cma= oracle cannot predict this cell: {exc}"
        return lambda report, records: CheckResult("cma-reservation", Status.ERROR, message)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kernel-src", type=Path, default=kbuild.DEFAULT_SOURCE,
                   help="kernel source: a tarball or a directory (default: %(default)s)")
    p.add_argument("--series", type=Path, default=kbuild.PATCHES_DIR / "series",
                   help="quilt series file to apply (default: %(default)s)")
    p.add_argument("--patch", type=Path, action="append", default=[], metavar="FILE",
                   help="apply this patch after the series (repeatable): a patch under review")
    p.add_argument("--build-jobs", type=int, default=os.cpu_count() or 1, metavar="N",
                   help="make -j for the kernel build (default: CPU count)")
    _boards_dir(p)


def _boards_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--boards-dir", type=Path, action="append", default=[], metavar="DIR",
                   help="look up boards (NAME.toml) and their fragments here first (repeatable)")


def _use_boards_dirs(dirs: list[Path]) -> None:
    """Put ``--boards-dir`` in front of the board search path (``boards.BOARDS_ENV``)."""
    for d in dirs:
        if not d.is_dir():
            raise InputError(f"--boards-dir {d}: not a directory")
    if dirs:
        previous = os.environ.get(boards.BOARDS_ENV, "")
        os.environ[boards.BOARDS_ENV] = os.pathsep.join(
            [*(str(d.resolve()) for d in dirs), *([previous] if previous else [])])


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
    r.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1, metavar="N",
                   help="run up to N guests at once (default: CPU count, %(default)s)")
    r.add_argument("--retries", type=int, default=0, metavar="N",
                   help="rerun a failed cell up to N times; one that passes on a retry is marked flaky")
    r.add_argument("--resume", type=Path, metavar="DIR",
                   help="complete the interrupted run in DIR (its matrix, filters and kernel)")
    r.add_argument("--list", action="store_true",
                   help="print the cells the matrix expands to, and run nothing")
    c = sub.add_parser("compare", help="what changed between two runs (JUnit, Markdown, HTML report)")
    c.add_argument("base", type=Path, help="baseline: a results directory or a junit.xml")
    c.add_argument("new", type=Path, help="the run to judge: a results directory or a junit.xml")
    c.add_argument("--tolerance", type=float, default=compare.DEFAULT_TOLERANCE,
                   help="relative change of a metric worth reporting (default: %(default)s)")
    c.add_argument("--metric", action="append", metavar="PATTERN[=FLOOR]",
                   help="numeric property to compare (glob; repeatable; default: latency "
                        "medians, alloc_pages_fail, boot.seconds, cma.reserved_mib)")
    c.add_argument("-o", "--out-dir", type=Path,
                   help="where to write compare.{xml,md,html} (default: NEW/compare for a "
                        "directory, else ./compare)")
    mg = sub.add_parser("merge", help="combine JUnit files of several runs or hosts into one")
    mg.add_argument("inputs", type=Path, nargs="+", help="results directories or junit.xml files")
    mg.add_argument("-o", "--output", type=Path, required=True, help="merged junit.xml to write")
    o = sub.add_parser("boot", help="boot one board interactively (Ctrl-A x quits)")
    _common(o)
    o.add_argument("--board", default="vexpress-a9")
    o.add_argument("--cmdline", default="", help="extra kernel arguments, e.g. cma=64M")
    d = sub.add_parser("doctor", help="check this host has every tool a build and boot need (seconds)")
    d.add_argument("--board", action="append", metavar="NAME",
                   help="check QEMU knows this board (repeatable; default: the default matrix's boards)")
    _boards_dir(d)
    return parser


def _prepare(board_names: list[str], args: argparse.Namespace, rep: Reporter) -> dict[str, Prepared]:
    """Load boards, then build each distinct kernel once and its initramfs."""
    loaded = {name: boards.load_board(name) for name in dict.fromkeys(board_names)}
    kbuild.install_debian_source(args.kernel_src, rep)
    source = kbuild.resolve_source(args.kernel_src)
    series = with_extra_patches(parse_series(args.series, source.version), args.patch)
    if args.build_jobs < 1:
        raise InputError("--build-jobs must be at least 1")
    prepared: dict[str, Prepared] = {}
    built: dict[tuple[str, tuple[Path, ...]], tuple[kbuild.KernelBuild, rootfs.Initramfs]] = {}
    for name, board in loaded.items():
        try:
            request = kbuild.board_request(board.defconfig, board.fragments, source, series,
                                           args.build_jobs, (board.file.parent,) if board.file else ())
        except InputError as exc:
            raise InputError(f"{board.file or name}: {exc}") from exc
        key = (board.defconfig, request.fragments)
        if key not in built:
            rep.step(f"kernel for {name}: {board.defconfig} + {', '.join(board.fragments)}, "
                     f"{len(series.patches)} patch(es) from {args.series}"
                     + (f" + {', '.join(p.name for p in args.patch)}" if args.patch else ""))
            kernel = kbuild.build_kernel(request, rep)
            rep.step(f"kernel {kernel.release} ready ({kernel.directory})")
            initramfs = rootfs.build_initramfs(kernel)
            rep.step(f"initramfs ready ({initramfs.path})")
            built[key] = (kernel, initramfs)
        kernel, initramfs = built[key]
        if board.dtb:
            kernel.dtb(board.dtb)  # fail early on a board whose dtb this kernel lacks
        prepared[name] = Prepared(board, kernel, initramfs, _oracle_boot(board, kernel, initramfs))
    return prepared


def cmd_build(args: argparse.Namespace) -> int:
    preflight([boards.load_board(args.board)])
    with Reporter(out) as rep:
        ready = _prepare([args.board], args, rep)[args.board]
    out.print(f"zImage: {ready.kernel.zimage}\ninitramfs: {ready.initramfs.path}")
    return 0


def _spec(ready: Prepared, cmdline: str, interactive: bool = False) -> qemu.BootSpec:
    dtb = ready.kernel.dtb(ready.board.dtb) if ready.board.dtb else None
    return qemu.BootSpec(ready.board, ready.kernel.zimage, dtb,
                         ready.initramfs.path, qemu.kernel_cmdline(ready.board, cmdline, interactive))


def _list_cells(mat: matrix.Matrix, cells: list[matrix.Cell]) -> int:
    """``run --list``: the expanded matrix, one row per cell; nothing is built or run."""
    table = Table(title=f"matrix {mat.name} ({mat.path}): {len(cells)} cell(s)")
    for col in ("cell", "expectation", "suites (default area | other areas)", "mark"):
        table.add_column(col, overflow="fold")
    for c in cells:
        mark = f"skip: {c.skip}" if c.skip else f"xfail: {c.xfail}" if c.xfail else ""
        suites = ",".join(c.suites) or "-"
        if c.area_suites:
            suites += " | " + ",".join(c.area_suites)
        table.add_row(c.name, c.expect.describe() if c.expect else "oracle", suites, mark)
    out.print(table)
    return 0


def _resume_args(args: argparse.Namespace) -> dict[str, object]:
    """``run --resume DIR``: take matrix, filters, source, series and patches from DIR/run.json.

    Returns:
        The run.json (see :meth:`harness.results.ResultsDir.unfinished`).

    Raises:
        InputError: DIR is not an unfinished run, or its run.json lacks or mistypes a field.
    """
    info = results.ResultsDir.unfinished(args.resume)
    run = results.resume_invocation(info, args.resume)
    args.matrix = args.resume / "matrix.toml"
    args.board, args.cmdline = run.get("board"), run.get("cmdline")
    args.kernel_src, args.series = Path(run["kernel_src"]), Path(run["series"])
    args.patch = [Path(p) for p in run.get("patches", [])]
    return info


def check_full_cmdlines(where: str, cells: list[matrix.Cell], loaded: dict[str, boards.Board],
                        interactive: bool = False) -> None:
    """Refuse a cell whose WHOLE kernel command line exceeds ARM's COMMAND_LINE_SIZE (1024 bytes).

    The whole line is what ``-append`` gets (:func:`harness.qemu.kernel_cmdline`):
    the board's console arguments, the harness's, then the cell's; the matrix
    checked the cell's part alone.  ``interactive``: as ``boot`` builds it.

    Raises:
        InputError: ``<where>: cell '<board:cmdline>': with board <b>'s arguments and the
            harness's, kernel cmdline is N bytes; ARM allows at most 1023`` (a cell
            name over 80 characters is cut, with the cmdline's length).
    """
    for cell in cells:
        try:
            validate_cmdline(qemu.kernel_cmdline(loaded[cell.board], cell.cmdline, interactive))
        except InputError as exc:
            name = cell.name if len(cell.name) <= 80 else f"{cell.name[:72]}... ({len(cell.cmdline)} bytes)"
            raise InputError(f"{where}: cell {name!r}: with board {cell.board}'s arguments and "
                             f"the harness's, {exc}") from exc


def _run_cells_of(args: argparse.Namespace) -> tuple[matrix.Matrix, list[matrix.Cell], dict[str, object]]:
    """The matrix and the cells ``run`` will run (``--resume``: its run.json too), all input checked.

    Raises:
        InputError: a bad matrix, board, filter, resume directory, a whole
            kernel command line too long, bad ``-j``/``--retries``; nothing is written.
    """
    resumed = _resume_args(args) if args.resume is not None else {}
    mat = matrix.load_matrix(args.matrix)
    if args.board is not None:
        boards.load_board(args.board)  # an unknown board is named as such
    if args.cmdline is not None:
        validate_cmdline(args.cmdline)
    cells = matrix.filter_cells(mat, args.board, args.cmdline)
    # A broken board file is refused before anything runs.
    loaded = {name: boards.load_board(name) for name in dict.fromkeys(c.board for c in cells)}
    check_full_cmdlines(str(mat.path), cells, loaded)
    if args.jobs < 1:
        raise InputError("-j/--jobs must be at least 1")
    if args.retries < 0:
        raise InputError("--retries must be 0 or more")
    return mat, cells, resumed


def _provenance_info(args: argparse.Namespace, prepared: dict[str, Prepared], qemu_version: str,
                     mat: matrix.Matrix) -> dict[str, object]:
    kernels = {}
    for name, p in prepared.items():
        k = p.kernel
        info = json.loads((k.directory / "build.json").read_text())
        kernels[name] = {"release": k.release, "source": k.source, "source_identity": k.source_identity,
                         "series_hash": k.series_hash, "patches": info.get("patches", []),
                         "config_hash": k.config_hash, "defconfig": info.get("defconfig"),
                         "fragments": info.get("fragments"), "build_key": k.key}
    return {
        "invocation": {"matrix": str(mat.path), "board": args.board, "cmdline": args.cmdline,
                       "kernel_src": str(args.kernel_src), "series": str(args.series.resolve()),
                       "patches": [str(p.resolve()) for p in args.patch], "jobs": args.jobs,
                       "retries": args.retries},
        "matrix": mat.name, "kernels": kernels, "qemu": qemu_version,
        "toolchain": next(iter(prepared.values())).kernel.toolchain,
        "host": platform.node(), "harness_version": _harness_version(),
    }


def _harness_version() -> str:
    """``git describe`` of a checkout, else the installed package's version."""
    if paths.is_checkout():
        try:
            return subprocess.run(["git", "-C", str(paths.DATA_ROOT), "describe", "--always", "--dirty"],
                                  capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            pass
    return paths.harness_version()


def _open_run_dir(args: argparse.Namespace, prepared: dict[str, Prepared], info: dict[str, object],
                  mat: matrix.Matrix, resumed: dict[str, object]) -> tuple[results.ResultsDir, set[str]]:
    """The run's results directory with its provenance written, and the slugs of cells already done.

    A new directory that cannot be set up is removed again (nothing is left).

    Raises:
        InputError: ``--resume`` and a kernel changed since the run started; a
            board file or the matrix cannot be read.
        EnvironmentProblem: the directory or a file in it cannot be written.
    """
    try:
        run_dir = results.ResultsDir(args.results, resume=args.resume)
    except OSError as exc:  # checked writable before the build; a full disk or a race since
        raise EnvironmentProblem(f"cannot create a run directory in {args.results}: "
                                 f"{exc.strerror or exc}") from exc
    if args.resume is not None:
        before = resumed.get("kernels")
        before = before if isinstance(before, dict) else {}  # a table of tables: ResultsDir.unfinished
        changed = [n for n, p in prepared.items()
                   if n in before and before[n].get("build_key") != p.kernel.key]
        if changed:
            raise InputError(f"--resume {args.resume}: the kernel for {', '.join(changed)} changed since "
                             "the run started (series, config or source); start a new run")
        return run_dir, run_dir.done_cells()
    try:
        run_dir.write_provenance(info, [p.board.file for p in prepared.values() if p.board.file], mat.path)
    except BaseException:
        run_dir.discard()
        raise
    return run_dir, set()


def cmd_run(args: argparse.Namespace) -> int:
    mat, cells, resumed = _run_cells_of(args)
    if args.list:
        return _list_cells(mat, cells)
    for root in (args.resume.parent, args.resume) if args.resume is not None else (args.results,):
        results.check_results_root(root)  # before the build: a run could not keep its results
    preflight([boards.load_board(name) for name in dict.fromkeys(c.board for c in cells)])
    qemu_version = qemu.qemu_version()
    with Reporter(out) as rep:
        prepared = _prepare([c.board for c in cells], args, rep)
    info = _provenance_info(args, prepared, qemu_version, mat)
    run_dir, done_slugs = _open_run_dir(args, prepared, info, mat, resumed)
    if args.resume is not None:
        out.print(f"resuming {run_dir.run_id}: {len(done_slugs)} of {len(cells)} cell(s) already done")
    provenance = {name: results.Provenance(p.kernel.release, p.kernel.source, p.kernel.series_hash,
                                           p.kernel.config_hash, p.kernel.toolchain, qemu_version)
                  for name, p in prepared.items()}
    return _run_cells(args, mat, cells, prepared, run_dir, done_slugs, provenance)


# What writing a file says when the results' file system cannot take it.
_CANNOT_WRITE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)


def _cell_job(cell: matrix.Cell, spec: qemu.BootSpec,
              expectation: ReservationCheck | None) -> Callable[[Path], CellResult]:
    """``run_cell`` for one cell, writing its console log to the path the runner gives.

    The log is written as QEMU prints, so a full disk (or quota, or a read-only
    remount) shows up there first, as an OSError out of ``run_cell``.  It becomes an
    :class:`EnvironmentProblem` naming the log (one ``error:`` line, exit 2, the run's
    finished cells kept for ``--resume``), and the half-written log of the cell that
    did not finish is removed: ``--resume`` runs that cell again.
    """
    def run(log: Path) -> CellResult:
        try:
            return run_cell(cell, spec, log, expectation=expectation)
        except OSError as exc:
            if exc.errno not in _CANNOT_WRITE:
                raise
            log.unlink(missing_ok=True)
            raise EnvironmentProblem(f"cannot write {log}: {exc.strerror or exc} (cell {cell.name} "
                                     "did not finish; its half-written log was removed)") from exc
    return run


def _run_cells(args: argparse.Namespace, mat: matrix.Matrix, cells: list[matrix.Cell],
               prepared: dict[str, Prepared], run_dir: results.ResultsDir, done_slugs: set[str],
               provenance: dict[str, results.Provenance]) -> int:
    """Run the cells not yet done, write each as it finishes, publish; the run's exit status."""
    todo = [c for c in cells if c.slug not in done_slugs]
    done: list[CellResult] = []
    try:
        jobs, cmdlines = [], {}
        for cell in todo:
            spec = _spec(prepared[cell.board], cell.cmdline)
            cmdlines[cell.name] = spec.cmdline
            expectation = expect_for(cell, prepared[cell.board], spec.cmdline)
            jobs.append(runner.Job(cell, run_dir.log_path(cell.slug), _cell_job(cell, spec, expectation)))

        def write(result: CellResult) -> None:
            suite = results.cell_testsuite(result, provenance[result.cell.board],
                                           cmdlines[result.cell.name], run_dir.timestamp)
            run_dir.write_cell(result.cell.slug, suite, results.cell_metrics(result))
            done.append(result)

        parallel = max(1, min(args.jobs, len(jobs)))
        out.print(f"running {len(jobs)} cell(s) of matrix {mat.name}, {parallel} at a time"
                  + (f", up to {args.retries} retries each" if args.retries else ""))
        finished = runner.run_jobs(jobs, parallel, write, out, retries=args.retries,
                                   previous=results.previous_seconds(args.results))
        final = run_dir.finish([c.slug for c in cells], finished)
    except BaseException:
        if not done and args.resume is None:
            run_dir.discard()
        else:
            err.print(f"cma-harness: {len(run_dir.done_cells())} of {len(cells)} cell(s) are kept in "
                      f"{run_dir.partial}; 'cma-harness run --resume {run_dir.partial}' completes the run",
                      markup=False)
        raise
    results.print_summary(finished, out, final)
    if len(finished) < len(cells):
        out.print(f"(and {len(cells) - len(finished)} cell(s) from before the interruption)")
    out.print(f"JUnit: {final / 'junit.xml'}")
    return results.exit_status_of_run(final) if len(finished) < len(cells) else results.exit_status(finished)


def cmd_boot(args: argparse.Namespace) -> int:
    validate_cmdline(args.cmdline)
    board = boards.load_board(args.board)
    check_full_cmdlines("--cmdline", [matrix.Cell(args.board, args.cmdline)], {args.board: board},
                        interactive=True)
    preflight([board])
    qemu.qemu_version()
    with Reporter(out) as rep:
        ready = _prepare([args.board], args, rep)[args.board]
    argv = qemu.qemu_argv(_spec(ready, args.cmdline, interactive=True), interactive=True)
    err.print(f"booting {args.board}; Ctrl-A x quits QEMU\n{qemu.printable(argv)}")
    return subprocess.run(argv, check=False, preexec_fn=qemu.die_with_parent).returncode


def cmd_doctor(args: argparse.Namespace) -> int:
    """Check the host for the given boards (default: the default matrix's); one ``ok:`` line per check."""
    names = args.board or list(dict.fromkeys(c.board for c in matrix.load_matrix().cells))
    findings = examine([boards.load_board(name) for name in names])
    raise_if_problems(findings.problems)  # main prints one error line per problem
    for line in findings.passed:
        out.print(f"ok: {line}", markup=False)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    comparison = compare.compare_paths(args.base, args.new, args.tolerance,
                                       compare.rules_from_args(args.metric))
    out_dir = args.out_dir or (args.new / "compare" if args.new.is_dir() else Path("compare"))
    paths = report.write_reports(comparison, out_dir)
    out.print(comparison.summary(), markup=False)
    for kind, path in paths.items():
        out.print(f"{kind}: {path}", markup=False)
    return compare.exit_status(comparison)


def cmd_merge(args: argparse.Namespace) -> int:
    report.merge_paths(args.inputs, args.output)
    out.print(f"merged {len(args.inputs)} file(s) into {args.output}", markup=False)
    return 0


def _sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cma-harness`` console script."""
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm)
    try:
        commands = {"build": cmd_build, "run": cmd_run, "boot": cmd_boot, "compare": cmd_compare,
                    "merge": cmd_merge, "doctor": cmd_doctor}
        _use_boards_dirs(getattr(args, "boards_dir", []))
        return commands[args.command](args)
    except HostNotReady as exc:
        for problem in exc.problems:
            err.print(f"cma-harness: error: {problem.line()}", markup=False)
        return 2
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

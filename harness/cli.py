"""``cma-harness``: build, run, boot, compare, report, merge.

Exit status: 0 every cell met its expectation (``compare``: no regression);
1 a check failed (``compare``: a testcase regressed — new failures, metric
changes and flaky cells do not count); 2 bad input or an environment problem
(one ``error:`` line names it); 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType

from rich.console import Console as RichConsole
from rich.table import Table

from harness import boards, cellcmd, cliargs, compare, lava, lavacmd, matrix, plan, qemu, report, run
from harness.bisectcmd import cmd_bisect as bisect_command
from harness.cmdline import validate_cmdline
from harness.doctor import HostNotReady, examine, preflight, raise_if_problems
from harness.errors import HarnessError, InputError, PatchError
from harness.plan import prepare as _prepare  # looked up at each call: tests replace it, and preflight
from harness.progress import Reporter

out = RichConsole(highlight=False, soft_wrap=True, emoji=False)
if not out.is_terminal:
    out.width = 160  # CI logs: one row per cell, not folded at 80 columns
err = RichConsole(stderr=True, highlight=False, soft_wrap=True, emoji=False)


def _use_boards_dirs(dirs: list[Path]) -> None:
    """Put ``--boards-dir`` in front of the board search path (``boards.BOARDS_ENV``)."""
    for d in dirs:
        if not d.is_dir():
            raise InputError(f"--boards-dir {d}: not a directory")
    if dirs:
        previous = os.environ.get(boards.BOARDS_ENV, "")
        os.environ[boards.BOARDS_ENV] = os.pathsep.join(
            [*(str(d.resolve()) for d in dirs), *([previous] if previous else [])])


def cmd_build(args: argparse.Namespace) -> int:
    board = boards.load_board(args.board)
    preflight([board])
    with Reporter(out) as rep:
        ready = _prepare({args.board: board}, cliargs.kernel_inputs(args), rep)[args.board]
    out.print(f"zImage: {ready.kernel.zimage}\ninitramfs: {ready.initramfs.path}")
    return 0


def _list_cells(sel: plan.Selection) -> int:
    """``run --list``: the expanded matrix, one row per cell; nothing is built or run."""
    table = Table(title=f"matrix {sel.matrix.name} ({sel.matrix.path}): {len(sel.cells)} cell(s)")
    for col in ("cell", "expectation", "suites (default area | other areas)", "mark"):
        table.add_column(col, overflow="fold")
    for c in sel.cells:
        mark = f"skip: {c.skip}" if c.skip else f"xfail: {c.xfail}" if c.xfail else ""
        suites = ",".join(c.suites) or "-"
        if c.area_suites:
            suites += " | " + ",".join(c.area_suites)
        table.add_row(c.name, c.expect.describe() if c.expect else "oracle", suites, mark)
    out.print(table)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    sel = plan.select_cells(cliargs.run_request(args))
    if args.list:
        return _list_cells(sel)
    if args.lava and (args.hosts or args.jobs != (os.cpu_count() or 1)):
        raise InputError("--lava runs every cell in the LAVA lab: it takes no --hosts or -j")
    if sel.request.hosts:
        from harness.hostexec import check_host_keys  # fabric: only where hosts are driven
        check_host_keys(sel.request.hosts)
    with Reporter(out) as rep:
        planned = plan.plan_run(sel, rep, host_check=preflight, build=_prepare)
    executor = lavacmd.executor(args, out) if args.lava else run.executor_for(planned.request, out)
    return run.execute(planned, executor, out, err)


def cmd_lava(args: argparse.Namespace) -> int:
    """``lava export -o DIR --artifact-url PREFIX``: plan (build) the cells, write their LAVA jobs."""
    request = plan.RunRequest(args.matrix, args.board, args.cmdline, cliargs.kernel_inputs(args), 1, 0,
                              Path("results"))
    sel = plan.select_cells(request)
    with Reporter(out) as rep:
        planned = plan.plan_run(sel, rep, host_check=preflight, build=_prepare)
    paths = lava.export_jobs([pc.job for pc in planned.jobs if not pc.cell.skip],
                             lavacmd.settings(args, args.artifact_url), args.out_dir)
    out.print(f"wrote {len(paths)} LAVA job definition(s) in {args.out_dir}, each checked with LAVA's schema",
              markup=False)
    return 0


def cmd_boot(args: argparse.Namespace) -> int:
    validate_cmdline(args.cmdline)
    board = boards.load_board(args.board)
    plan.check_full_cmdlines("--cmdline", [matrix.Cell(args.board, args.cmdline)], {args.board: board},
                             interactive=True)
    preflight([board])
    qemu.qemu_version()
    with Reporter(out) as rep:
        ready = _prepare({args.board: board}, cliargs.kernel_inputs(args), rep)[args.board]
    argv = qemu.qemu_argv(plan.boot_spec(ready, args.cmdline, interactive=True), interactive=True)
    err.print(f"booting {args.board}; Ctrl-A x quits QEMU\n{qemu.printable(argv)}")
    return subprocess.run(argv, check=False, preexec_fn=qemu.die_with_parent).returncode


def cmd_doctor(args: argparse.Namespace) -> int:
    """Check the host for the given boards (default: the default matrix's); one ``ok:`` line per check."""
    names = args.board or list(dict.fromkeys(c.board for c in matrix.load_matrix().cells))
    findings = examine([boards.load_board(name) for name in names], need_build=not args.cells_only)
    raise_if_problems(findings.problems)  # main prints one error line per problem
    for line in findings.passed:
        out.print(f"ok: {line}", markup=False)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from harness import htmlreport  # matplotlib: imported only by the commands that draw

    comparison = compare.compare_paths(args.base, args.new, args.tolerance,
                                       compare.rules_from_args(args.metric))
    out_dir = args.out_dir or (args.new / "compare" if args.new.is_dir() else Path("compare"))
    written = report.write_reports(comparison, out_dir, htmlreport.compare_sections(comparison))
    out.print(comparison.summary(), markup=False)
    for kind, path in written.items():
        out.print(f"{kind}: {path}", markup=False)
    return compare.exit_status(comparison)


def cmd_report(args: argparse.Namespace) -> int:
    from harness import htmlreport  # matplotlib: imported only by the commands that draw

    out.print(f"report: {htmlreport.write_report(args.run, args.output)}", markup=False)
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    report.merge_paths(args.inputs, args.output)
    out.print(f"merged {len(args.inputs)} file(s) into {args.output}", markup=False)
    return 0


def cmd_bisect(args: argparse.Namespace) -> int:
    """``bisect``: see :mod:`harness.bisectcmd`."""
    return bisect_command(args, out, err)


def _sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _error_lines(exc: HarnessError) -> list[str]:
    """What ``main`` prints on stderr for ``exc``: one ``cma-harness: error:`` line per problem."""
    if isinstance(exc, HostNotReady):
        return [f"cma-harness: error: {problem.line()}" for problem in exc.problems]
    detail = [exc.detail] if isinstance(exc, PatchError) and exc.detail else []
    return [f"cma-harness: error: {exc}", *detail]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cma-harness`` console script."""
    args = cliargs.parser(__doc__.splitlines()[0]).parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm)
    try:
        commands = {"build": cmd_build, "run": cmd_run, "boot": cmd_boot, "compare": cmd_compare,
                    "merge": cmd_merge, "report": cmd_report, "doctor": cmd_doctor,
                    "cell": cellcmd.cmd_cell, "judge": cellcmd.cmd_judge, "lava": cmd_lava,
                    "bisect": cmd_bisect}
        _use_boards_dirs(getattr(args, "boards_dir", []))
        return commands[args.command](args)
    except HarnessError as exc:
        for line in _error_lines(exc):
            err.print(line, markup=False)
        return 2
    except KeyboardInterrupt:
        err.print("cma-harness: interrupted", markup=False)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""The command line's grammar: every subcommand, option, default and help text of ``cma-harness``.

:func:`parser` builds the argparse parser; :func:`kernel_inputs` and
:func:`run_request` turn its Namespace into the request objects of
:mod:`harness.plan`, once (nothing here checks values: planning does, with
the messages the user sees).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from harness import bisectcmd, cellcmd, compare, kbuild, lavacmd, matrix, plan
from harness.hosts import configured_hosts


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


def _add_run(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    r = sub.add_parser("run", help="boot every cell of a matrix and check it (JUnit XML out)")
    _common(r)
    r.add_argument("-m", "--matrix", type=Path, default=matrix.DEFAULT_MATRIX,
                   help="matrix TOML file (default: the embedded default matrix)")
    r.add_argument("--board", help="run only the cells of this board")
    r.add_argument("--cmdline", help="run only the cells with exactly this cmdline")
    r.add_argument("-o", "--results", type=Path, default=Path("results"),
                   help="results root directory (default: %(default)s)")
    r.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1, metavar="N",
                   help="run up to N guests at once here (default: CPU count, %(default)s; "
                        "0 with --hosts: only on the hosts)")
    r.add_argument("--hosts", type=Path, metavar="FILE",
                   help="also run cells on the SSH hosts of this TOML file (default: [hosts] of "
                        "~/.config/cma-harness/config.toml, if any)")
    r.add_argument("--no-hosts", action="store_true", help="ignore the user config's [hosts]")
    lavacmd.add_run_options(r)
    r.add_argument("--retries", type=int, default=0, metavar="N",
                   help="rerun a failed cell up to N times; one that passes on a retry is marked flaky")
    r.add_argument("--resume", type=Path, metavar="DIR",
                   help="complete the interrupted run in DIR (its matrix, filters and kernel)")
    r.add_argument("--list", action="store_true",
                   help="print the cells the matrix expands to, and run nothing")


def _add_reports(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    rp = sub.add_parser("report", help="draw a run as one HTML page (grid, memory maps, latencies)")
    rp.add_argument("run", type=Path, help="a results directory, a junit.xml or a merge output")
    rp.add_argument("-o", "--output", type=Path,
                    help="the page to write (default: RUN/report.html, or report.html beside a file)")
    mg = sub.add_parser("merge", help="combine JUnit files of several runs or hosts into one")
    mg.add_argument("inputs", type=Path, nargs="+", help="results directories or junit.xml files")
    mg.add_argument("-o", "--output", type=Path, required=True, help="merged junit.xml to write")


def parser(description: str) -> argparse.ArgumentParser:
    """The ``cma-harness`` parser: one subparser per command, named by ``args.command``."""
    parser = argparse.ArgumentParser(prog="cma-harness", description=description)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build (or fetch from cache) the kernel and initramfs")
    _common(b)
    b.add_argument("--board", default="vexpress-a9", help="board whose config to build")
    _add_run(sub)
    _add_reports(sub)
    o = sub.add_parser("boot", help="boot one board interactively (Ctrl-A x quits)")
    _common(o)
    o.add_argument("--board", default="vexpress-a9")
    o.add_argument("--cmdline", default="", help="extra kernel arguments, e.g. cma=64M")
    d = sub.add_parser("doctor", help="check this host has every tool a build and boot need (seconds)")
    d.add_argument("--board", action="append", metavar="NAME",
                   help="check QEMU knows this board (repeatable; default: the default matrix's boards)")
    d.add_argument("--cells-only", action="store_true",
                   help="check only what running cells needs (QEMU, Python), not building kernels")
    _boards_dir(d)
    cellcmd.add_parser(sub)  # ``cell`` (and ``judge``): dispatched by cli.main()
    _common(bisectcmd.add_parser(sub))  # ``bisect``
    e = lavacmd.add_parser(sub)  # ``lava export``
    _common(e)
    e.add_argument("-m", "--matrix", type=Path, default=matrix.DEFAULT_MATRIX,
                   help="matrix TOML file (default: the embedded default matrix)")
    e.add_argument("--board", help="only the cells of this board")
    e.add_argument("--cmdline", help="only the cells with exactly this cmdline")
    return parser


def kernel_inputs(args: argparse.Namespace) -> plan.KernelInputs:
    """``--kernel-src``, ``--series``, ``--patch`` and ``--build-jobs`` (checked when building)."""
    return plan.KernelInputs(args.kernel_src, args.series, tuple(args.patch), args.build_jobs)


def run_request(args: argparse.Namespace) -> plan.RunRequest:
    """The :class:`~harness.plan.RunRequest` of ``run``'s arguments, as given (checked when selecting).

    Its hosts are read here (``--hosts``, else the user config's ``[hosts]``).

    Raises:
        InputError: a bad hosts file (:func:`harness.hosts.load_hosts`).
    """
    hosts = () if args.no_hosts or args.lava else tuple(configured_hosts(args.hosts))
    return plan.RunRequest(args.matrix, args.board, args.cmdline, kernel_inputs(args), args.jobs,
                           args.retries, args.results, args.resume, hosts)

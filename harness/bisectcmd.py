"""``cma-harness bisect``: from "something regressed" to "this patch (or commit) did it".

Series form (the patches of ``--series`` and ``--patch``, see :mod:`harness.bisectseries`)::

    cma-harness bisect --testcase 'vexpress-a9:cma=32M::cma-debugfs*' \\
        --series kernel-patches/series --patch a.patch --patch b.patch

Git form (``--kernel-src`` a git work tree, ``--good`` a commit there, see
:mod:`harness.bisectgit`)::

    cma-harness bisect --testcase 'vexpress-a9:cma=32M::cma-debugfs*' \\
        --kernel-src ~/src/linux --good v7.2 --bad HEAD

The form is the git one when ``--kernel-src`` is a git work tree and ``--good`` names
a commit of it; a ``--good`` that names a commit and a patch alike is refused.

Exit status: 0 the first bad patch or commit was found; 1 skipped or noisy steps
leave several suspects; 2 bad input (one ``error:`` line: a predicate matching no
cell, a good end where the predicate already fails, a bad end where it passes...; the
results directory is left as it was); 130 interrupted (the steps so far are kept in
the unpublished ``.<id>.partial`` directory).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from rich.console import Console

from harness import plan
from harness.bisect import Outcome, make_predicate
from harness.bisectgit import GitBisect, bisect_git, commit_of, is_git_tree, plan_git
from harness.bisectreport import BisectDir, Summary, verdict_lines, write_outputs
from harness.bisectseries import SeriesBisect, bisect_series, names_a_patch, plan_series, read_patches
from harness.bisectstep import BisectProgress, Setup, StepRunner, load_records
from harness.boards import load_board
from harness.doctor import preflight
from harness.errors import InputError
from harness.matrix import DEFAULT_MATRIX, load_matrix
from harness.progress import Reporter

DEFAULT_RESULTS = Path("results") / "bisect"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """``bisect``'s parser; the caller adds the kernel options (``--kernel-src``, ``--series``...)."""
    b = sub.add_parser("bisect", help="find the patch of a series, or the commit of a git tree, "
                                      "after which testcases fail")
    b.add_argument("-t", "--testcase", action="append", default=[], metavar="CELL::TESTCASE",
                   help="the predicate: a testcase that passes at the good end and fails at the bad "
                        "end, e.g. 'vexpress-a9:cma=64M::cma-test/alloc-free/*' (globs; repeatable)")
    b.add_argument("--good", metavar="PATCH|REV",
                   help="the good end: the last good patch of the series ('none': the bare kernel; "
                        "default with --patch: the series alone), or a commit of --kernel-src's git tree")
    b.add_argument("--bad", metavar="PATCH|REV",
                   help="the bad end: the last patch applied (default: the last one), or a commit "
                        "(default: HEAD)")
    b.add_argument("-m", "--matrix", type=Path, default=DEFAULT_MATRIX,
                   help="the matrix whose cells the predicate names (default: the embedded default matrix)")
    b.add_argument("--repeats", type=int, default=1, metavar="N",
                   help="run each step's cells N times; a step whose verdict differs is noisy, "
                        "reported and never taken as good or bad (default: %(default)s)")
    b.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1, metavar="N",
                   help="guests at once (default: CPU count, %(default)s)")
    b.add_argument("-o", "--results", type=Path, default=DEFAULT_RESULTS,
                   help="results root: the bisect goes to DIR/<bisect-id> (default: %(default)s)")
    return b


def _plan(args: argparse.Namespace, kernel: plan.KernelInputs, rep: Reporter) -> SeriesBisect | GitBisect:
    """The series or the git bisect the arguments ask for (see the module docstring).

    Raises:
        InputError: bad ends, patches or revisions; an ambiguous ``--good``.
    """
    if args.good is None or not is_git_tree(kernel.source) or commit_of(kernel.source, args.good) is None:
        return plan_series(kernel, args.good, args.bad, rep)
    _series, names = read_patches(kernel, rep)
    if names_a_patch(args.good, names):
        raise InputError(f"--good {args.good}: names both a commit of {kernel.source} and a patch of the "
                         "series: give the commit's full hash, or the patch's full name")
    return plan_git(kernel, args.good, args.bad)


def _context(job: SeriesBisect | GitBisect, setup: Setup, repeats: int) -> tuple[tuple[str, str], ...]:
    """The report's context rows: where the kernels came from, the ends, the matrix."""
    k = job.kernel
    extra = (("--patch", ", ".join(map(str, k.patches))),) if k.patches else ()
    if isinstance(job, GitBisect):
        ends = (("git tree", str(k.source)), ("good end", job.good), ("bad end", job.bad),
                ("on each commit", str(k.series)))
    else:
        n = len(job.candidates)
        ends = (("kernel source", str(k.source)), ("series", str(k.series)),
                ("good end", f"after {job.label(0)}"), ("bad end", f"after {job.label(n)}"))
    return (*ends, *extra, ("matrix", str(setup.matrix.path)), ("repeats", str(repeats)))


def _bisect(job: SeriesBisect | GitBisect, setup: Setup, args: argparse.Namespace, out: Console) -> Outcome:
    """Run the bisect ``job`` asked for; where it ended."""
    if isinstance(job, GitBisect):
        return bisect_git(job, setup, args.testcase, out)
    with BisectProgress(out) as progress:
        return bisect_series(job, StepRunner(setup, progress))


def cmd_bisect(args: argparse.Namespace, out: Console, err: Console) -> int:
    """``cma-harness bisect``: check the input, step both ends, search, write the reports.

    Returns:
        0 the first bad patch or commit was found, 1 several suspects are left.

    Raises:
        InputError: bad input (see the module docstring); nothing is left in the results root.
        HostNotReady, EnvironmentProblem: the host or the cache.
        KeyboardInterrupt: interrupted; the steps so far stay in the unpublished directory.
    """
    started = time.monotonic()
    if args.repeats < 1 or args.jobs < 1 or args.build_jobs < 1:
        raise InputError("--repeats, -j/--jobs and --build-jobs must be at least 1")
    kernel = plan.KernelInputs(args.kernel_src, args.series, tuple(args.patch), args.build_jobs)
    mat = load_matrix(args.matrix)
    predicate = make_predicate(args.testcase, mat)
    boards = {c.board: load_board(c.board) for c in predicate.cells}
    plan.check_full_cmdlines(str(mat.path), predicate.cells, boards)
    with Reporter(out) as rep:
        job = _plan(args, kernel, rep)
    preflight(list(boards.values()))
    bdir = BisectDir(args.results)
    try:
        setup = Setup(predicate, mat, boards, bdir.partial, args.jobs, args.repeats)
        outcome = _bisect(job, setup, args, out)
        summary = Summary("git" if isinstance(job, GitBisect) else "series", predicate, job.candidates,
                          tuple(load_records(bdir.partial)), outcome, _context(job, setup, args.repeats),
                          time.monotonic() - started)
        write_outputs(summary, bdir.partial)
        final = bdir.publish()
    except KeyboardInterrupt:
        err.print(f"cma-harness: the steps run so far are kept in {bdir.partial}", markup=False)
        raise
    except BaseException:
        bdir.discard()
        raise
    for line in verdict_lines(summary, final):
        out.print(line, markup=False)
    return 0 if summary.first_bad is not None else 1

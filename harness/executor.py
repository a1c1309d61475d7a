"""Executors: what runs a plan's cells and hands back each result as it finishes.

:class:`Executor` is the interface :func:`harness.run.execute` drives;
:class:`LocalExecutor`, guests in a thread pool on this host
(:func:`harness.runner.run_jobs`), is the first implementation.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from rich.console import Console

from harness import runner
from harness.cell import CellResult, run_job
from harness.errors import EnvironmentProblem
from harness.plan import PlannedCell

LogPath = Callable[[str], Path]
"""Where a cell's console log goes, given its slug (``ResultsDir.log_path``)."""

OnResult = Callable[[CellResult], None]


class Executor(Protocol):
    """Runs planned cells, handing each result back the moment its cell finishes."""

    def describe(self, cells: int) -> str:
        """How ``cells`` cells will run, e.g. ``2 at a time``."""
        ...

    def run(self, jobs: Sequence[PlannedCell], log_path: LogPath, on_result: OnResult) -> list[CellResult]:
        """Run ``jobs``, writing each console log to ``log_path(job.slug)``.

        ``on_result`` is called in the calling thread with each result as soon
        as its cell finishes (skip, xfail and retries applied).

        Returns:
            The results, in the order of ``jobs``.

        Raises:
            KeyboardInterrupt, EnvironmentProblem, ...: every running cell is
                stopped first; results already handed to ``on_result`` stay.
        """
        ...


# What writing a file says when the results' file system cannot take it.
_CANNOT_WRITE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)


def cell_runner(job: PlannedCell) -> Callable[[Path], CellResult]:
    """:func:`harness.cell.run_job` of one planned cell, writing its console log to the path given.

    The log is written as QEMU prints, so a full disk (or quota, or a read-only
    remount) shows up there first, as an OSError out of ``run_job``.  It becomes an
    :class:`EnvironmentProblem` naming the log (one ``error:`` line, exit 2, the run's
    finished cells kept for ``--resume``), and the half-written log of the cell that
    did not finish is removed: ``--resume`` runs that cell again.
    """
    def run(log: Path) -> CellResult:
        try:
            return run_job(job.job, log)  # verifies each boot file against its SHA-256 first
        except OSError as exc:
            if exc.errno not in _CANNOT_WRITE:
                raise
            log.unlink(missing_ok=True)
            raise EnvironmentProblem(f"cannot write {log}: {exc.strerror or exc} (cell {job.cell.name} "
                                     "did not finish; its half-written log was removed)") from exc
    return run


@dataclass(frozen=True)
class LocalExecutor:
    """Up to ``parallel`` guests at once on this host, with live progress on ``console``.

    Attributes:
        parallel: guests at once (>= 1; fewer when there are fewer jobs).
        retries: reruns of a failed cell (:func:`harness.runner.with_retries`).
        console: where progress goes.
        previous: seconds each cell took last time, by slug (longest start first).
    """

    parallel: int
    retries: int
    console: Console
    previous: Mapping[str, float] = field(default_factory=dict)

    def describe(self, cells: int) -> str:
        """``N at a time``: ``parallel``, or fewer when there are fewer cells."""
        return f"{max(1, min(self.parallel, cells))} at a time"

    def run(self, jobs: Sequence[PlannedCell], log_path: LogPath, on_result: OnResult) -> list[CellResult]:
        """See :meth:`Executor.run`; :func:`harness.runner.run_jobs` does the work."""
        work = [runner.Job(j.cell, log_path(j.slug), cell_runner(j)) for j in jobs]
        return runner.run_jobs(work, max(1, min(self.parallel, len(work))), on_result, self.console,
                               retries=self.retries, previous=dict(self.previous))

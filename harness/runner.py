"""Running a matrix: up to N cells at once, each a guest of its own, with live progress.

Cells are independent guests, so they run in worker threads (each thread
spends its time waiting on its QEMU's console).  Each finished cell is handed
to ``on_done`` at once (the results directory writes it to disk), so the
harness keeps nothing of a cell but its :class:`~harness.cell.CellResult`.

``xfail`` and ``skip`` from the matrix are applied here: a skipped cell is not
booted; an xfail cell that fails has its failing checks reported as skipped
with the reason, and one that passes gets a failing ``xfail`` check (the mark
is stale), as pytest's ``strict`` xfail does.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from harness.cell import allow_guests, kill_all_guests
from harness.cellresult import CellResult, Mark
from harness.checks import CheckResult, Status
from harness.matrix import Cell


@dataclass(frozen=True)
class Job:
    """One cell ready to run: ``run(log_path)`` boots it and returns its result."""

    cell: Cell
    log: Path
    run: Callable[[Path], CellResult]


def skip_result(cell: Cell, log: Path) -> CellResult:
    """The result of a cell the matrix marks ``skip``: one skipped check, no boot (writes nothing)."""
    return CellResult(cell, [CheckResult("boot", Status.SKIP, f"skipped: {cell.skip}")], log, 0.0)


def skipped_result(cell: Cell, log: Path) -> CellResult:
    """:func:`skip_result`, with a one-line ``log`` saying the cell was not booted."""
    log.write_text(f"not booted: skip = {cell.skip!r} in the matrix\n")
    return skip_result(cell, log)


def apply_xfail(result: CellResult) -> CellResult:
    """Turn an ``xfail`` cell's outcome into what the report shows.

    A failing or erroring check becomes SKIP with ``expected failure (reason):
    message``; if nothing failed, a FAIL check ``xfail`` says the mark is stale.
    Cells without ``xfail`` are returned unchanged.
    """
    reason = result.cell.xfail
    if not reason:
        return result
    if any(c.status.bad for c in result.checks):
        checks = [replace(c, status=Status.SKIP, message=f"expected failure ({reason}): {c.message}")
                  if c.status.bad else c for c in result.checks]
        return replace(result, checks=checks, mark=Mark.XFAIL)
    checks = [*result.checks, CheckResult(
        "xfail", Status.FAIL, f"passed although marked xfail ({reason}): remove the mark")]
    return replace(result, checks=checks, mark=Mark.XPASS)


class CellProgress:
    """Progress of a matrix run: a live bar on a terminal, one line per cell otherwise.

    The bar shows cells done/total, passed and failed counts and an ETA; in CI
    (not a terminal) each finished cell prints ``[i/N] name: STATUS (s)``.
    """

    def __init__(self, console: Console, total: int) -> None:
        self.console = console
        self.total = total
        self.done = self.passed = self.failed = 0
        self._lock = threading.Lock()
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> CellProgress:
        if self.console.is_terminal:
            self._progress = Progress(
                TextColumn("[bold]cells"), BarColumn(), MofNCompleteColumn(),
                TextColumn("[green]{task.fields[passed]} passed[/] [red]{task.fields[failed]} failed[/]"),
                TextColumn("ETA"), TimeRemainingColumn(), console=self.console, transient=False)
            self._progress.start()
            self._task = self._progress.add_task("cells", total=self.total, passed=0, failed=0)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.stop()

    def note(self, line: str) -> None:
        """Print ``line`` above the bar (or as a line of its own in CI)."""
        console = self._progress.console if self._progress is not None else self.console
        console.print(line, markup=False, highlight=False, soft_wrap=True)

    def finished(self, result: CellResult) -> None:
        """Count one finished cell and show it."""
        with self._lock:
            self.done += 1
            ok = result.status in (Status.PASS, Status.SKIP)
            self.passed += ok
            self.failed += not ok
            where = f" on {result.extra['host']}" if "host" in result.extra else ""
            line = (f"[{self.done}/{self.total}] {result.cell.name}: {result.status.value.upper()} "
                    f"({result.seconds:.1f}s){where}")
            if self._progress is not None and self._task is not None:
                self._progress.console.print(line, markup=False, highlight=False)
                self._progress.update(self._task, advance=1, passed=self.passed, failed=self.failed)
            else:
                self.console.print(line, markup=False, highlight=False, soft_wrap=True)


def with_retries(job: Job, retries: int) -> CellResult:
    """Run ``job``, rerunning it up to ``retries`` times while it fails (FAIL or ERROR).

    Each failed attempt's console log is kept as ``<cell>.attempt<N>.log``.  A
    cell that passes on a retry is never silently green: it gets properties
    ``retry.flaky=true`` and ``retry.attempts``, and a skipped ``flaky``
    testcase naming the first failure.  xfail cells are not retried.
    """
    result = job.run(job.log)
    attempt = 1
    first_failure = ""
    while result.status.bad and attempt <= retries and not job.cell.xfail:
        bad = next(c for c in result.checks if c.status.bad)
        first_failure = first_failure or f"{bad.name}: {bad.message}"
        job.log.rename(job.log.with_name(f"{job.log.stem}.attempt{attempt}.log"))
        attempt += 1
        result = job.run(job.log)
    if attempt == 1:
        return result
    if not result.status.bad:
        checks = [*result.checks, CheckResult(
            "flaky", Status.SKIP, f"passed on attempt {attempt} after failing: {first_failure}")]
        return replace(result, checks=checks, mark=Mark.FLAKY, attempts=attempt)
    return replace(result, mark=Mark.RETRIED, attempts=attempt)


def estimated_seconds(cell: Cell, previous: dict[str, float]) -> float:
    """How long ``cell`` will take: its time in the previous run, else a guess from its suites.

    ``previous`` maps cell slugs to seconds (``metrics.json`` of the last run).
    The guess: 3 s of boot and checks, 2 s per suite, 20 s more for migrate
    (it fills all of memory).  Used to start the longest cells first.
    """
    if cell.slug in previous:
        return previous[cell.slug]
    suites = (*cell.suites, *cell.area_suites)
    return 3.0 + 2.0 * len(suites) + (20.0 if "migrate" in suites else 0.0)


def run_jobs(jobs: Sequence[Job], parallel: int, on_done: Callable[[CellResult], None],
             console: Console, retries: int = 0,
             previous: dict[str, float] | None = None) -> list[CellResult]:
    """Run ``jobs`` with at most ``parallel`` guests at once; results in job order.

    Cells start longest first (:func:`estimated_seconds` with ``previous``), so
    a long cell does not end the run alone on one core while the others idle.
    ``retries``: see :func:`with_retries`.

    ``on_done`` is called (in the calling thread) with each result as soon as
    its cell finishes.  On Ctrl-C (KeyboardInterrupt) or any other exception,
    cells not started are cancelled, every running guest is killed, the
    workers are joined, and the exception propagates.

    Raises:
        ValueError: ``parallel`` < 1.
    """
    if parallel < 1:
        raise ValueError("parallel must be at least 1")
    results: dict[int, CellResult] = {}
    allow_guests()
    pool = cf.ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="cell")
    with CellProgress(console, len(jobs)) as progress:
        try:
            futures: dict[cf.Future[CellResult], int] = {}
            order = sorted(range(len(jobs)),
                           key=lambda i: -estimated_seconds(jobs[i].cell, previous or {}))
            for i in order:
                job = jobs[i]
                if job.cell.skip:
                    results[i] = skipped_result(job.cell, job.log)
                    on_done(results[i])
                    progress.finished(results[i])
                else:
                    futures[pool.submit(with_retries, job, retries)] = i
            for fut in cf.as_completed(futures):
                i = futures[fut]
                results[i] = apply_xfail(fut.result())
                on_done(results[i])
                progress.finished(results[i])
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            deadline = time.monotonic() + 10
            while kill_all_guests() and time.monotonic() < deadline:
                time.sleep(0.05)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    return [results[i] for i in range(len(jobs))]

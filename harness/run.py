"""Executing a planned run: the results directory, resume, each cell written as it finishes.

:func:`execute` takes a :class:`harness.plan.RunPlan` and any
:class:`harness.executor.Executor`: it opens the run's results directory (a new
one with its provenance, or ``--resume``'s with the cells already done left
out), hands the remaining jobs to the executor, writes each result the moment
it comes back (``cells/<slug>.xml`` and ``.json``), then publishes junit.xml
and metrics.json, and draws the run into ``report.html``.  An interrupted run
keeps its finished cells for ``--resume``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from harness import results
from harness.cell import CellResult
from harness.errors import EnvironmentProblem, HarnessError
from harness.executor import Executor, LocalExecutor
from harness.plan import PlannedCell, RunPlan, RunRequest


def local_executor(request: RunRequest, console: Console) -> LocalExecutor:
    """The executor of ``cma-harness run``: ``-j`` guests on this host, ``--retries``,
    the longest cells of the last run in the results root started first."""
    return LocalExecutor(request.jobs, request.retries, console, results.previous_seconds(request.results))


def executor_for(request: RunRequest, console: Console) -> Executor:
    """:func:`local_executor`, or with ``request.hosts`` a :class:`~harness.hostexec.HostsExecutor`
    (imported only then: fabric is needed on the machine that drives hosts, not on a host)."""
    if not request.hosts:
        return local_executor(request, console)
    from harness.hostexec import HostsExecutor
    return HostsExecutor(request.hosts, request.jobs, request.retries, console,
                         results.previous_seconds(request.results))


def open_run_dir(plan: RunPlan) -> tuple[results.ResultsDir, set[str]]:
    """The run's results directory with its provenance written, and the slugs of cells already done.

    A new directory that cannot be set up is removed again (nothing is left);
    ``--resume`` reopens the unfinished one (its run.json stays as it was).

    Raises:
        InputError: ``--resume`` of a directory that is not an unfinished run; a
            board file or the matrix cannot be read.
        EnvironmentProblem: the directory or a file in it cannot be written.
    """
    req = plan.request
    try:
        run_dir = results.ResultsDir(req.results, resume=req.resume)
    except OSError as exc:  # checked writable before the build; a full disk or a race since
        raise EnvironmentProblem(f"cannot create a run directory in {req.results}: "
                                 f"{exc.strerror or exc}") from exc
    if req.resume is not None:
        return run_dir, run_dir.done_cells()
    try:
        run_dir.write_provenance(dict(plan.info), list(plan.board_files), plan.matrix.path)
    except BaseException:
        run_dir.discard()
        raise
    return run_dir, set()


def write_result(run_dir: results.ResultsDir, job: PlannedCell, result: CellResult) -> None:
    """Write one finished cell into ``run_dir``, each file atomically.

    Beside its console log go ``logs/<slug>.job.json`` (the :class:`~harness.job.CellJob`
    it ran) and ``logs/<slug>.result.json`` (the typed result, with how the guest
    stopped), so ``cma-harness judge logs/<slug>.log --job ... --result ...``
    recomputes the testsuite from any results directory; then ``cells/<slug>.json``
    (metrics) and ``cells/<slug>.xml`` (the testsuite, which marks the cell done).

    Raises:
        EnvironmentProblem: a file cannot be written (no partial file is left).
    """
    logs = run_dir.log_path(job.slug).parent
    if job.job.board_toml:  # a board not read from a file makes a job that cannot be serialized
        results.save(logs / f"{job.slug}.job.json", job.job.to_json().encode())
    results.save(logs / f"{job.slug}.result.json", result.to_json(logs).encode())
    suite = results.cell_testsuite(result, job.provenance, job.kernel_cmdline, run_dir.timestamp)
    run_dir.write_cell(job.slug, suite, results.cell_metrics(result))


def _keep_or_discard(plan: RunPlan, run_dir: results.ResultsDir, wrote: bool, err: Console) -> None:
    """After an interruption: remove a new run that finished no cell, else say how to resume it."""
    if not wrote and plan.request.resume is None:
        run_dir.discard()
        return
    err.print(f"cma-harness: {len(run_dir.done_cells())} of {len(plan.jobs)} cell(s) are kept in "
              f"{run_dir.partial}; 'cma-harness run --resume {run_dir.partial}' completes the run",
              markup=False)


def _run_and_publish(plan: RunPlan, todo: Sequence[PlannedCell], executor: Executor,
                     run_dir: results.ResultsDir, out: Console,
                     err: Console) -> tuple[list[CellResult], Path]:
    """Run ``todo``, writing each result as it finishes, then publish the run.

    Returns:
        This session's results (``todo``'s order) and the published directory.

    Raises:
        Whatever stopped the run (KeyboardInterrupt, EnvironmentProblem...), after
        :func:`_keep_or_discard`.
    """
    by_slug = {job.slug: job for job in todo}
    written: list[CellResult] = []

    def write(result: CellResult) -> None:
        write_result(run_dir, by_slug[result.cell.slug], result)
        written.append(result)

    req = plan.request
    try:
        out.print(f"running {len(todo)} cell(s) of matrix {plan.matrix.name}, {executor.describe(len(todo))}"
                  + (f", up to {req.retries} retries each" if req.retries else ""))
        finished = executor.run(todo, run_dir.log_path, write)
        final = run_dir.finish([job.slug for job in plan.jobs], finished)
    except BaseException:
        _keep_or_discard(plan, run_dir, bool(written), err)
        raise
    return finished, final


def execute(plan: RunPlan, executor: Executor, out: Console, err: Console) -> int:
    """Run the cells of ``plan`` not yet done with ``executor``, write each, publish; the exit status.

    Prints the resume count, the executor's progress, the summary table and the
    junit.xml path on ``out``; after an interruption, how to resume on ``err``.

    Returns:
        0 every cell (this session's and, resumed, the earlier ones) met its
        expectation; 1 otherwise.

    Raises:
        KeyboardInterrupt, HarnessError: the run stopped; a run that finished
            no cell is removed, else it is kept for ``--resume``.
    """
    run_dir, done_slugs = open_run_dir(plan)
    if plan.request.resume is not None:
        out.print(f"resuming {run_dir.run_id}: {len(done_slugs)} of {len(plan.jobs)} cell(s) already done")
    todo = [job for job in plan.jobs if job.slug not in done_slugs]
    finished, final = _run_and_publish(plan, todo, executor, run_dir, out, err)
    results.print_summary(finished, out, final)
    earlier = len(plan.jobs) - len(finished)
    if earlier:
        out.print(f"(and {earlier} cell(s) from before the interruption)")
    out.print(f"JUnit: {final / 'junit.xml'}")
    write_report(final, out, err)
    return results.exit_status_of_run(final) if earlier else results.exit_status(finished)


def write_report(final: Path, out: Console, err: Console) -> None:
    """Write ``report.html`` into the published run ``final`` and print its path.

    The run's results stand without it: a page that cannot be written is one
    warning line on ``err`` (``cma-harness report DIR`` writes it again), not
    a failed run.
    """
    from harness import htmlreport  # matplotlib: not imported by the commands that never draw

    try:
        out.print(f"report: {htmlreport.write_report(final)}")
    except HarnessError as exc:
        err.print(f"cma-harness: warning: report.html not written: {exc}", markup=False)

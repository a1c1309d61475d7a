"""What a report shows of a run, read from its results directory or a JUnit file.

A run is read the way ``compare`` reads it (:func:`harness.compare.load_run`:
a results directory, a ``junit.xml``, or a ``merge`` output), so every run
the harness ever wrote can be reported.  Each testsuite becomes a
:class:`CellView`: its state for the grid, its testcases, the measurements
its properties carry (flattened by :func:`harness.cellresult.cell_properties`,
read back here: CMA areas, suite counters, latencies, boot time), and, when
the run kept it in ``logs/``, the cell's job (:class:`harness.job.CellJob`:
the board's RAM, the oracle's prediction and memory map) and how its guest
ended (QEMU's command line).  Nothing here reads a console log.
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from harness.cellresult import XFAIL_AS_EXPECTED, XPASS, AreaInfo
from harness.compare import CaseResult, Run, junit_file, load_run, number
from harness.errors import InputError
from harness.job import CellJob
from harness.matrix import Cell
from harness.outcome import Status

_SUITE_PREFIX = "cma-test"
_COUNTERS = ("used", "maxchunk", "alloc_pages_success", "alloc_pages_fail")


class CellState(StrEnum):
    """A cell's one-word state in the grid, worst first (see :func:`cell_state`)."""

    INFRA = "infrastructure error"  # the host ended the guest (QEMU killed, a lab's error)
    ERROR = "error"  # the guest could not give evidence (panic, timeout, no shell)
    XPASS = "xpass"  # marked xfail but passed: the mark is stale
    FAIL = "fail"
    FLAKY = "flaky"  # failed, then passed on a retry
    XFAIL = "xfail"  # failed as the matrix expects
    PASS = "pass"
    SKIP = "skip"  # every testcase skipped (a matrix ``skip``)


@dataclass(frozen=True)
class SuiteStats:
    """One suite run of a cell, from its properties.

    Attributes:
        path: ``cma-test/<suite>`` or ``cma-test@<area>/<suite>``.
        seconds: how long its command ran (seconds), None if not recorded.
        latency_us: its ``latency_us`` statistics, ``{"min"|"median"|"max"|"n": µs or count}``.
        counters: ``(area, counter, before, after)`` as printed (pages, or a count for
            ``alloc_pages_success``/``_fail``), in the order written.
    """

    path: str
    seconds: float | None
    latency_us: dict[str, int] = field(default_factory=dict)
    counters: tuple[tuple[str, str, str, str], ...] = ()

    @property
    def suite(self) -> str:
        """The suite's name without the area: ``alloc-free`` for ``cma-test@x/alloc-free``."""
        return self.path.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class CellView:
    """One cell of a run, as a report shows it.

    Attributes:
        name: ``board:cmdline`` (the testsuite name).
        board, cmdline: from the suite's properties (``cmdline`` "" for the default).
        state: see :class:`CellState`.
        cases: its testcases in file order.
        properties: every suite property.
        areas: the CMA areas cma-dev listed (physical base, bytes).
        suites: its suite runs.
        boot_seconds: QEMU start to the first shell answer (seconds), None if never.
        seconds: the cell's wall time (seconds), None if not recorded.
        job: the cell's job when the run kept ``logs/<cell>.job.json``, else None.
        qemu_argv: QEMU's command line when ``logs/<cell>.result.json`` recorded it.
        log: the console log file, None when the run did not keep it.
        run_dir: the results directory the cell came from, None for a bare JUnit file.
    """

    name: str
    board: str
    cmdline: str
    state: CellState
    cases: tuple[CaseResult, ...]
    properties: dict[str, str]
    areas: tuple[AreaInfo, ...]
    suites: tuple[SuiteStats, ...]
    boot_seconds: float | None
    seconds: float | None
    job: CellJob | None = None
    qemu_argv: tuple[str, ...] = ()
    log: Path | None = None
    run_dir: Path | None = None

    @property
    def anchor(self) -> str:
        """An HTML id for the cell: ``cell-`` and its name with unsafe characters as ``_``."""
        return "cell-" + "".join(c if c.isalnum() or c in "-_.:" else "_" for c in self.name)

    @property
    def bad_cases(self) -> tuple[CaseResult, ...]:
        """Its failed and errored testcases."""
        return tuple(c for c in self.cases if c.outcome in (Status.FAIL, Status.ERROR))


@dataclass(frozen=True)
class RunView:
    """A whole run for a report.

    Attributes:
        source: the junit.xml read.
        run_dir: its results directory, None for a bare JUnit file.
        info: ``run.json`` (run id, timestamp, invocation, kernels, ...), {} when absent.
        cells: every cell, in file order.
    """

    source: Path
    run_dir: Path | None
    info: dict[str, Any]
    cells: tuple[CellView, ...]

    @property
    def boards(self) -> tuple[str, ...]:
        """Board names in order of first appearance."""
        return tuple(dict.fromkeys(c.board for c in self.cells))

    @property
    def cmdlines(self) -> tuple[str, ...]:
        """Cell command lines in order of first appearance."""
        return tuple(dict.fromkeys(c.cmdline for c in self.cells))

    def cell(self, board: str, cmdline: str) -> CellView | None:
        """The cell of ``board`` booted with ``cmdline``, None when the run has none."""
        return next((c for c in self.cells if c.board == board and c.cmdline == cmdline), None)


def cell_state(cases: tuple[CaseResult, ...], props: dict[str, str]) -> CellState:
    """The grid state of a cell from its testcases and suite properties.

    An infrastructure ``<error>`` (``type="infrastructure"``) outranks a guest
    error, which outranks an xpass (``xfail.outcome=xpass``), a failure, a
    flaky pass (``retry.flaky``) and an xfail (``xfail.outcome`` = failed as
    expected); a cell whose testcases are all skipped is SKIP.
    """
    outcomes = {c.outcome for c in cases}
    if any(c.infrastructure for c in cases):
        return CellState.INFRA
    if Status.ERROR in outcomes:
        return CellState.ERROR
    if props.get("xfail.outcome") == XPASS:
        return CellState.XPASS
    if Status.FAIL in outcomes:
        return CellState.FAIL
    if props.get("retry.flaky", "").lower() == "true":
        return CellState.FLAKY
    if props.get("xfail.outcome") == XFAIL_AS_EXPECTED:
        return CellState.XFAIL
    if cases and outcomes == {Status.SKIP}:
        return CellState.SKIP
    return CellState.PASS


def areas_of(props: dict[str, str]) -> tuple[AreaInfo, ...]:
    """The ``area.<name>.base``/``.size`` properties as areas, in the order written."""
    out = []
    for key, value in props.items():
        if key.startswith("area.") and key.endswith(".base"):
            name = key[len("area."):-len(".base")]
            size = props.get(f"area.{name}.size", "")
            try:
                out.append(AreaInfo(name, int(value, 16), int(size)))
            except ValueError:
                continue
    return tuple(out)


def _suite_stats(path: str, props: dict[str, str]) -> SuiteStats:
    latency = {stat: int(v) for stat in ("min", "median", "max", "n")
               if (v := props.get(f"{path}.latency_us.{stat}", "")).isdigit()}
    counters = []
    prefix = f"{path}.before."
    for key, before in props.items():
        if key.startswith(prefix):
            area, _, counter = key[len(prefix):].rpartition(".")
            after = props.get(f"{path}.after.{area}.{counter}", "")
            counters.append((area, counter, before, after))
    return SuiteStats(path, number(props.get(f"{path}.seconds")), latency, tuple(counters))


def suites_of(props: dict[str, str]) -> tuple[SuiteStats, ...]:
    """The suite runs recorded in ``props``: every ``cma-test…/<suite>.seconds`` key, in order."""
    paths = [k[:-len(".seconds")] for k in props
             if k.startswith(_SUITE_PREFIX) and k.endswith(".seconds") and "/" in k]
    return tuple(_suite_stats(p, props) for p in paths)


def _jobs(logs: Path) -> dict[str, Path]:
    """``{cell name: job file}`` of the ``*.job.json`` files in ``logs`` (unreadable ones left out)."""
    out: dict[str, Path] = {}
    for path in sorted(logs.glob("*.job.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            cell = data["cell"]
            out[Cell(str(cell["board"]), str(cell["cmdline"])).name] = path
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return out


def _qemu_argv(result_file: Path) -> tuple[str, ...]:
    """QEMU's argv from a cell's ``result.json`` (``ending.qemu_argv``), () when not there."""
    try:
        data = json.loads(result_file.read_text(encoding="utf-8"))
        argv = (data.get("ending") or {}).get("qemu_argv") or ()
        return tuple(str(a) for a in argv)
    except (OSError, ValueError, AttributeError):
        return ()


@dataclass
class _Logs:
    """The ``logs/`` directories a run's cells may have their files in (merged runs: several)."""

    by_dir: dict[Path, dict[str, Path]] = field(default_factory=dict)

    def job_file(self, run_dir: Path | None, name: str) -> Path | None:
        if run_dir is None:
            return None
        if run_dir not in self.by_dir:
            self.by_dir[run_dir] = _jobs(run_dir / "logs")
        return self.by_dir[run_dir].get(name)


def _cell_run_dir(props: dict[str, str], run_dir: Path | None) -> Path | None:
    """Where a cell's ``logs/`` is: its run, or for a merged file the run named by ``merge.source``."""
    source = props.get("merge.source")
    if source:
        parent = Path(source).parent
        return parent if (parent / "logs").is_dir() else None
    return run_dir


def _load_job(path: Path | None) -> CellJob | None:
    if path is None:
        return None
    try:
        return CellJob.load(path)
    except InputError:
        return None


def _cell_view(name: str, cases: tuple[CaseResult, ...], props: dict[str, str],
               run_dir: Path | None, logs: _Logs, seconds: float | None) -> CellView:
    cell_dir = _cell_run_dir(props, run_dir)
    job_file = logs.job_file(cell_dir, props.get("merge.original_name", name))
    job = _load_job(job_file)
    log = qemu = None
    if job_file is not None:
        stem = job_file.name.removesuffix(".job.json")
        log = job_file.with_name(f"{stem}.log")
        qemu = _qemu_argv(job_file.with_name(f"{stem}.result.json"))
    board = props.get("board", name.split(":", 1)[0])
    cmdline = props.get("cmdline", name.split(":", 1)[-1])
    return CellView(name, board, "" if cmdline == "(default)" else cmdline, cell_state(cases, props),
                    cases, props, areas_of(props), suites_of(props),
                    number(props.get("boot.seconds")), seconds, job, qemu or (),
                    log if log is not None and log.is_file() else None, cell_dir)


def _run_info(run_dir: Path | None) -> dict[str, Any]:
    if run_dir is None:
        return {}
    try:
        info = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def load_view(path: Path) -> RunView:
    """Read a run for a report: a results directory, a junit.xml, or a ``merge`` output.

    Raises:
        InputError: see :func:`harness.compare.load_run` (missing, corrupt, no testcase).
    """
    run: Run = load_run(path)
    file = junit_file(path)
    run_dir = file.parent if (file.parent / "run.json").is_file() else None
    by_suite: dict[str, list[CaseResult]] = {}
    for (suite, _), case in run.cases.items():
        by_suite.setdefault(suite, []).append(case)
    logs = _Logs()
    cells = tuple(_cell_view(name, tuple(by_suite.get(name, ())), info.properties, run_dir, logs,
                             info.seconds) for name, info in run.suites.items())
    return RunView(file, run_dir, _run_info(run_dir), cells)


def reproduce_command(run: RunView, cell: CellView) -> str:
    """The shell command that runs ``cell`` again as this run did (shell-quoted words).

    Uses the run's own copies of the matrix and board files and the kernel
    source, series and patches of ``run.json``'s invocation; "" when the run
    recorded no invocation (a bare JUnit file).
    """
    inv = run.info.get("invocation")
    if not isinstance(inv, dict) or cell.run_dir is None:
        return ""
    argv = ["cma-harness", "run", "-m", str(cell.run_dir / "matrix.toml"),
            "--boards-dir", str(cell.run_dir / "boards")]
    for key, flag in (("kernel_src", "--kernel-src"), ("series", "--series")):
        if isinstance(inv.get(key), str):
            argv += [flag, inv[key]]
    for patch in inv.get("patches") or ():
        argv += ["--patch", str(patch)]
    argv += ["--board", cell.board, "--cmdline", cell.cmdline]
    return shlex.join(argv)


def rejudge_command(cell: CellView) -> str:
    """``cma-harness judge`` of the cell's saved log (shell-quoted), "" without its files."""
    if cell.log is None:
        return ""
    stem = cell.log.with_suffix("")
    argv = ["cma-harness", "judge", str(cell.log), "--job", f"{stem}.job.json"]
    if Path(f"{stem}.result.json").is_file():
        argv += ["--result", f"{stem}.result.json"]
    return shlex.join(argv)


def relative_link(target: Path, page_dir: Path) -> str:
    """``target`` as a link from a page in ``page_dir`` (relative, ``/``-separated)."""
    return Path(os.path.relpath(target.resolve(), page_dir.resolve())).as_posix()

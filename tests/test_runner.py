"""The matrix runner with fake cells: order, parallelism, xfail/skip, Ctrl-C."""

from __future__ import annotations

import functools
import threading
import time
from pathlib import Path

import pytest
from rich.console import Console

from harness.cell import CellResult
from harness.checks import CheckResult, Status
from harness.matrix import Cell
from harness.results import ResultsDir, cell_testsuite
from harness.runner import Job, apply_xfail, run_jobs
from tests.test_results import PROV


def _result(cell: Cell, log: Path, status: Status, seconds: float = 0.0) -> CellResult:
    log.write_text("console\n")
    return CellResult(cell, [CheckResult("boot", Status.PASS, "ok"), CheckResult("cma", status, "m")],
                      log, seconds)


def _quiet() -> Console:
    return Console(file=open("/dev/null", "w"), force_terminal=False)  # noqa: SIM115


def test_results_come_back_in_matrix_order_and_run_in_parallel(tmp_path: Path) -> None:
    running, peak, lock = [0], [0], threading.Lock()

    def work(cell: Cell, delay: float, log: Path) -> CellResult:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(delay)
        with lock:
            running[0] -= 1
        return _result(cell, log, Status.PASS, delay)

    cells = [Cell("b", f"cma={i}M") for i in range(4)]
    jobs = [Job(c, tmp_path / f"{i}.log", functools.partial(work, c, 0.2 - 0.05 * i))
            for i, c in enumerate(cells)]
    seen: list[str] = []
    results = run_jobs(jobs, 2, lambda r: seen.append(r.cell.name), _quiet())
    assert [r.cell.name for r in results] == [c.name for c in cells]
    assert peak[0] == 2
    assert sorted(seen) == sorted(c.name for c in cells)
    assert seen != [c.name for c in cells]  # finished out of order, reported as they finished


def test_skip_is_not_run_and_xfail_turns_failures_into_skips(tmp_path: Path) -> None:
    ran: list[str] = []

    def work(cell: Cell, status: Status, log: Path) -> CellResult:
        ran.append(cell.name)
        return _result(cell, log, status)

    skip = Cell("b", "cma=1M", skip="too slow")
    xfail = Cell("b", "cma=2M", xfail="bug 123")
    xpass = Cell("b", "cma=3M", xfail="bug 456")
    jobs = [Job(skip, tmp_path / "s.log", lambda log: work(skip, Status.PASS, log)),
            Job(xfail, tmp_path / "x.log", lambda log: work(xfail, Status.FAIL, log)),
            Job(xpass, tmp_path / "p.log", lambda log: work(xpass, Status.PASS, log))]
    res = run_jobs(jobs, 1, lambda r: None, _quiet())
    assert skip.name not in ran
    assert res[0].status is Status.SKIP and "too slow" in res[0].checks[0].message
    assert res[1].status is Status.PASS and res[1].checks[1].status is Status.SKIP
    assert res[1].checks[1].message == "expected failure (bug 123): m"
    assert res[1].properties["xfail.outcome"] == "failed as expected"
    assert res[2].status is Status.FAIL and res[2].checks[-1].name == "xfail"
    assert apply_xfail(_result(Cell("b", ""), tmp_path / "n.log", Status.FAIL)).status is Status.FAIL


def test_interrupt_cancels_pending_cells(tmp_path: Path) -> None:
    started: list[str] = []

    def work(cell: Cell, log: Path) -> CellResult:
        started.append(cell.name)
        if cell.cmdline == "cma=0M":
            raise KeyboardInterrupt
        time.sleep(0.05)
        return _result(cell, log, Status.PASS)

    cells = [Cell("b", f"cma={i}M") for i in range(6)]
    jobs = [Job(c, tmp_path / f"{i}.log", functools.partial(work, c)) for i, c in enumerate(cells)]
    with pytest.raises(KeyboardInterrupt):
        run_jobs(jobs, 1, lambda r: None, _quiet())
    assert len(started) < 6


def test_each_finished_cell_is_on_disk_before_the_run_ends(tmp_path: Path) -> None:
    run_dir = ResultsDir(tmp_path / "results")
    cell = Cell("vexpress-a9", "cma=32M")
    result = _result(cell, run_dir.log_path(cell.slug), Status.PASS)
    import datetime as dt

    path = run_dir.write_cell(cell.slug, cell_testsuite(result, PROV, "console=ttyAMA0 cma=32M",
                                                        dt.datetime(2026, 11, 21, tzinfo=dt.UTC)))
    assert path.is_file() and "vexpress-a9:cma=32M" in path.read_text()
    assert not list(run_dir.cells.glob(".*.tmp"))
    final = run_dir.finish([cell.slug], [result])
    assert "vexpress-a9:cma=32M" in (final / "junit.xml").read_text()
    assert (tmp_path / "results" / "latest").resolve() == final


def test_a_cell_that_passes_on_retry_is_flaky_never_silently_green(tmp_path: Path) -> None:
    outcomes = [Status.FAIL, Status.PASS]
    cell = Cell("b", "cma=8M")

    def work(log: Path) -> CellResult:
        return _result(cell, log, outcomes.pop(0))

    [res] = run_jobs([Job(cell, tmp_path / "c.log", work)], 1, lambda r: None, _quiet(), retries=2)
    assert res.status is Status.PASS
    assert res.properties["retry.flaky"] == "true" and res.properties["retry.attempts"] == "2"
    assert res.checks[-1].name == "flaky" and res.checks[-1].status is Status.SKIP
    assert (tmp_path / "c.attempt1.log").is_file()
    # A cell failing every time stays failed, with the attempts counted.
    always = Cell("b", "cma=9M")
    [bad] = run_jobs([Job(always, tmp_path / "d.log", lambda log: _result(always, log, Status.FAIL))],
                     1, lambda r: None, _quiet(), retries=1)
    assert bad.status is Status.FAIL and bad.properties["retry.attempts"] == "2"
    assert "retry.flaky" not in bad.properties


def test_interrupted_run_keeps_finished_cells_for_resume(tmp_path: Path) -> None:
    import datetime as dt
    import json

    from harness.cellresult import AreaInfo, CmaFacts, SuiteRun
    from harness.checks import Measurement
    from harness.errors import InputError
    from harness.results import cell_metrics

    run_dir = ResultsDir(tmp_path)
    matrix_file = tmp_path / "m.toml"
    matrix_file.write_text("boards = ['b']\n")
    run_dir.write_provenance({"invocation": {"kernel_src": "k", "series": "s"}}, [], matrix_file)
    cell = Cell("vexpress-a9", "cma=32M")
    result = _result(cell, run_dir.log_path(cell.slug), Status.PASS)
    result.areas = (AreaInfo("reserved", 0x7E000000, 33554432),)
    median = Measurement("cma-test/alloc-free", "latency_us.median", "298")
    result.suites = (SuiteRun("cma-test/alloc-free", 1.0, after={"reserved.alloc_pages_fail": "3"},
                              measurements=(median,)),)
    result.cma = CmaFacts(32)
    suite = cell_testsuite(result, PROV, "", dt.datetime(2026, 11, 21, tzinfo=dt.UTC))
    run_dir.write_cell(cell.slug, suite, cell_metrics(result))
    # The process dies here: the partial directory stays, with the finished cell.
    resumed = ResultsDir(tmp_path, resume=run_dir.partial)
    assert resumed.run_id == run_dir.run_id and resumed.done_cells() == {cell.slug}
    final = resumed.finish([cell.slug], [])
    metrics = json.loads((final / "metrics.json").read_text())[cell.slug]
    assert metrics["areas"] == {"reserved": {"base": "0x7e000000", "size": 33554432}}
    assert metrics["latency_us"] == {"cma-test/alloc-free": {"median": 298}}
    assert metrics["counters"] == {"cma-test/alloc-free.after.reserved.alloc_pages_fail": 3}
    assert metrics["reserved_mib"] == 32
    with pytest.raises(InputError, match="already complete"):
        ResultsDir(tmp_path, resume=final)
    with pytest.raises(InputError, match="not an unfinished cma-harness run"):
        ResultsDir(tmp_path, resume=tmp_path)


def test_longest_cells_start_first(tmp_path: Path) -> None:
    from harness.runner import estimated_seconds

    started: list[str] = []

    def work(cell: Cell, log: Path) -> CellResult:
        started.append(cell.cmdline)
        return _result(cell, log, Status.PASS)

    cells = [Cell("b", "short"), Cell("b", "migrate", suites=("migrate",)), Cell("b", "known")]
    assert estimated_seconds(cells[1], {}) > estimated_seconds(cells[0], {})
    jobs = [Job(c, tmp_path / f"{c.cmdline}.log", functools.partial(work, c)) for c in cells]
    res = run_jobs(jobs, 1, lambda r: None, _quiet(), previous={"b_known": 99.0})
    assert started == ["known", "migrate", "short"]
    assert [r.cell.cmdline for r in res] == ["short", "migrate", "known"]

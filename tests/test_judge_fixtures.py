"""For each recorded real cell, ``judge`` on its saved log gives exactly the live run's testcases."""

from __future__ import annotations

from pathlib import Path

import pytest
from junitparser import JUnitXml

from harness import cellcmd
from harness.cellresult import CellResult
from harness.job import CellJob

CELLS = Path(__file__).parent / "fixtures" / "cells"
DIRS = sorted(p for p in CELLS.iterdir() if p.is_dir())


def _testcases(xml: Path) -> tuple[list[tuple[str, str, str]], dict[str, str]]:
    """(name, outcome, message) of every testcase, and the properties, of a one-suite JUnit file."""
    suite = next(iter(JUnitXml.fromfile(str(xml))))
    cases = []
    for case in suite:
        result = case.result[0] if case.result else None
        cases.append((case.name, type(result).__name__.lower() if result is not None else "passed",
                      (result.message or "") if result is not None else ""))
    return cases, {p.name: p.value for p in suite.properties()}


def _files(cell_dir: Path) -> tuple[CellJob, Path, CellResult, Path]:
    job = CellJob.load(cell_dir / "job.json")
    result_file = next(cell_dir.glob("*.result.json"))
    xml = result_file.with_name(result_file.name.replace(".result.json", ".xml"))
    return job, next(cell_dir.glob("*.log")), CellResult.load(result_file), xml


@pytest.mark.parametrize("cell_dir", DIRS, ids=[d.name for d in DIRS])
def test_judge_reproduces_the_live_testcases_and_properties(cell_dir: Path, tmp_path: Path) -> None:
    job, log, recorded, live_xml = _files(cell_dir)
    out = tmp_path / "judged.xml"
    status = cellcmd.main(["judge", str(log), "--job", str(cell_dir / "job.json"), "--result",
                           str(next(cell_dir.glob("*.result.json"))), "-o", str(out)])
    assert status == (1 if recorded.status.bad else 0)
    live_cases, live_props = _testcases(live_xml)
    judged_cases, judged_props = _testcases(out)
    assert judged_cases == live_cases
    assert judged_props == live_props
    again = cellcmd.rejudge(log, job, recorded)
    assert [(c.name, c.status, c.message, c.infrastructure) for c in again.checks] == [
        (c.name, c.status, c.message, c.infrastructure) for c in recorded.checks]
    assert again.properties == recorded.properties


@pytest.mark.parametrize("cell_dir", DIRS, ids=[d.name for d in DIRS])
def test_the_log_alone_gives_the_same_testcase_names_and_statuses(cell_dir: Path) -> None:
    job, log, recorded, _ = _files(cell_dir)
    alone = cellcmd.rejudge(log, job)
    assert [(c.name, c.status) for c in alone.checks] == [(c.name, c.status) for c in recorded.checks]
    assert [c.message for c in alone.checks if c.name != "boot"] == [
        c.message for c in recorded.checks if c.name != "boot"]


def test_the_fixtures_cover_a_boot_panic_a_mid_suite_panic_and_no_cma() -> None:
    endings = {d.name: _files(d)[2].ending for d in DIRS}
    assert {e.kind.value if e else None for e in endings.values()} == {"poweroff", "gone"}
    assert endings["vexpress-a9_cma=48M-sysrq-mid-suite"].step == "suite:migrate"  # type: ignore[union-attr]
    assert endings["vexpress-a9-boot-panic-no-init"].step == "shell"  # type: ignore[union-attr]

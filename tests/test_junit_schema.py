"""Every JUnit XML file the harness writes is valid junit-10.xsd and reads the same by every reader.

The files are made by the real writers (``ResultsDir``, ``merge``, ``write_reports``,
the CLI), from cell results of every kind a run produces; see tests/junit_schema.py
for what "valid" and "the same" mean.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
from pathlib import Path

import pytest
import xmlschema

from harness import cli
from harness.cell import CellResult
from harness.checks import CheckResult, CmaExpectation, Status
from harness.compare import compare_paths, load_run, parse_junit
from harness.errors import InputError
from harness.matrix import Cell
from harness.report import merge_paths, write_reports
from harness.results import ResultsDir, cell_metrics, cell_testsuite, junit_bytes
from harness.runner import Job, apply_xfail, skipped_result, with_retries
from tests.junit_schema import SCHEMA_FILE, Totals, assert_valid_junit, schema_errors, totals_by_readers
from tests.test_results import PROV

JUNIT = Path(__file__).parent / "fixtures" / "junit"
STAMP = dt.datetime(2026, 11, 21, tzinfo=dt.UTC)
ODD = "<b>&amp; \"quoted\" 'single' ]]> \x00nul \x1b[31mesc\x07bell \x0bvt \udcff lone surrogate \ufffe é 漢"
# A console as QEMU prints it: CRLF, the line editor's escapes, NUL, invalid UTF-8 (a lone
# continuation byte, a truncated sequence, an encoded surrogate, U+FFFE/U+FFFF), DEL.
CONSOLE = (b"[    0.000000] Booting Linux\r\n\x1b[6n\x00\x01\x08\x0b\x0c\x7f cma-harness# \x07\r\n"
           b"bad utf-8: \x80 \xc3( \xed\xa0\x80 \xef\xbf\xbe \xef\xbf\xbf \xff\xfe ]]> <&>\r\n")


def _cell(cmdline: str, xfail: str = "", skip: str = "") -> Cell:
    return Cell("vexpress-a9", cmdline, CmaExpectation("reserved", 32), xfail=xfail, skip=skip)


def _result(cell: Cell, log: Path, checks: list[CheckResult], **props: str) -> CellResult:
    log.write_bytes(CONSOLE)
    return CellResult(cell, checks, log, 0.1 + 0.2, 1.25, {"cma.reserved_mib": "32", **props})


def _retried(cell: Cell, log: Path, outcomes: list[Status]) -> CellResult:
    """A cell run through the runner's retry loop, its attempts ending in ``outcomes``."""
    pending = list(outcomes)

    def attempt(path: Path) -> CellResult:
        return _result(cell, path, [CheckResult("boot", Status.PASS, "shell"),
                                    CheckResult("cma-reservation", pending.pop(0), "saw none")])

    return with_retries(Job(cell, log, attempt), len(outcomes) - 1)


def _results(run: ResultsDir) -> list[CellResult]:
    """One cell of every kind a run writes."""
    log = run.log_path
    checks = [CheckResult("boot", Status.PASS, "shell after 1.2s", seconds=1e-7),
              CheckResult("cma-reservation", Status.FAIL, f"expected 32 MiB {ODD}", f"details {ODD}",
                          seconds=0.1 + 0.2),
              CheckResult("cma-debugfs", Status.SKIP, f"no CMA area {ODD}"),
              CheckResult("guest-commands", Status.ERROR, "no answer within 30s", "console tail"),
              CheckResult("qemu", Status.ERROR, "QEMU killed by SIGKILL", ODD, infrastructure=True),
              CheckResult("kernel-log-clean", Status.PASS, ODD, ODD, seconds=123456.7891),
              CheckResult(f"cma-test/{ODD}", Status.PASS, "a subtest name as the guest printed it")]
    mixed, failing = _cell("cma=32M"), _cell("cma=32M x", xfail="known bug")
    passing, skipped, empty = _cell(""), _cell("cma=1M", skip="not today"), _cell("cma=2M")
    return [
        _result(mixed, log(mixed.slug), checks, **{"odd": ODD, f"name {ODD}": "v", "empty": ""}),
        _result(passing, log(passing.slug), [CheckResult("boot", Status.PASS, "")]),
        skipped_result(skipped, log(skipped.slug)),
        apply_xfail(_result(failing, log(failing.slug), checks[:2])),  # failed as expected
        apply_xfail(_result(_cell("cma=3M", xfail="stale"), log("xpass"), checks[:1])),  # xpass
        _retried(_cell("cma=4M"), log("flaky"), [Status.FAIL, Status.PASS]),  # flaky
        _retried(_cell("cma=5M"), log("retried"), [Status.FAIL, Status.FAIL]),  # still failing
        _result(empty, log(empty.slug), []),  # no check result: an error
    ]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A published results directory holding one cell of every kind."""
    root = tmp_path_factory.mktemp("results")
    run_dir = ResultsDir(root)
    matrix = root / "m.toml"
    matrix.write_text("boards = ['vexpress-a9']\n")
    run_dir.write_provenance({"invocation": {}}, [], matrix)
    results = _results(run_dir)
    for r in results:
        suite = cell_testsuite(r, PROV, f"console=ttyAMA0 {r.cell.cmdline} {ODD}", STAMP)
        run_dir.write_cell(r.cell.slug, suite, cell_metrics(r))
    return run_dir.finish([r.cell.slug for r in results], results)


def test_the_vendored_schema_is_the_pinned_one(tmp_path: Path) -> None:
    assert SCHEMA_FILE.with_name("junit-10.xsd.SOURCE").read_text().count(
        "a1a816f58d1bf95ebabf371994df0b9246dee66ea9572fbec4f9296f1b2c0ff6") == 1
    other = tmp_path / "other.xml"
    other.write_text('<testsuites><testsuite name="s" tests="1"><testcase/></testsuite></testsuites>')
    assert schema_errors(other) == [
        "missing required attribute 'failures' (at /testsuites/testsuite)",
        "missing required attribute 'errors' (at /testsuites/testsuite)",
        "missing required attribute 'name' (at /testsuites/testsuite/testcase)"]


def test_a_runs_junit_xml_and_every_cell_file_are_valid(run: Path) -> None:
    total = assert_valid_junit(run / "junit.xml")
    cells = sorted((run / "cells").glob("*.xml"))
    assert len(cells) == 8
    by_cell = [assert_valid_junit(c) for c in cells]
    assert sum(by_cell, Totals(0, 0, 0, 0)) == total
    # mixed: 1 failure, 2 errors, 1 skip; xfail: its failure skipped; xpass: 1 failure; flaky: its
    # marker skipped; retried: 1 failure; empty: 1 error; the skip cell: 1 skip.
    assert total == Totals(tests=19, failures=3, errors=3, skipped=4)
    text = (run / "junit.xml").read_text(encoding="utf-8")
    assert "Booting Linux" in text and 'type="infrastructure"' in text and 'type="GuestError"' in text
    assert "\x1b" not in text and "\x00" not in text


@pytest.mark.parametrize("name", ["base.xml", "new-mixed.xml", "new-flaky.xml"])
def test_merged_runs_are_valid(run: Path, tmp_path: Path, name: str) -> None:
    out = tmp_path / "merged.xml"
    merge_paths([JUNIT / name, run], out)  # same-named cells of two runs would be renamed too
    assert assert_valid_junit(out) == totals_by_readers(JUNIT / name) + assert_valid_junit(run / "junit.xml")
    again = tmp_path / "again.xml"
    assert cli.main(["merge", str(out), str(run), str(JUNIT / name), "-o", str(again)]) == 0
    assert assert_valid_junit(again).tests == 2 * assert_valid_junit(out).tests


def test_testcase_properties_survive_a_merge_as_suite_properties(tmp_path: Path) -> None:
    """junit-10.xsd has no <properties> in a <testcase>: merge moves them to the suite."""
    out = tmp_path / "merged.xml"
    merge_paths([JUNIT / "new-flaky.xml"], out)
    assert_valid_junit(out)
    flaky = {key for key, case in load_run(out).cases.items() if case.flaky}
    assert flaky == {key for key, case in load_run(JUNIT / "new-flaky.xml").cases.items() if case.flaky}
    assert ("vexpress-a9:(default)", "kernel-log-clean") in flaky


def test_times_of_other_tools_are_rounded_on_merge(tmp_path: Path) -> None:
    other = tmp_path / "other.xml"
    other.write_text('<testsuites time="1e-05"><testsuite name="s" tests="1" failures="0" errors="0" '
                     'time="1,234.56789"><testcase name="c" time="0.0001234"/></testsuite></testsuites>')
    assert len(schema_errors(other)) == 2
    merge_paths([other], tmp_path / "merged.xml")
    assert assert_valid_junit(tmp_path / "merged.xml") == Totals(1, 0, 0, 0)
    assert next(iter(parse_junit(tmp_path / "merged.xml"))).time == 1234.568


@pytest.mark.parametrize("base, new", [("base.xml", "new-mixed.xml"), ("base.xml", "new-flaky.xml"),
                                       ("new-mixed.xml", "base.xml"), ("run", "run"), ("base.xml", "run"),
                                       ("run", "new-mixed.xml")])
def test_compare_reports_are_valid(run: Path, tmp_path: Path, base: str, new: str) -> None:
    def where(name: str) -> Path:
        return run if name == "run" else JUNIT / name

    comparison = compare_paths(where(base), where(new))
    totals = assert_valid_junit(write_reports(comparison, tmp_path / "api")["xml"])
    assert (totals.tests, totals.failures, totals.errors) == (len(comparison.changes),
                                                              len(comparison.regressions), 0)
    status = cli.main(["compare", str(where(base)), str(where(new)), "-o", str(tmp_path / "cli")])
    assert status == (1 if comparison.has_regressions else 0)
    assert assert_valid_junit(tmp_path / "cli" / "compare.xml") == totals


def test_a_compare_report_of_a_run_that_produced_nothing_is_valid(tmp_path: Path) -> None:
    empty = tmp_path / "empty.xml"
    empty.write_text('<testsuites name="cma-harness"/>')
    totals = assert_valid_junit(write_reports(compare_paths(JUNIT / "base.xml", empty), tmp_path)["xml"])
    assert totals == Totals(tests=100, failures=100, errors=0, skipped=0)


# Fixtures model files the harness reads, some from older versions or other tools; each
# deviation from junit-10.xsd is listed here, so a new one cannot slip in unnoticed.
LEGACY_SKIPPED = "'skipped' attribute not allowed for element (at /testsuites)"
FIXTURE_DEVIATIONS = {
    "base.xml": [LEGACY_SKIPPED],  # a real run of a version before the attribute was dropped
    "new-mixed.xml": [LEGACY_SKIPPED],
    "new-flaky.xml": [LEGACY_SKIPPED] + [  # testcase-level flaky markers, as other tools write them
        f"Unexpected child with tag 'properties' at position 1. (at /testsuites/testsuite[1]/testcase[{n}])"
        for n in (3, 86)],
}


def test_every_junit_fixture_is_accounted_for() -> None:
    assert sorted(p.name for p in JUNIT.glob("*.xml")) == sorted(
        [*FIXTURE_DEVIATIONS, "corrupt.xml", "truncated.xml"])


@pytest.mark.parametrize("name", sorted(FIXTURE_DEVIATIONS))
def test_junit_fixtures_deviate_only_as_documented_and_read_the_same(tmp_path: Path, name: str) -> None:
    assert schema_errors(JUNIT / name) == FIXTURE_DEVIATIONS[name]
    totals = totals_by_readers(JUNIT / name)
    rewritten = tmp_path / name
    rewritten.write_bytes(junit_bytes(parse_junit(JUNIT / name)))  # as merge and resume write it back
    assert assert_valid_junit(rewritten) == totals


@pytest.mark.parametrize("name", ["corrupt.xml", "truncated.xml"])
def test_broken_fixtures_are_refused_by_the_schema_and_the_harness(name: str) -> None:
    with pytest.raises(xmlschema.XMLResourceError):
        schema_errors(JUNIT / name)
    with pytest.raises(InputError, match=r"truncated or corrupt JUnit XML"):
        parse_junit(JUNIT / name)


def test_the_checks_can_fail(run: Path, tmp_path: Path) -> None:
    """A ``skipped`` on <testsuites> (the bug this guards), and counts that lie, are both caught."""
    text = (run / "junit.xml").read_text(encoding="utf-8")
    bad = tmp_path / "skipped.xml"
    bad.write_text(text.replace("<testsuites ", '<testsuites skipped="4" ', 1), encoding="utf-8")
    with pytest.raises(AssertionError, match=re.escape(LEGACY_SKIPPED)):
        assert_valid_junit(bad)
    lying = tmp_path / "lying.xml"
    lying.write_text(re.sub(r'(<testsuite [^>]*?)tests="\d+"', r'\1tests="99"', text, count=1),
                     encoding="utf-8")
    assert schema_errors(lying) == []
    with pytest.raises(AssertionError, match="declares"):
        assert_valid_junit(lying)
    shutil.copy(JUNIT / "new-mixed.xml", tmp_path / "mixed.xml")
    assert totals_by_readers(tmp_path / "mixed.xml").errors == 1  # junit2html folds it into failed

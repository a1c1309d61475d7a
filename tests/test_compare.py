"""harness.compare and harness.report on JUnit files derived from a real run (see fixtures/junit)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from junitparser import Failure, JUnitXml, Skipped, TestCase

from harness.compare import (
    CaseChange,
    CaseResult,
    Category,
    Comparison,
    MetricRule,
    classify,
    compare_paths,
    exit_status,
    load_run,
    parse_metric_rule,
    rules_from_args,
)
from harness.errors import InputError
from harness.outcome import Status
from harness.report import merge, merge_paths, render_html, render_markdown, write_reports

JUNIT = Path(__file__).parent / "fixtures" / "junit"
BASE, MIXED, FLAKY = JUNIT / "base.xml", JUNIT / "new-mixed.xml", JUNIT / "new-flaky.xml"
DEFAULT, CMA0, CMA1G, LOTS = ("vexpress-a9:(default)", "vexpress-a9:cma=0", "vexpress-a9:cma=1G",
                              "vexpress-a9:cma=lots")
SMALL_CELL = ["boot", "cma-reservation", "cma-meminfo", "cma-dev/load", "cma-dev/areas-match-boot-log",
              "cma-debugfs", "kernel-log-clean"]


def keys(changes: tuple[CaseChange, ...]) -> list[tuple[str, str]]:
    return [(c.suite, c.name) for c in changes]


def run_dir(tmp_path: Path, source: Path, name: str = "run") -> Path:
    """A results directory as the runner leaves it: ``<dir>/junit.xml``."""
    d = tmp_path / name
    d.mkdir()
    shutil.copy(source, d / "junit.xml")
    return d


@pytest.fixture(scope="module")
def mixed() -> Comparison:
    return compare_paths(BASE, MIXED)


# -- classification ------------------------------------------------------------------------------


def test_identical_runs_compare_clean(tmp_path: Path) -> None:
    c = compare_paths(run_dir(tmp_path, BASE, "a"), run_dir(tmp_path, BASE, "b"))
    assert not c.has_regressions and exit_status(c) == 0
    assert {cat: n for cat, n in c.counts().items() if n} == {Category.UNCHANGED_PASS: 98,
                                                              Category.SKIPPED: 2}
    assert keys(c.skipped) == [(CMA0, "cma-debugfs"), (CMA1G, "cma-debugfs")]
    assert c.metric_deltas == () and c.suites_only_in_base == () and c.suites_only_in_new == ()
    assert c.base == tmp_path / "a" / "junit.xml"


def test_mixed_run_classifies_every_edit(mixed: Comparison) -> None:
    assert keys(mixed.regressions) == [(DEFAULT, "cma-test/migrate/moved-pages-intact"),
                                       (DEFAULT, "cma-test/dma/dma-4096")]
    assert [r.new.outcome for r in mixed.regressions if r.new] == [Status.ERROR, Status.FAIL]
    assert keys(mixed.new_failures) == [(DEFAULT, "cma-test/dma/dma-16384")]
    assert keys(mixed.new_tests) == [(DEFAULT, "cma-test/dma/dma-8192")] + [(LOTS, n) for n in SMALL_CELL]
    assert keys(mixed.removed) == ([(DEFAULT, "cma-test/replay/03-churn.seq")]
                                   + [(CMA1G, n) for n in SMALL_CELL])
    assert keys(mixed.skipped) == [(CMA0, "cma-dev/load"), (CMA0, "cma-debugfs")]
    assert mixed.fixes == mixed.still_failing == mixed.flaky == ()
    assert len(mixed.unchanged_pass) == 88 and len(mixed.changes) == 109
    assert mixed.suites_only_in_base == (CMA1G,) and mixed.suites_only_in_new == (LOTS,)
    assert mixed.has_regressions and exit_status(mixed) == 1


def test_regression_carries_both_messages(mixed: Comparison) -> None:
    dma = mixed.regressions[1]
    assert dma.base is not None and dma.new is not None
    assert dma.base.message == "ok"
    assert dma.new.message == "dma_alloc_coherent(4096) returned <script>alert(1)</script> & -ENOMEM"
    assert dma.new.details == "# dma-4096: not ok 1 dma_alloc_coherent failed"
    assert dma.reason == "passed -> failure"


def test_reverse_direction_turns_regressions_into_fixes() -> None:
    c = compare_paths(MIXED, BASE)
    assert keys(c.fixes) == [(DEFAULT, "cma-test/migrate/moved-pages-intact"),
                             (DEFAULT, "cma-test/dma/dma-4096")]
    assert (DEFAULT, "cma-test/dma/dma-16384") in keys(c.removed)
    assert keys(c.new_tests) == [(DEFAULT, "cma-test/replay/03-churn.seq")] + [(CMA1G, n) for n in SMALL_CELL]
    # skipped in base, passed in new: not news
    assert (CMA0, "cma-dev/load") in keys(c.unchanged_pass)
    assert not c.has_regressions and exit_status(c) == 0


def test_known_failures_are_still_failing_not_regressions() -> None:
    c = compare_paths(MIXED, MIXED)
    assert keys(c.still_failing) == [(DEFAULT, "cma-test/migrate/moved-pages-intact"),
                                     (DEFAULT, "cma-test/dma/dma-4096"), (DEFAULT, "cma-test/dma/dma-16384")]
    assert not c.has_regressions and exit_status(c) == 0


def test_flaky_cell_and_testcase_markers() -> None:
    c = compare_paths(BASE, FLAKY)
    assert keys(c.flaky) == [(DEFAULT, "kernel-log-clean")] + [(CMA0, n) for n in SMALL_CELL]
    assert c.flaky_suites == {CMA0: 2}
    # a flaky marker never hides a failure
    assert keys(c.regressions) == [(DEFAULT, "cma-meminfo")]
    assert exit_status(c) == 1


def _case(outcome: Status, flaky: bool = False) -> CaseResult:
    return CaseResult("s", "t", outcome, flaky=flaky)


@pytest.mark.parametrize(("base", "new", "expected"), [
    (Status.PASS, Status.FAIL, Category.REGRESSION),
    (Status.PASS, Status.ERROR, Category.REGRESSION),
    (Status.ERROR, Status.PASS, Category.FIX),
    (Status.FAIL, Status.ERROR, Category.STILL_FAILING),
    (Status.SKIP, Status.FAIL, Category.NEW_FAILURE),
    (None, Status.ERROR, Category.NEW_FAILURE),
    (None, Status.SKIP, Category.NEW_TEST),
    (Status.FAIL, None, Category.REMOVED),
    (Status.PASS, Status.SKIP, Category.SKIPPED),
    (Status.SKIP, Status.PASS, Category.UNCHANGED_PASS),
])
def test_classify_table(base: Status | None, new: Status | None, expected: Category) -> None:
    assert classify(_case(base) if base else None, _case(new) if new else None) is expected


@pytest.mark.parametrize(("results", "worst"), [
    ((), Status.PASS), (("skipped",), Status.SKIP), (("skipped", "failure"), Status.FAIL),
    (("failure", "skipped"), Status.FAIL), (("failure", "error"), Status.ERROR),
    (("error", "skipped", "failure"), Status.ERROR), (("skipped", "skipped"), Status.SKIP),
])
def test_a_testcase_is_its_worst_result_element(tmp_path: Path, results: tuple[str, ...],
                                                worst: Status) -> None:
    """error > failure > skipped > passed (not Status.rank: a skipped element beats a pass)."""
    elements = "".join(f'<{tag} message="{tag} #{i}"/>' for i, tag in enumerate(results))
    file = tmp_path / "one.xml"
    file.write_text(f'<testsuites><testsuite name="s"><testcase name="t">{elements}</testcase>'
                    "</testsuite></testsuites>")
    case = load_run(file).cases[("s", "t")]
    assert case.outcome is worst
    if results:
        assert case.message == f"{worst.junit_word} #{results.index(worst.junit_word)}"  # the first worst


def test_reports_keep_the_junit_words(mixed: Comparison) -> None:
    assert [s.junit_word for s in Status] == ["passed", "failure", "error", "skipped"]
    assert [r.reason for r in mixed.regressions] == ["passed -> error", "passed -> failure"]
    assert "| passed | failure |" in render_markdown(mixed)


def test_classify_flaky_pass_but_not_flaky_failure() -> None:
    assert classify(_case(Status.FAIL), _case(Status.PASS, flaky=True)) is Category.FLAKY
    assert classify(_case(Status.PASS), _case(Status.FAIL, flaky=True)) is Category.REGRESSION


# -- metric deltas -------------------------------------------------------------------------------


def test_metric_deltas_beyond_tolerance_and_floor(mixed: Comparison) -> None:
    found = {(d.suite, d.name): (d.base, d.new) for d in mixed.metric_deltas}
    assert found == {(DEFAULT, "cma-test/dma.latency_us.median"): (632.0, 1500.0),
                     (DEFAULT, "cma-test/replay.after.reserved.alloc_pages_fail"): (1269.0, 2000.0)}
    assert mixed.metric_deltas[0].relative == pytest.approx(868 / 632)


def test_metric_tolerance_and_rules_are_configurable() -> None:
    tight = compare_paths(BASE, MIXED, tolerance=0.05)
    moved = {(d.suite, d.name) for d in tight.metric_deltas}
    assert (DEFAULT, "cma-test/alloc-free.latency_us.median") in moved
    # boot.seconds moved 26% but only 0.457 s: under the default 0.5 s floor, over a 0.1 s one
    boot = compare_paths(BASE, MIXED, rules=[parse_metric_rule("boot.seconds=0.1")])
    assert [(d.suite, d.name, d.new) for d in boot.metric_deltas] == [(CMA0, "boot.seconds", 2.2)]


def test_metric_rule_parsing() -> None:
    assert parse_metric_rule("*.latency_us.median=20") == MetricRule("*.latency_us.median", 20.0)
    assert parse_metric_rule("cma.reserved_mib") == MetricRule("cma.reserved_mib", 0.0)
    assert rules_from_args([])[0].pattern == "*.latency_us.median"
    for bad in ("=3", "boot.seconds=fast", "boot.seconds=-1"):
        with pytest.raises(InputError, match="PATTERN"):
            parse_metric_rule(bad)
    with pytest.raises(InputError, match="tolerance"):
        compare_paths(BASE, BASE, tolerance=-0.1)


# -- bad input -----------------------------------------------------------------------------------


def test_truncated_file_names_file_and_line() -> None:
    path = JUNIT / "truncated.xml"
    last_line = path.read_text().count("\n") + 1
    with pytest.raises(InputError) as exc:
        compare_paths(BASE, path)
    assert str(exc.value).startswith(f"{path}:{last_line}:")
    assert "truncated or corrupt" in str(exc.value)


def test_corrupt_file_names_the_bad_line() -> None:
    path = JUNIT / "corrupt.xml"
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "</testcas>" in text)
    expected = rf"^{path}:{line}:\d+: truncated or corrupt JUnit XML: mismatched tag"
    with pytest.raises(InputError, match=expected):
        load_run(path)


def test_empty_and_incomplete_results_dirs(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="results directory is empty"):
        compare_paths(empty, BASE)
    partial = tmp_path / "partial"
    (partial / "logs").mkdir(parents=True)
    with pytest.raises(InputError, match=r"no junit\.xml in this results directory \(it holds: logs\)"):
        compare_paths(BASE, partial)
    root = tmp_path / "results"
    (root / "latest").mkdir(parents=True)
    shutil.copy(BASE, root / "latest" / "junit.xml")
    with pytest.raises(InputError, match="did you mean .*latest"):
        load_run(root)
    with pytest.raises(InputError, match="no such file"):
        load_run(tmp_path / "missing")


def test_not_junit_and_no_testcases(tmp_path: Path) -> None:
    other = tmp_path / "other.xml"
    other.write_text("<coverage/>")
    with pytest.raises(InputError, match="not JUnit XML"):
        load_run(other)
    hollow = tmp_path / "hollow.xml"
    hollow.write_text('<testsuites name="cma-harness"/>')
    with pytest.raises(InputError, match="holds no testcases"):
        load_run(hollow)


# -- reports -------------------------------------------------------------------------------------


def test_junit_report_counts_and_round_trip(mixed: Comparison, tmp_path: Path) -> None:
    paths = write_reports(mixed, tmp_path / "out")
    assert sorted(p.name for p in paths["xml"].parent.iterdir()) == ["compare.html", "compare.md",
                                                                      "compare.xml"]
    xml = JUnitXml.fromfile(str(paths["xml"]))
    assert (xml.tests, xml.failures, xml.errors, xml.skipped) == (109, 2, 0, 12)
    suites = {s.name: s for s in xml}
    assert list(suites) == [DEFAULT, CMA0, CMA1G, LOTS]
    for suite in xml:  # every element's counts agree with its children
        cases = list(suite)
        assert suite.tests == len(cases)
        assert suite.failures == sum(c.is_failure for c in cases)
        assert suite.skipped == sum(c.is_skipped for c in cases)
        assert all(c.classname == suite.name for c in cases)
    props = {p.name: p.value for p in suites[DEFAULT].properties()}
    assert props["compare.regression"] == "2" and props["compare.cell"] == "both"
    assert props["delta.cma-test/dma.latency_us.median"] == "632 -> 1500 (+137.3%)"
    assert {p.name: p.value for p in suites[CMA1G].properties()}["compare.cell"] == "only-in-base"
    failures = {c.name: c.result[0] for c in xml_cases(xml) if c.is_failure}
    assert sorted(failures) == ["cma-test/dma/dma-4096", "cma-test/migrate/moved-pages-intact"]
    dma = failures["cma-test/dma/dma-4096"]
    assert isinstance(dma, Failure) and dma.type == "Regression"
    assert dma.message == ("regression: passed in base, failure in new: "
                           "dma_alloc_coherent(4096) returned <script>alert(1)</script> & -ENOMEM")
    assert dma.text.startswith("base (passed): ok\nnew (failure): dma_alloc_coherent(4096)")
    skips = {(c.classname, c.name): c.result[0].message for c in xml_cases(xml) if c.is_skipped}
    assert skips[(DEFAULT, "cma-test/dma/dma-16384")].startswith("new failure, no passing baseline")
    assert skips[(CMA1G, "boot")] == "removed: the whole cell is absent in the new run"
    assert skips[(DEFAULT, "cma-test/replay/03-churn.seq")] == "removed: absent in the new run"


def xml_cases(xml: JUnitXml) -> list[TestCase]:
    return [case for suite in xml for case in suite]


def test_junit_report_known_failures_are_skipped_not_red(tmp_path: Path) -> None:
    paths = write_reports(compare_paths(MIXED, MIXED), tmp_path)
    xml = JUnitXml.fromfile(str(paths["xml"]))
    assert (xml.failures, xml.errors) == (0, 0)
    still = [c for c in xml_cases(xml)
             if c.is_skipped and c.result[0].message.startswith("still failing (known)")]
    assert len(still) == 3 and all(isinstance(c.result[0], Skipped) for c in still)


def test_html_and_markdown_escape_messages(mixed: Comparison) -> None:
    page = render_html(mixed)
    assert "<script>" not in page and "alert(1)</script>" not in page
    assert "returned &lt;script&gt;alert(1)&lt;/script&gt; &amp; -ENOMEM" in page
    assert "src=" not in page and "href=" not in page and "<style>" in page
    assert page.count("<tr class=\"regression\">") == 2
    md = render_markdown(mixed)
    assert "<script>" not in md and "&lt;script&gt;" in md
    assert "| regression | 2 |" in md and "## Regressions (2)" in md
    assert "| vexpress-a9:(default) | cma-test/dma.latency_us.median | 632 | 1500 | +137.3% |" in md
    assert "vexpress-a9:cma=1G | only in base" in md


def test_write_reports_leaves_no_temporary_files(tmp_path: Path) -> None:
    out = tmp_path / "reports"
    write_reports(compare_paths(BASE, BASE), out)
    write_reports(compare_paths(BASE, MIXED), out)  # overwrite in place
    assert sorted(p.name for p in out.iterdir()) == ["compare.html", "compare.md", "compare.xml"]
    assert "2 regressions" in (out / "compare.md").read_text()


# -- merge ---------------------------------------------------------------------------------------


def test_merge_two_hosts_keeps_same_named_cells_apart(tmp_path: Path) -> None:
    other = tmp_path / "other.xml"
    other.write_text(BASE.read_text().replace('hostname="vm"', 'hostname="ci-arm-2"'))
    out = tmp_path / "merged.xml"
    merge_paths([BASE, other], out)
    xml = JUnitXml.fromfile(str(out))
    assert (xml.tests, xml.failures, xml.errors, xml.skipped) == (200, 0, 0, 4)
    names = [s.name for s in xml]
    assert names == [f"{DEFAULT}@vm", f"{CMA0}@vm", f"{CMA1G}@vm",
                     f"{DEFAULT}@ci-arm-2", f"{CMA0}@ci-arm-2", f"{CMA1G}@ci-arm-2"]
    first = next(iter(xml))
    props = {p.name: p.value for p in first.properties()}
    assert props["merge.original_name"] == DEFAULT and props["merge.source"] == str(BASE)
    assert {c.classname for c in first} == {f"{DEFAULT}@vm"}
    assert first.time == 1.791  # the cell's wall time is kept
    assert xml.time == pytest.approx(2 * (1.791 + 1.764 + 1.738), abs=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged.xml", "other.xml"]


def test_merge_runs_of_different_matrices(tmp_path: Path) -> None:
    xml = merge([run_dir(tmp_path, BASE), MIXED])
    assert (xml.tests, xml.failures, xml.errors, xml.skipped) == (201, 2, 1, 5)
    assert [s.name for s in xml] == [f"{DEFAULT}@vm#1", f"{CMA0}@vm#1", CMA1G,
                                     f"{DEFAULT}@vm#2", f"{CMA0}@vm#2", LOTS]
    for suite in xml:
        assert suite.tests == len(list(suite))


def test_merge_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no input"):
        merge([])
    with pytest.raises(InputError, match="same file"):
        merge([BASE, run_dir(tmp_path, BASE).parent / "run" / "junit.xml", BASE])
    with pytest.raises(InputError, match="truncated.xml:61:"):
        merge([BASE, JUNIT / "truncated.xml"])

from __future__ import annotations

from harness.ktap import diagnostic_metrics, flatten, parse_ktap, subtree_diagnostics
from harness.outcome import Status

NESTED = """\
KTAP version 1
1..3
    KTAP version 1
    1..2
    # latency_us min=12 median=40 max=300
    ok 1 one-page
    # wrote 4096 bytes, read back 4095 intact
    not ok 2 whole-area
not ok 1 alloc-free
ok 2 dma # SKIP no default CMA area
not ok 3 replay # TODO known fragmentation bug
"""


def test_nested_ktap_flattens_with_paths_and_diagnostics() -> None:
    flat = list(flatten(parse_ktap(NESTED.splitlines())))
    by = {f.path: f for f in flat}
    assert list(by) == ["alloc-free/one-page", "alloc-free/whole-area", "alloc-free", "dma", "replay"]
    assert by["alloc-free/one-page"].status is Status.PASS
    assert by["alloc-free/one-page"].diagnostics == ("latency_us min=12 median=40 max=300",)
    assert by["alloc-free/whole-area"].status is Status.FAIL
    assert by["alloc-free/whole-area"].diagnostics == ("wrote 4096 bytes, read back 4095 intact",)
    assert (by["dma"].status, by["dma"].reason) == (Status.SKIP, "no default CMA area")
    assert (by["replay"].status, by["replay"].known_failure) == (Status.SKIP, True)
    assert not by["dma"].known_failure


def test_plan_short_of_results_is_an_error() -> None:
    tests = parse_ktap(["KTAP version 1", "1..3", "ok 1 a", "# about to crash"])
    assert [t.status for t in tests] == [Status.PASS, Status.ERROR, Status.ERROR]
    assert "never reported" in tests[1].reason and tests[1].diagnostics == ["about to crash"]


def test_crash_inside_a_subtest_block() -> None:
    tests = parse_ktap(["KTAP version 1", "1..1", "    KTAP version 1", "    1..2", "    ok 1 a"])
    flat = {f.path: f.status for f in flatten(tests)}
    assert flat["test 1/a"] is Status.PASS
    assert flat["test 1/test 2"] is Status.ERROR
    assert flat["test 1"] is Status.ERROR


def test_unknown_lines_are_ignored_and_tap14_accepted() -> None:
    tests = parse_ktap(["TAP version 14", "noise", "1..1", "ok 1 - selftest name"])
    assert [(t.name, t.status) for t in tests] == [("selftest name", Status.PASS)]


def test_diagnostic_metrics() -> None:
    assert diagnostic_metrics(["latency_us min=1 median=2 max=3", "free text here", "x=1 y=2",
                               "duration_ms=1234", "area reserved base=0x9c000000"]) == {
        "latency_us.min": "1", "latency_us.median": "2", "latency_us.max": "3",
        "x": "1", "y": "2", "duration_ms": "1234"}


def test_cma_test_layout_subtest_lines_and_trailing_diagnostics() -> None:
    text = """KTAP version 1
1..1
    KTAP version 1
    # Subtest: alloc-free
    1..2
    # area reserved size=67108864
    ok 1 order-0
    # latency_us min=95 median=180 max=52000 n=17
    ok 2 no-kernel-warning
    # duration_ms=1234
ok 1 alloc-free
"""
    tests = parse_ktap(text.splitlines())
    suite = tests[0]
    assert suite.name == "alloc-free" and [t.name for t in suite.subtests] == ["order-0", "no-kernel-warning"]
    assert suite.diagnostics == ["duration_ms=1234"]
    assert suite.subtests[0].diagnostics == ["area reserved size=67108864"]
    metrics = diagnostic_metrics(subtree_diagnostics(suite))
    assert metrics["latency_us.median"] == "180" and metrics["duration_ms"] == "1234"

"""Typed cell results: the one flattener writes exactly the JUnit properties the harness always wrote."""

from __future__ import annotations

from pathlib import Path

from harness.cellresult import AreaInfo, CellResult, CmaFacts, Mark, SuiteRun
from harness.checks import CheckResult, CmaExpectation, CmaOutcome, Measurement, Status
from harness.expectation import Expectation, ExpectationSource
from harness.matrix import Cell
from harness.oracle import DtCmaPool, Prediction
from harness.outcome import worst
from harness.results import cell_metrics

CELL = Cell("vexpress-a9", "cma=64M", xfail="known")


def _result(**fields: object) -> CellResult:
    return CellResult(CELL, [CheckResult("boot", Status.PASS, "")], Path("x.log"), 3.0, 1.5,
                      **fields)  # type: ignore[arg-type]


def test_properties_keys_values_and_order_are_those_of_before() -> None:
    run = SuiteRun("cma-test/alloc-free", 4.4991, {"reserved.used": "64"}, {"reserved.used": "64"},
                   (Measurement("cma-test/alloc-free", "latency_us.min", "162"),
                    Measurement("cma-test/alloc-free", "duration_ms", "4446")))
    result = _result(areas=(AreaInfo("reserved", 0x7C000000, 64 << 20),), suites=(run,),
                     cma=CmaFacts(64, 0x7C000000, None, 65536, 65280), mark=Mark.XFAIL)
    assert list(result.properties.items()) == [
        ("area.reserved.base", "0x7c000000"), ("area.reserved.size", "67108864"),
        ("cma-test/alloc-free.latency_us.min", "162"), ("cma-test/alloc-free.duration_ms", "4446"),
        ("cma-test/alloc-free.seconds", "4.499"), ("cma-test/alloc-free.before.reserved.used", "64"),
        ("cma-test/alloc-free.after.reserved.used", "64"), ("cma.reserved_mib", "64"),
        ("meminfo.CmaTotal_kB", "65536"), ("meminfo.CmaFree_kB", "65280"), ("cma.base", "0x7c000000"),
        ("xfail", "known"), ("xfail.outcome", "failed as expected"), ("boot.seconds", "1.500")]


def test_failed_reservation_unread_meminfo_and_retries() -> None:
    props = _result(cma=CmaFacts(0, None, 900), mark=Mark.FLAKY, attempts=2, extra={"a": "b"}).properties
    assert props == {"a": "b", "cma.reserved_mib": "0", "meminfo.CmaTotal_kB": "", "meminfo.CmaFree_kB": "",
                     "cma.failed_mib": "900", "retry.attempts": "2", "retry.flaky": "true",
                     "boot.seconds": "1.500"}
    assert _result(mark=Mark.RETRIED, attempts=3).properties["retry.attempts"] == "3"
    assert _result(mark=Mark.XPASS).properties["xfail.outcome"] == "xpass"


def test_metrics_come_from_the_typed_fields() -> None:
    run = SuiteRun("cma-test/dma", 1.0, {"reserved.alloc_pages_fail": "3", "reserved.x": "?"}, {},
                   (Measurement("cma-test/dma", "latency_us.median", "298"),
                    Measurement("cma-test/dma", "latency_us.max", "n/a")))
    metrics = cell_metrics(_result(suites=(run,), cma=CmaFacts(64), mark=Mark.XPASS))
    assert metrics["counters"] == {"cma-test/dma.before.reserved.alloc_pages_fail": 3}
    assert metrics["latency_us"] == {"cma-test/dma": {"median": 298}}
    assert (metrics["reserved_mib"], metrics["xfail"], metrics["flaky"]) == (64, "xpass", False)


def test_one_outcome_enum_ranks_and_zero_checks_are_an_error() -> None:
    assert worst([Status.SKIP, Status.PASS]) is Status.PASS
    assert worst([Status.FAIL, Status.ERROR]) is Status.ERROR and worst([]) is Status.ERROR
    assert [s for s in Status if s.bad] == [Status.FAIL, Status.ERROR]


def test_cma_expectation_takes_the_outcome_enum_or_its_value() -> None:
    assert CmaExpectation("reserved", 32).kind is CmaOutcome.RESERVED
    assert CmaExpectation(CmaOutcome.NONE) == CmaExpectation("none")


PREDICTION = Prediction("reserved", 64 << 20, 0x60000000, 0x80000000, 0x7C000000,
                        ("cma: Reserved 64 MiB at 0x7c000000",), "cma=64M", (DtCmaPool("p", 1, 2),))


def test_expectations_serialize_and_judge() -> None:
    for exp in (Expectation.from_oracle(PREDICTION), Expectation.hand_written(CmaExpectation("failed", 9)),
                Expectation.unpredictable("why"), Expectation.missing()):
        assert Expectation.from_dict(exp.to_dict()) == exp
    from harness.checks import parse_cma_lines
    records = ["[    0.000000] cma: Reserved 64 MiB at 0x7c000000"]
    check = Expectation.hand_written(CmaExpectation("reserved", 64)).judge(parse_cma_lines(records), records)
    assert (check.name, check.status) == ("cma-reservation", Status.PASS)
    missing = Expectation.missing().judge(parse_cma_lines([]), [])
    assert missing.status is Status.ERROR and "neither oracle nor 'expect'" in missing.message
    assert Expectation.unpredictable("no").source is ExpectationSource.UNPREDICTABLE

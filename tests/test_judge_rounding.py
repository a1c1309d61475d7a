"""The checks that compare the guest with the boot log use the size 7.x really reserved.

Since Linux 6.15 ``cma: Reserved 5 MiB`` is the size asked for; the area is
rounded up to the pageblock (mm/cma.c).  Seen on a real 7.2.13 boot of
``cma=5M`` on vexpress-a9: the log says 5 MiB, CmaTotal 8192 kB.
"""

from __future__ import annotations

from harness.checks import CmaBootReport, CmaReservation
from harness.expectation import Expectation
from harness.judge import as_reserved
from harness.oracle import Prediction

LOG = ("cma: Reserved 5 MiB at 0x7f800000",)


def _prediction(printed: int | None) -> Prediction:
    return Prediction("reserved", 8 << 20, 0x7F800000, 0x80000000, 0x7F800000, LOG, "test",
                      ranges=1, printed_size=printed)


def test_the_default_area_takes_the_oracles_rounded_size_when_the_log_printed_the_asked_one() -> None:
    report = CmaBootReport(reserved=[CmaReservation(5, 0x7F800000)])
    fixed = as_reserved(report, Expectation.from_oracle(_prediction(5 << 20)))
    assert fixed.reserved == [CmaReservation(8, 0x7F800000)]
    assert report.reserved == [CmaReservation(5, 0x7F800000)]  # the parsed log is left alone


def test_the_report_stays_as_logged_when_the_oracle_expected_no_rounding_or_the_log_disagrees() -> None:
    report = CmaBootReport(reserved=[CmaReservation(5, 0x7F800000)])
    assert as_reserved(report, Expectation.from_oracle(_prediction(None))) == report
    other = CmaBootReport(reserved=[CmaReservation(6, 0x7F800000)])
    assert as_reserved(other, Expectation.from_oracle(_prediction(5 << 20))) == other
    assert as_reserved(report, Expectation.missing()) == report


def test_a_kernel_the_oracle_does_not_model_leaves_cells_unpredictable_not_the_run_refused() -> None:
    from harness.expectation import ExpectationSource, plan_expectation
    from harness.matrix import Cell
    from harness.oracle import UnmodelledKernel, quirks_for

    try:
        quirks_for((6, 8))
    except UnmodelledKernel as exc:
        why = exc
    else:
        raise AssertionError("6.8 is between modelled versions and must be refused")
    cell = Cell("vexpress-a9", "cma=64M")
    got = plan_expectation(cell, "console=ttyAMA0 cma=64M", why)
    assert got.source is ExpectationSource.UNPREDICTABLE and "not 6.8" in got.error


def test_a_cell_the_oracle_predicts_unbootable_is_marked_xfail_unless_the_matrix_marked_it() -> None:
    from dataclasses import replace

    from harness.expectation import mark_unbootable
    from harness.matrix import Cell

    cell = Cell("vexpress-a9", "mem=128M cma=32M")
    dead = replace(_prediction(None), unbootable="the initrd at 0x68000000 is outside memory")
    marked = mark_unbootable(cell, Expectation.from_oracle(dead))
    assert marked.xfail == "the cma= oracle predicts no shell: the initrd at 0x68000000 is outside memory"
    assert mark_unbootable(cell, Expectation.from_oracle(_prediction(None))) == cell
    own = replace(cell, xfail="known")
    assert mark_unbootable(own, Expectation.from_oracle(dead)).xfail == "known"

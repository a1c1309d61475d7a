from __future__ import annotations

import datetime as dt
from pathlib import Path

from junitparser import Error, Failure, JUnitXml, Skipped

from harness.cell import CellResult
from harness.checks import CheckResult, CmaExpectation, Status
from harness.matrix import Cell
from harness.results import Provenance, build_junit, exit_status, xml_safe

PROV = Provenance("6.1.176", "/usr/src/linux-source-6.1.tar.xz", "s" * 64, "c" * 64,
                  "arm-linux-gnueabihf-gcc 12.2.0", "QEMU emulator version 7.2.0")


def _cell(tmp_path: Path, cmdline: str, checks: list[CheckResult]) -> CellResult:
    log = tmp_path / f"{len(cmdline)}.log"
    log.write_bytes(b"[    0.000000] Booting Linux\r\n\x1b[6ncma-harness# \x07\r\n")
    return CellResult(Cell("vexpress-a9", cmdline, CmaExpectation("reserved", 32)), checks, log, 2.5,
                      1.25, {"cma.reserved_mib": "32"})


def test_junit_round_trip(tmp_path: Path) -> None:
    ok = _cell(tmp_path, "cma=32M", [
        CheckResult("boot", Status.PASS, "shell after 1.2s", seconds=1.25),
        CheckResult("cma-reservation", Status.FAIL, "expected 'cma: Reserved 32 MiB', saw none",
                    "cma: details"),
        CheckResult("cma-debugfs", Status.SKIP, "no CMA area to exercise"),
        CheckResult("guest-commands", Status.ERROR, "no answer within 30s", "console tail"),
    ])
    xml = build_junit([ok], PROV, {ok.cell.name: "console=ttyAMA0 cma=32M"},
                      dt.datetime(2026, 11, 21, tzinfo=dt.UTC))
    path = tmp_path / "junit.xml"
    xml.write(str(path))
    back = JUnitXml.fromfile(str(path))
    suites = list(back)
    assert len(suites) == 1
    suite = suites[0]
    assert suite.name == "vexpress-a9:cma=32M"
    assert (suite.tests, suite.failures, suite.errors, suite.skipped) == (4, 1, 1, 1)
    assert (back.tests, back.failures, back.errors, back.skipped) == (4, 1, 1, 1)
    props = {p.name: p.value for p in suite.properties()}
    assert props["board"] == "vexpress-a9" and props["cmdline"] == "cma=32M"
    assert props["kernel.release"] == "6.1.176" and props["series.hash"] == "s" * 64
    assert props["config.hash"] == "c" * 64 and props["kernel.cmdline"].endswith("cma=32M")
    cases = {c.name: c for c in suite}
    assert cases["boot"].is_passed
    failure = cases["cma-reservation"].result[0]
    assert isinstance(failure, Failure) and "expected 'cma: Reserved 32 MiB'" in failure.message
    assert isinstance(cases["guest-commands"].result[0], Error)
    assert isinstance(cases["cma-debugfs"].result[0], Skipped)
    text = path.read_text()
    assert "Booting Linux" in text and "\x1b" not in text and "\x07" not in text


def test_exit_status_ranks_cells(tmp_path: Path) -> None:
    good = _cell(tmp_path, "a", [CheckResult("boot", Status.PASS, "")])
    skip = _cell(tmp_path, "bb", [CheckResult("boot", Status.PASS, ""),
                                  CheckResult("x", Status.SKIP, "")])
    bad = _cell(tmp_path, "ccc", [CheckResult("boot", Status.FAIL, "")])
    empty = _cell(tmp_path, "dddd", [])
    assert exit_status([good, skip]) == 0
    assert exit_status([good, bad]) == 1
    assert exit_status([empty]) == 1  # a cell with zero checks is an error, never a pass
    assert empty.status is Status.ERROR


def test_xml_safe_drops_controls() -> None:
    assert xml_safe("a\x1b[0mb\x00c\td\n") == "a[0mb?c\td\n"

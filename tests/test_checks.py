"""Checks on real console logs recorded by this harness (tests/fixtures/consoles/)."""

from __future__ import annotations

from harness import checks
from harness.checks import CmaBootReport, CmaExpectation, CmaReservation, Status
from harness.klog import ConsoleSplitter

from .conftest import console_log


def _records(name: str) -> tuple[list[str], str]:
    splitter = ConsoleSplitter()
    records = splitter.feed(console_log(name))
    splitter.flush()
    return records, splitter.user


def test_parse_cma_lines_formats_of_both_bases() -> None:
    report = checks.parse_cma_lines([
        "[    0.000000] cma: Reserved 64 MiB at 0x7c000000",
        "[    0.000000] cma: Reserved 16 MiB at 0x0000000078000000 on node -1",
        "[    0.000000] cma: Failed to reserve 1024 MiB",
        "[    0.000000] Reserved memory: created CMA memory pool at 0x43000000, size 32 MiB",
        "[    0.000000] cma: Size (0x40000000) of region at 0x00000000 exceeds limit (0x20000000)",
    ])
    assert report.reserved == [CmaReservation(64, 0x7C000000), CmaReservation(16, 0x78000000)]
    assert report.failed == [1024]
    assert report.dt_pools == [CmaReservation(32, 0x43000000)]
    assert report.other == ["Size (0x40000000) of region at 0x00000000 exceeds limit (0x20000000)"]
    assert report.total_mib == 64 + 16 + 32


def test_reservation_expectations() -> None:
    reserved = CmaBootReport(reserved=[CmaReservation(32, 0x7E000000)])
    failed = CmaBootReport(failed=[1024])
    none = CmaBootReport()
    ok = checks.check_cma_reservation
    assert ok(CmaExpectation("reserved", 32), reserved).status is Status.PASS
    bad = ok(CmaExpectation("reserved", 64), reserved)
    assert bad.status is Status.FAIL
    assert bad.message == ("expected 'cma: Reserved 64 MiB', saw 'cma: Reserved 32 MiB at 0x7e000000'")
    assert ok(CmaExpectation("failed", 1024), failed).status is Status.PASS
    assert ok(CmaExpectation("failed", 1024), reserved).status is Status.FAIL
    assert ok(CmaExpectation("none"), none).status is Status.PASS
    assert ok(CmaExpectation("none"), failed).status is Status.FAIL
    assert ok(CmaExpectation("reserved", 32), none).message.endswith("saw no cma: reservation line")


def test_meminfo_check() -> None:
    report = CmaBootReport(reserved=[CmaReservation(32, 0x7E000000)])
    assert checks.check_meminfo(report, {"CmaTotal": 32768, "CmaFree": 30000}).status is Status.PASS
    wrong = checks.check_meminfo(report, {"CmaTotal": 16384, "CmaFree": 0})
    assert wrong.status is Status.FAIL and "expected CmaTotal 32768 kB" in wrong.message
    assert checks.check_meminfo(report, {"CmaTotal": 32768, "CmaFree": 40000}).status is Status.FAIL
    assert checks.check_meminfo(report, {"MemTotal": 1}).status is Status.FAIL


def test_debugfs_check_detects_leaks_and_wrong_counts() -> None:
    good = {"before.used": "0", "before.maxchunk": "8192", "alloc.status": "0",
            "after_alloc.used": "64", "free.status": "0", "after_free.used": "0",
            "after_free.maxchunk": "8192", "before.alloc_pages_success": "10",
            "after_alloc.alloc_pages_success": "74"}
    assert checks.check_debugfs_area("reserved", 64, good).status is Status.PASS
    leak = {**good, "after_free.used": "64", "after_free.maxchunk": "8128"}
    result = checks.check_debugfs_area("reserved", 64, leak)
    assert result.status is Status.FAIL
    assert "used after free: expected 0, saw 64" in result.message
    assert "maxchunk after free: expected 8192, saw 8128" in result.message
    short = {**good, "after_alloc.used": "63", "after_alloc.alloc_pages_success": "73"}
    msg = checks.check_debugfs_area("reserved", 64, short).message
    assert "used after alloc: expected 64, saw 63" in msg and "moved by 63" in msg
    failed_alloc = {**good, "alloc.status": "1", "after_alloc.used": "0"}
    assert "failed (status 1)" in checks.check_debugfs_area("reserved", 64, failed_alloc).message
    assert checks.check_debugfs_area("reserved", 64, {"error": "x"}).status is Status.ERROR


def test_parse_meminfo_and_key_values() -> None:
    info = checks.parse_meminfo("MemTotal:         500000 kB\nCmaTotal:  65536 kB\nHugePages_Total: 0\n")
    assert info == {"MemTotal": 500000, "CmaTotal": 65536, "HugePages_Total": 0}
    assert checks.parse_key_values("a=1\nnoise\nb.c= 2 \n") == {"a": "1", "b.c": "2"}


def test_worst_status_ranks_and_empty_is_error() -> None:
    assert checks.worst([Status.PASS, Status.SKIP]) is Status.PASS
    assert checks.worst([Status.PASS, Status.FAIL, Status.ERROR]) is Status.ERROR
    assert checks.worst([]) is Status.ERROR


def _report(name: str) -> tuple[CmaBootReport, list[str], str]:
    records, user = _records(name)
    return checks.parse_cma_lines(records), records, user


def test_real_default_boot() -> None:
    report, records, user = _report("vexpress-a9-default.log")
    assert report.reserved == [CmaReservation(16, 0x7F000000)]
    assert checks.check_cma_reservation(CmaExpectation("reserved", 16), report).status is Status.PASS
    assert checks.check_kernel_log(records).status is Status.PASS
    # The command outputs survive the splitter intact: meminfo agrees with the log.
    meminfo = checks.parse_meminfo(user)
    assert checks.check_meminfo(report, meminfo).status is Status.PASS
    assert "cma-harness: init ready (6.1.176)" in user
    assert not any("cma-harness: init ready" in r for r in records)


def test_real_128m_boot_and_its_debugfs_probe() -> None:
    report, _, user = _report("vexpress-a9-cma=128M.log")
    assert report.reserved == [CmaReservation(128, 0x78000000)]
    assert checks.check_cma_reservation(CmaExpectation("reserved", 64), report).status is Status.FAIL
    probe = checks.parse_key_values(user)
    result = checks.check_debugfs_area("reserved", 64, probe)
    assert result.status is Status.PASS, result.message
    assert probe["before.count"] == str(128 * 256)


def test_real_failed_reservation() -> None:
    report, records, _ = _report("vexpress-a9-cma=1G.log")
    assert report.failed == [1024] and not report.reserved
    assert checks.check_cma_reservation(CmaExpectation("failed", 1024), report).status is Status.PASS
    assert checks.check_cma_reservation(CmaExpectation("none"), report).status is Status.FAIL
    assert checks.check_kernel_log(records).status is Status.PASS


def test_real_malformed_value_reads_as_zero() -> None:
    report, _, _ = _report("vexpress-a9-cma=lots.log")
    assert not report.reserved and not report.failed
    # The series' 0001 patch makes early_cma() say how it read the value.
    assert 'ignoring trailing characters "lots" of cma=' in report.other
    assert checks.check_cma_reservation(CmaExpectation("none"), report).status is Status.PASS


def test_real_panic_during_boot() -> None:
    _, records, user = _report("vexpress-a9-no-init-panic.log")
    result = checks.check_kernel_log(records)
    assert result.status is Status.FAIL
    assert "panic: [" in result.message and "Kernel panic - not syncing" in result.message
    assert "cma-harness: init ready" not in user

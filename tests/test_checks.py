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


SUITE_KTAP = """KTAP version 1
1..2
    KTAP version 1
    # Subtest: migrate
    1..2
    # our pages took 54004 of 62044 kB of free CMA (87%)
    ok 1 cma-occupied-by-movable-pages
    # allocated 66846720 bytes in 123708 us
    not ok 2 alloc-whole-area
    # latency_us min=123708 median=123708 max=123708 n=1
    # duration_ms=9000
not ok 1 migrate
ok 2 dma # SKIP no default area
"""


def test_ktap_checks_flatten_and_measure() -> None:
    results, metrics = checks.ktap_checks("cma-test", SUITE_KTAP, 1)
    by = {r.name: r for r in results}
    assert by["cma-test/migrate/cma-occupied-by-movable-pages"].status is Status.PASS
    failed = by["cma-test/migrate/alloc-whole-area"]
    assert failed.status is Status.FAIL and "allocated 66846720 bytes" in failed.details
    assert by["cma-test/dma"].status is Status.SKIP
    assert metrics["cma-test/migrate.latency_us.median"] == "123708"
    assert metrics["cma-test/migrate.duration_ms"] == "9000"


def test_ktap_checks_crash_without_output_is_a_failure() -> None:
    results, _ = checks.ktap_checks("cma-test", "Segmentation fault\n", 139)
    assert [(r.name, r.status) for r in results] == [("cma-test", Status.FAIL)]
    assert "killed by signal 11" in results[0].message
    results, _ = checks.ktap_checks("cma-test", "KTAP version 1\n1..1\nok 1 a\n", 3)
    assert results[-1].status is Status.FAIL and "exit status 3" in results[-1].message


AREAS = """# abi=1 areas=1 max_align_order=8 page_size=4096
idx name                 base         size         total    free
0   reserved             0x007c000000 67108864     16384    16320
"""


def test_dev_areas_against_the_boot_log() -> None:
    areas = checks.parse_cma_test_areas(AREAS)
    assert areas == [checks.DevArea("reserved", 0x7C000000, 64 << 20, 16384, 16320)]
    good = CmaBootReport(reserved=[CmaReservation(64, 0x7C000000)])
    assert checks.check_dev_areas(good, areas).status is Status.PASS
    moved = CmaBootReport(reserved=[CmaReservation(64, 0x78000000)])
    result = checks.check_dev_areas(moved, areas)
    assert result.status is Status.FAIL and "64 MiB at 0x78000000" in result.message


def test_alloc_outside_the_area_or_misaligned_fails() -> None:
    area = checks.DevArea("reserved", 0x7C000000, 64 << 20, 16384, 16320)
    ok = "handle=1 phys=0x7c100000 size=1048576 order=4 latency_us=250"
    assert checks.check_alloc_in_area(area, ok, 1 << 20, 4).status is Status.PASS
    outside = "handle=1 phys=0x7bf00000 size=1048576 order=4 latency_us=250"
    assert "got phys 0x7bf00000" in checks.check_alloc_in_area(area, outside, 1 << 20, 4).message
    overhang = "handle=1 phys=0x7ff80000 size=1048576 order=0 latency_us=250"
    assert checks.check_alloc_in_area(area, overhang, 1 << 20, 0).status is Status.FAIL
    misaligned = "handle=1 phys=0x7c101000 size=1048576 order=4 latency_us=250"
    assert "alignment to 0x10000" in checks.check_alloc_in_area(area, misaligned, 1 << 20, 4).message
    dma = "handle=2 dma=0x7c200000 phys=0x7c200000 latency_us=300"
    result = checks.check_alloc_in_area(area, dma, 1 << 20, 0)
    assert result.status is Status.PASS and result.name == "cma-dev/dma-alloc-in-area"
    assert checks.check_alloc_in_area(area, "alloc reserved 1048576 order=4: ENOMEM", 1 << 20, 4).status \
        is Status.FAIL


def test_leak_and_required_subtests() -> None:
    before = {"reserved.used": "64", "reserved.alloc_pages_success": "10"}
    assert checks.check_counters_restored("cma-test/dma", before, dict(before)).status is Status.PASS
    leaked = checks.check_counters_restored("cma-test/dma", before, {**before, "reserved.used": "320"})
    assert leaked.status is Status.FAIL and "reserved: used 64 -> 320 pages" in leaked.message
    results, _ = checks.ktap_checks("cma-test", SUITE_KTAP, 1)
    req = checks.check_required_tests(results, ["cma-test/migrate/cma-occupied-by-movable-pages"])
    assert req.status is Status.PASS
    req = checks.check_required_tests(results, ["cma-test/migrate/alloc-whole-area", "cma-test/dma",
                                                "cma-test/migrate/never-ran"])
    assert req.status is Status.FAIL
    assert "alloc-whole-area (fail)" in req.message and "cma-test/dma (skip)" in req.message
    assert "never-ran (absent)" in req.message


def test_dmabuf_heap_legacy_text_and_ktap() -> None:
    legacy = """Testing heap: system
=======================================
  Testing allocation and importing:  (Could not open vgem - skipping):   OK
  Testing alloced 4k buffers are zeroed:  OK
Testing heap: reserved
=======================================
  Testing allocation and importing:  FAIL (Allocation Failed!)
"""
    results, _ = checks.dmabuf_heap_checks(legacy, 1)
    by = {r.name: r.status for r in results}
    assert by["selftests/dmabuf-heaps/system/allocation-and-importing"] is Status.PASS
    assert by["selftests/dmabuf-heaps/system/alloced-4k-buffers-are-zeroed"] is Status.PASS
    assert by["selftests/dmabuf-heaps/reserved/allocation-and-importing"] is Status.FAIL
    ktap = "TAP version 13\n1..1\nok 1 dmabuf_heap_alloc_older\n"
    results, _ = checks.dmabuf_heap_checks(ktap, 0)
    assert [(r.name, r.status) for r in results] == [
        ("selftests/dmabuf-heaps/dmabuf_heap_alloc_older", Status.PASS)]


def test_real_suite_output_from_a_64m_boot() -> None:
    _, records, user = _report("vexpress-a9-cma=64M-suites.log")
    results, metrics = checks.ktap_checks("cma-test", user, 0)
    by = {r.name: r.status for r in results}
    for name in ("cma-test/migrate/cma-occupied-by-movable-pages", "cma-test/migrate/alloc-whole-area",
                 "cma-test/exhaustion/area-restored", "cma-test/concurrency/no-lost-or-double-counted-pages",
                 "cma-test/replay/03-churn.seq"):
        assert by[name] is Status.PASS, name
    assert not [n for n, s in by.items() if s is not Status.PASS]
    assert int(metrics["cma-test/migrate.latency_us.n"]) == 1
    areas = checks.parse_cma_test_areas(user)
    report = checks.parse_cma_lines(records)
    assert checks.check_dev_areas(report, areas).status is Status.PASS


def test_real_6_12_boot_prints_the_node() -> None:
    report, records, user = _report("linux-6.12-vexpress-a9-cma=64M.log")
    assert any("cma: Reserved 64 MiB at 0x7c000000 on node -1" in r for r in records)
    assert report.reserved == [CmaReservation(64, 0x7C000000)]
    assert checks.check_cma_reservation(CmaExpectation("reserved", 64), report).status is Status.PASS
    assert checks.check_meminfo(report, checks.parse_meminfo(user)).status is Status.PASS
    assert checks.check_kernel_log(records).status is Status.PASS


AREAS_ABI2 = """# abi=2 areas=2 max_align_order=8 page_size=4096
idx name                 base         size         total    free
0   reserved             0x007c000000 67108864     16384    16320
    range 0/1 0x007c000000 16384 16320
1   big                  0x0060000000 16777216     4096     4096
    range 0/2 0x0060000000 2048 2048
    range 1/2 0x0068000000 2048 2048
"""


def test_dev_ranges_are_parsed_and_must_cover_their_area() -> None:
    areas = checks.parse_cma_test_areas(AREAS_ABI2)
    assert checks.cma_dev_abi(AREAS_ABI2) == 2 and checks.cma_dev_abi(AREAS) == 1
    assert areas[0].ranges == (checks.DevRange(0x7C000000, 64 << 20, 16384, 16320),)
    assert [r.base for r in areas[1].ranges] == [0x60000000, 0x68000000]
    assert checks.check_dev_ranges(areas).status is Status.PASS
    short = AREAS_ABI2.replace("range 1/2 0x0068000000 2048 2048", "range 1/2 0x0068000000 1024 1024")
    result = checks.check_dev_ranges(checks.parse_cma_test_areas(short))
    assert result.status is Status.FAIL and "big: ranges add up to 12582912 bytes" in result.message
    overlap = AREAS_ABI2.replace("0x0068000000 2048", "0x0060001000 2048")
    assert "overlaps" in checks.check_dev_ranges(checks.parse_cma_test_areas(overlap)).message
    assert "no ranges listed" in checks.check_dev_ranges(checks.parse_cma_test_areas(AREAS)).message


def test_alloc_in_a_later_range_of_a_multi_range_area_passes() -> None:
    big = checks.parse_cma_test_areas(AREAS_ABI2)[1]
    second = "handle=1 phys=0x68000000 size=1048576 order=4 latency_us=250"
    assert checks.check_alloc_in_area(big, second, 1 << 20, 4).status is Status.PASS
    gap = "handle=1 phys=0x64000000 size=1048576 order=4 latency_us=250"
    result = checks.check_alloc_in_area(big, gap, 1 << 20, 4)
    assert result.status is Status.FAIL and "[0x60000000, 0x60800000) or" in result.message


HEAPS_72 = """TAP version 13
1..22
# Testing heap: region-mfc-right
# Testing alloced 4k buffers are zeroed:
ok 1 Allocate and fill a bunch of buffers
ok 2 Allocate and validate all buffers are zeroed
# Testing alloced 1024k buffers are zeroed:
not ok 3 FAIL (Allocation (7) failed) -1
# Testing heap: reserved
# Testing alloced 1024k buffers are zeroed:
ok 4 Allocate and fill a bunch of buffers
{reserved_line}
# Totals: pass:3 fail:1 xfail:0 xpass:0 skip:0 error:0
"""


def test_a_heap_too_small_for_the_zeroed_test_is_a_skip_only_for_that_heap() -> None:
    areas = checks.parse_cma_test_areas(AREAS_ABI2.replace(" big ", " region-mfc-right ").replace(
        "16777216     4096", "8388608      2048"))
    text = HEAPS_72.format(reserved_line="ok 5 Allocate and validate all buffers are zeroed").replace(
        "1..22", "1..6")
    fixed, status = checks.excuse_small_heaps(text, areas, 1)
    assert status == 0 and "1..5" in fixed
    assert "ok 3 FAIL (Allocation (7) failed) -1 # SKIP heap region-mfc-right holds 8 MiB" in fixed
    results, _ = checks.dmabuf_heap_results(fixed, status)
    assert all(r.status is not Status.FAIL for r in results), results
    # the 64 MiB default area gets no excuse: its failure stays a failure
    bad = HEAPS_72.format(reserved_line="not ok 5 FAIL (Allocation (3) failed) -1").replace("1..22", "1..6")
    fixed, status = checks.excuse_small_heaps(bad, areas, 1)
    assert status == 1 and "not ok 5" in fixed
    assert any(r.status is Status.FAIL for r in checks.dmabuf_heap_results(fixed, status)[0])

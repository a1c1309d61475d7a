"""Checks: pure functions from what the guest printed to :class:`CheckResult`.

Nothing here talks to QEMU; every check can be re-run on a saved console log.
A check that disagreed is a ``FAIL``; trouble getting the evidence (the guest
died, a command failed to run) is an ``ERROR``.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from harness.klog import find_problems
from harness.ktap import FlatTest, diagnostic_metrics, flatten, parse_ktap, subtree_diagnostics
from harness.outcome import Status, worst

__all__ = ["Status", "worst"]  # re-exported: the one outcome enum lives in harness.outcome


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome.

    Attributes:
        name: the testcase name, e.g. ``cma-reservation``.
        status: see :class:`Status`.
        message: one line; for a failure it says what was expected and what was seen.
        details: longer evidence (log excerpts), may be empty.
        seconds: time the check's guest interaction took.
        infrastructure: for an ERROR, True when the host ended the guest (QEMU
            killed by a signal, or QEMU failing before the kernel ran), not the
            guest itself: JUnit ``<error type="infrastructure">``, not a verdict.
    """

    name: str
    status: Status
    message: str
    details: str = ""
    seconds: float = 0.0
    infrastructure: bool = False


# --- cma: lines of the boot log -------------------------------------------------

# mm/cma.c, cma_declare_contiguous_nid(): 6.1 prints "Reserved %ld MiB at %pa";
# later kernels append " on node %d".  Failure: "Failed to reserve %ld MiB".
_RESERVED = re.compile(r"\bcma: Reserved (\d+) MiB at (0x[0-9a-f]+)(?: on node (-?\d+))?")
_FAILED = re.compile(r"\bcma: Failed to reserve (\d+) MiB")
# kernel/dma/contiguous.c, rmem_cma_setup(): a DT "shared-dma-pool" reusable region.
_DT_POOL = re.compile(r"Reserved memory: created CMA memory pool at (0x[0-9a-f]+), size (\d+) MiB")
_CMA_OTHER = re.compile(r"\bcma: (.*)")


@dataclass(frozen=True)
class CmaReservation:
    """A reservation the kernel announced: ``size_mib`` MiB at physical ``base`` (bytes)."""

    size_mib: int
    base: int


@dataclass
class CmaBootReport:
    """All CMA lines of a boot log, parsed.

    Attributes:
        reserved: ``cma: Reserved N MiB at 0x...`` (cmdline/Kconfig default area).
        failed: sizes in MiB of ``cma: Failed to reserve N MiB``.
        dt_pools: DT reserved-memory CMA pools.
        other: the text of any other ``cma:`` line (errors like "exceeds limit").
    """

    reserved: list[CmaReservation] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    dt_pools: list[CmaReservation] = field(default_factory=list)
    other: list[str] = field(default_factory=list)

    @property
    def total_mib(self) -> int:
        """MiB of every area reserved, default and DT pools."""
        return sum(r.size_mib for r in self.reserved) + sum(p.size_mib for p in self.dt_pools)


def parse_cma_lines(lines: Iterable[str]) -> CmaBootReport:
    """Parse the boot log lines that speak of CMA reservations."""
    report = CmaBootReport()
    for line in lines:
        if m := _RESERVED.search(line):
            report.reserved.append(CmaReservation(int(m.group(1)), int(m.group(2), 16)))
        elif m := _FAILED.search(line):
            report.failed.append(int(m.group(1)))
        elif m := _DT_POOL.search(line):
            report.dt_pools.append(CmaReservation(int(m.group(2)), int(m.group(1), 16)))
        elif m := _CMA_OTHER.search(line):
            report.other.append(m.group(1).strip())
    return report


def parse_meminfo(text: str) -> dict[str, int]:
    """``/proc/meminfo`` as ``{"CmaTotal": kB, ...}``; lines without a number are skipped."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        m = re.match(r"(\w+(?:\(\w+\))?):\s+(\d+)", line)
        if m:
            values[m.group(1)] = int(m.group(2))
    return values


class CmaOutcome(StrEnum):
    """What the kernel does with the default CMA area: the one list of these outcomes.

    ``RESERVED``: an area of N MiB (``cma: Reserved N MiB at ...``); ``FAILED``:
    the kernel tried N MiB and printed ``cma: Failed to reserve N MiB``; ``NONE``:
    no default area at all (e.g. ``cma=0``).
    """

    RESERVED = "reserved"
    FAILED = "failed"
    NONE = "none"


@dataclass(frozen=True)
class CmaExpectation:
    """What a matrix cell expects of the default CMA area (a hand-written ``expect``).

    Attributes:
        outcome: a :class:`CmaOutcome` (its value as a string is accepted and
            converted).
        size_mib: the size in MiB for ``reserved`` and ``failed``; None for ``none``.

    Raises:
        ValueError: ``outcome`` is none of :class:`CmaOutcome`'s values.
    """

    outcome: CmaOutcome | str
    size_mib: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "outcome", CmaOutcome(self.outcome))

    @property
    def kind(self) -> CmaOutcome:
        """:attr:`outcome` as the enum (it always is one after construction)."""
        return CmaOutcome(self.outcome)

    def describe(self) -> str:
        """The expected ``cma:`` line in words, e.g. ``'cma: Reserved 64 MiB'``."""
        if self.kind is CmaOutcome.NONE:
            return "no CMA area"
        verb = "Reserved" if self.kind is CmaOutcome.RESERVED else "Failed to reserve"
        return f"'cma: {verb} {self.size_mib} MiB'"


def _describe_seen(report: CmaBootReport) -> str:
    seen = [f"'cma: Reserved {r.size_mib} MiB at {r.base:#x}'" for r in report.reserved]
    seen += [f"'cma: Failed to reserve {s} MiB'" for s in report.failed]
    return ", ".join(seen) or "no cma: reservation line"


def check_cma_reservation(expect: CmaExpectation, report: CmaBootReport) -> CheckResult:
    """Does the boot log's ``cma: Reserved``/``Failed to reserve`` line match the expectation?"""
    name = "cma-reservation"
    seen = _describe_seen(report)
    extra = "".join(f"\ncma: {line}" for line in report.other)
    if expect.kind is CmaOutcome.RESERVED:
        ok = [r.size_mib for r in report.reserved] == [expect.size_mib] and not report.failed
    elif expect.kind is CmaOutcome.FAILED:
        ok = report.failed == [expect.size_mib] and not report.reserved
    else:
        ok = not report.reserved and not report.failed
    if ok:
        return CheckResult(name, Status.PASS, f"as expected: {seen}", extra.strip())
    return CheckResult(name, Status.FAIL, f"expected {expect.describe()}, saw {seen}",
                       extra.strip())


def check_meminfo(report: CmaBootReport, meminfo: dict[str, int]) -> CheckResult:
    """CmaTotal must equal every area the boot log announced; CmaFree must not exceed it."""
    name = "cma-meminfo"
    if "CmaTotal" not in meminfo or "CmaFree" not in meminfo:
        return CheckResult(name, Status.FAIL, "/proc/meminfo has no CmaTotal/CmaFree lines")
    total, free = meminfo["CmaTotal"], meminfo["CmaFree"]
    want = report.total_mib * 1024
    if total != want:
        return CheckResult(name, Status.FAIL,
                           f"expected CmaTotal {want} kB (the boot log's {report.total_mib} MiB), "
                           f"saw CmaTotal {total} kB")
    if free > total:
        return CheckResult(name, Status.FAIL, f"CmaFree {free} kB exceeds CmaTotal {total} kB")
    return CheckResult(name, Status.PASS, f"CmaTotal {total} kB, CmaFree {free} kB")


def check_kernel_log(lines: Sequence[str]) -> CheckResult:
    """No panic, Oops, BUG or WARNING anywhere in the kernel log of the boot."""
    problems = find_problems(lines)
    if not problems:
        return CheckResult("kernel-log-clean", Status.PASS, "no panic, Oops, BUG or WARNING")
    first = problems[0]
    return CheckResult(
        "kernel-log-clean", Status.FAIL,
        f"expected a clean kernel log, saw {len(problems)} problem line(s); first: "
        f"{first.kind.value}: {first.line.strip()}",
        "\n".join(p.line for p in problems[:50]),
    )


# --- debugfs ---------------------------------------------------------------------


def parse_key_values(text: str) -> dict[str, str]:
    """``key=value`` lines (as printed by the guest's ``cma-debugfs-probe``)."""
    values = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key:
            values[key] = value.strip()
    return values


def check_debugfs_area(area: str, pages: int, probe: dict[str, str]) -> CheckResult:
    """The debugfs alloc/free round trip on one CMA area moved the counters exactly.

    ``probe`` holds the guest probe's readings: ``before.used``, ``alloc.status``,
    ``after_alloc.used``, ``free.status``, ``after_free.used``, ``before.maxchunk``,
    ``after_free.maxchunk`` (pages) and, with CONFIG_CMA_SYSFS, the
    ``alloc_pages_success`` counter before and after.
    """
    name = f"cma-debugfs[{area}]"
    try:
        num = {k: int(v) for k, v in probe.items() if v.lstrip("-").isdigit()}
        before, alloc_st = num["before.used"], num["alloc.status"]
        after_alloc, free_st = num["after_alloc.used"], num["free.status"]
        after_free = num["after_free.used"]
    except KeyError as exc:
        return CheckResult(name, Status.ERROR, f"probe output lacks {exc.args[0]}",
                           "\n".join(f"{k}={v}" for k, v in probe.items()))
    problems = []
    if alloc_st != 0:
        problems.append(f"'echo {pages} > alloc' failed (status {alloc_st})")
    if after_alloc != before + pages:
        problems.append(f"used after alloc: expected {before + pages}, saw {after_alloc}")
    if free_st != 0:
        problems.append(f"'echo {pages} > free' failed (status {free_st})")
    if after_free != before:
        problems.append(f"used after free: expected {before}, saw {after_free}")
    if num.get("after_free.maxchunk") != num.get("before.maxchunk"):
        problems.append(f"maxchunk after free: expected {num.get('before.maxchunk')}, "
                        f"saw {num.get('after_free.maxchunk')}")
    if "before.alloc_pages_success" in num and "after_alloc.alloc_pages_success" in num:
        moved = num["after_alloc.alloc_pages_success"] - num["before.alloc_pages_success"]
        if moved != pages:
            problems.append(f"alloc_pages_success moved by {moved}, expected {pages}")
    details = "\n".join(f"{k}={v}" for k, v in probe.items())
    if problems:
        return CheckResult(name, Status.FAIL, "; ".join(problems), details)
    return CheckResult(name, Status.PASS,
                       f"allocated and freed {pages} pages; used {before} -> {after_alloc} -> "
                       f"{after_free}", details)


# --- cma-dev / cma-test -------------------------------------------------------------

@dataclass(frozen=True)
class Measurement:
    """A measurement a test printed as a KTAP diagnostic (``latency_us min=.. median=..``).

    Attributes:
        test: the testcase path of the top-level test, e.g. ``cma-test/alloc-free``.
        key: what was measured, e.g. ``latency_us.median`` (µs), ``duration_ms`` (ms).
        value: the value as the guest printed it.
    """

    test: str
    key: str
    value: str

    @property
    def name(self) -> str:
        """The JUnit property name: ``<test>.<key>``."""
        return f"{self.test}.{self.key}"


def _ktap_check(prefix: str, flat: FlatTest) -> CheckResult:
    """One flattened KTAP test as a check: a test that never reported fails with its reason."""
    if flat.status is Status.ERROR:
        status, message = Status.FAIL, flat.reason
    elif flat.status is Status.SKIP:
        status = Status.SKIP
        message = (f"known failure (TODO): {flat.reason}" if flat.known_failure
                   else f"skipped: {flat.reason}")
    else:
        status, message = flat.status, "ok" if flat.status is Status.PASS else "not ok"
    return CheckResult(f"{prefix}/{flat.path}", status, message, "\n".join(flat.diagnostics))


def ktap_results(prefix: str, output: str,
                 exit_status: int) -> tuple[list[CheckResult], list[Measurement]]:
    """KTAP output of a guest program as one :class:`CheckResult` per test and subtest.

    Nested subtests are flattened with their path (``prefix/suite/subtest``);
    a failure carries the test's diagnostic lines.  Measurement diagnostics
    (``latency_us min=.. median=.. max=..``, ``duration_ms=..``) of each
    top-level test become :class:`Measurement` s of ``prefix/<test>``.  Output
    with no test at all (the program crashed before printing any), or a non-zero
    exit status with no failing test, is itself a failure.
    """
    tests = parse_ktap(output.splitlines())
    results = [_ktap_check(prefix, flat) for flat in flatten(tests)]
    measured = [Measurement(f"{prefix}/{t.name}", k, v) for t in tests
                for k, v in diagnostic_metrics(subtree_diagnostics(t)).items()]
    if not tests:
        signal = f", killed by signal {exit_status - 128}" if exit_status > 128 else ""
        results.append(CheckResult(prefix, Status.FAIL,
                                   f"no KTAP results (exit status {exit_status}{signal})", output[-4000:]))
    elif exit_status != 0 and all(r.status is not Status.FAIL for r in results):
        results.append(CheckResult(prefix, Status.FAIL,
                                   f"exit status {exit_status} although every KTAP test passed",
                                   output[-4000:]))
    return results, measured


def measurement_dict(measured: Iterable[Measurement]) -> dict[str, str]:
    """``{"<test>.<key>": value}`` in order (a repeated name keeps its first place, last value)."""
    out: dict[str, str] = {}
    for m in measured:
        out[m.name] = m.value
    return out


def ktap_checks(prefix: str, output: str,
                exit_status: int) -> tuple[list[CheckResult], dict[str, str]]:
    """:func:`ktap_results` with the measurements as ``{"<prefix>/<test>.<key>": value}``."""
    results, measured = ktap_results(prefix, output, exit_status)
    return results, measurement_dict(measured)


@dataclass(frozen=True)
class DevRange:
    """One physical range of a CMA area as ``cma-test areas`` lists it (cma-dev ABI 2).

    ``base`` is a physical address and ``size`` bytes; the pages are the range's
    total and not-allocated pages.  An area has one range before Linux 6.15
    (mm/cma.c ``struct cma_memrange`` since), and one on ARM32 in any case
    unless hugetlb_cma made it.
    """

    base: int
    size: int
    total_pages: int
    free_pages: int


@dataclass(frozen=True)
class DevArea:
    """A CMA area as ``cma-test areas`` lists it: physical ``base`` and ``size`` in bytes.

    ``ranges`` holds its physical ranges in listing order; empty when the
    kernel's cma-dev predates ABI 2 (no ranges listed).
    """

    name: str
    base: int
    size: int
    total_pages: int
    free_pages: int
    ranges: tuple[DevRange, ...] = ()


_AREA_ROW = re.compile(r"\s*\d+\s+(\S+)\s+(0x[0-9a-f]+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$")
_RANGE_ROW = re.compile(r"\s+range\s+\d+/\d+\s+(0x[0-9a-f]+)\s+(\d+)\s+(\d+)\s*$")
_PAGE_SIZE = re.compile(r"#.*\bpage_size=(\d+)")


def parse_cma_test_areas(output: str) -> list[DevArea]:
    """Rows of ``cma-test areas``: ``idx name 0xBASE SIZE TOTAL FREE``, each followed
    (ABI 2) by its ``range R/N 0xBASE TOTAL FREE`` rows, sizes from the header's
    ``page_size`` (4096 if absent)."""
    areas: list[DevArea] = []
    page_size = 4096
    for line in output.splitlines():
        if m := _PAGE_SIZE.match(line):
            page_size = int(m.group(1))
        elif m := _AREA_ROW.match(line):
            areas.append(DevArea(m.group(1), int(m.group(2), 16), int(m.group(3)), int(m.group(4)),
                                 int(m.group(5))))
        elif (m := _RANGE_ROW.match(line)) and areas:
            rng = DevRange(int(m.group(1), 16), int(m.group(2)) * page_size, int(m.group(2)),
                           int(m.group(3)))
            areas[-1] = replace(areas[-1], ranges=(*areas[-1].ranges, rng))
    return areas


def cma_dev_abi(output: str) -> int:
    """The cma-dev ABI version ``cma-test areas`` printed (``# abi=N``); 0 if none."""
    m = re.search(r"^# abi=(\d+)", output, re.M)
    return int(m.group(1)) if m else 0


def _range_problems(area: DevArea) -> list[str]:
    """What is wrong with ``area``'s ranges: they must start at its base, not overlap,
    and add up to its size and free pages (mirrors cma_get_size() and the debugfs
    ``used`` count of mm/cma.c, which sum over ``cma->ranges``)."""
    ranges = area.ranges
    if not ranges:
        return [f"{area.name}: no ranges listed"]
    problems = []
    if ranges[0].base != area.base:
        problems.append(f"{area.name}: first range at {ranges[0].base:#x}, area base {area.base:#x}")
    if sum(r.size for r in ranges) != area.size:
        problems.append(f"{area.name}: ranges add up to {sum(r.size for r in ranges)} bytes, "
                        f"area size {area.size}")
    if sum(r.free_pages for r in ranges) != area.free_pages:
        problems.append(f"{area.name}: ranges have {sum(r.free_pages for r in ranges)} free pages, "
                        f"area {area.free_pages}")
    spans = sorted((r.base, r.base + r.size) for r in ranges)
    problems += [f"{area.name}: range at {b:#x} overlaps the one ending at {e:#x}"
                 for (_, e), (b, _) in itertools.pairwise(spans) if b < e]
    return problems


def check_dev_ranges(areas: list[DevArea]) -> CheckResult:
    """Each area cma-dev lists is made of ranges that cover it exactly (cma-dev ABI 2)."""
    name = "cma-dev/ranges-cover-areas"
    problems = [p for area in areas for p in _range_problems(area)]
    if problems:
        return CheckResult(name, Status.FAIL, "; ".join(problems))
    counts = ", ".join(f"{a.name}: {len(a.ranges)}" for a in areas) or "no areas"
    return CheckResult(name, Status.PASS, f"ranges per area: {counts}")


def check_dev_areas(report: CmaBootReport, areas: list[DevArea]) -> CheckResult:
    """cma-dev must list exactly the areas the boot log announced, at the same base and size."""
    name = "cma-dev/areas-match-boot-log"
    want = sorted((r.base, r.size_mib << 20) for r in [*report.reserved, *report.dt_pools])
    seen = sorted((a.base, a.size) for a in areas)
    if want == seen:
        return CheckResult(name, Status.PASS, f"{len(areas)} area(s) as in the boot log")
    fmt = ", ".join
    return CheckResult(name, Status.FAIL,
                       f"expected areas {fmt(f'{s >> 20} MiB at {b:#x}' for b, s in want) or 'none'}, "
                       "cma-dev lists "
                       f"{fmt(f'{a.name}: {a.size >> 20} MiB at {a.base:#x}' for a in areas) or 'none'}")


def check_alloc_in_area(area: DevArea, output: str, size: int, order: int,
                        page_size: int = 4096) -> CheckResult:
    """An allocation ``cma-test alloc`` reported must lie inside ``area`` and honour the alignment.

    ``output`` is the line ``handle=H phys=0x... size=N order=K ...`` (or
    ``... dma=0x... phys=0x...`` for ``dma-alloc``); ``size`` in bytes; the
    alignment is ``page_size << order`` bytes.
    """
    name = f"cma-dev/{'dma-alloc' if 'dma=' in output else 'alloc'}-in-area"
    m = re.search(r"\bphys=(0x[0-9a-f]+)", output)
    if not m:
        return CheckResult(name, Status.FAIL, "the allocation failed or printed no address", output)
    phys = int(m.group(1), 16)
    spans = [(r.base, r.base + r.size) for r in area.ranges] or [(area.base, area.base + area.size)]
    if not any(start <= phys and phys + size <= end for start, end in spans):
        where = " or ".join(f"[{start:#x}, {end:#x})" for start, end in spans)
        return CheckResult(name, Status.FAIL,
                           f"expected {size} bytes inside {area.name} {where}, "
                           f"got phys {phys:#x}", output)
    align = page_size << order
    if phys % align:
        return CheckResult(name, Status.FAIL, f"expected alignment to {align:#x} (order {order}), "
                           f"got phys {phys:#x}", output)
    return CheckResult(name, Status.PASS, f"{size} bytes at {phys:#x} inside {area.name}, "
                       f"{align:#x}-aligned", output)


def check_counters_restored(suite: str, before: dict[str, str], after: dict[str, str]) -> CheckResult:
    """After a suite, every area's debugfs ``used`` is back where it started (nothing leaked).

    ``suite`` is the suite's testcase path, e.g. ``cma-test/alloc-free``; the
    check is named ``<suite>.no-leak``.
    """
    name = f"{suite}.no-leak"
    leaks = [f"{key[:-5]}: used {before[key]} -> {after.get(key, '?')} pages"
             for key in sorted(before) if key.endswith(".used") and after.get(key) != before[key]]
    if not any(k.endswith(".used") for k in before):
        return CheckResult(name, Status.ERROR, "no CMA counters could be read", "")
    if leaks:
        return CheckResult(name, Status.FAIL, "pages still allocated after the suite: " + "; ".join(leaks))
    return CheckResult(name, Status.PASS, "every area's used count is back to its start")


def check_required_tests(results: Sequence[CheckResult], required: Sequence[str]) -> CheckResult:
    """Subtests the matrix requires ran and passed.

    E.g. ``cma-test/migrate/cma-occupied-by-movable-pages``.

    A suite that quietly dropped or skipped one of them would otherwise look green.
    """
    by_name = {r.name: r.status for r in results}
    missing = [n for n in required if by_name.get(n) is not Status.PASS]
    if missing:
        return CheckResult("cma-test/required-subtests", Status.FAIL,
                           "required subtests missing, skipped or failing: " +
                           ", ".join(f"{n} ({by_name[n].value if n in by_name else 'absent'})"
                                     for n in missing))
    return CheckResult("cma-test/required-subtests", Status.PASS,
                       f"all {len(required)} present and passing")


def dmabuf_heap_results(output: str,
                        exit_status: int) -> tuple[list[CheckResult], list[Measurement]]:
    """Results of the kernel's tools/testing/selftests/dmabuf-heaps/dmabuf-heap.

    6.12's is KTAP (kselftest.h); 6.1's prints ``Testing heap: NAME`` then
    ``  Testing WHAT:  OK`` or ``... FAIL (why)`` lines, read here into one
    check per heap and test.
    """
    prefix = "selftests/dmabuf-heaps"
    if re.search(r"^(K?TAP) version", output, re.M):
        return ktap_results(prefix, output, exit_status)
    results = []
    heap = "?"
    for line in output.splitlines():
        if m := re.match(r"Testing heap: (\S+)", line):
            heap = m.group(1)
        elif m := re.match(r"\s+Testing (.+?):\s+(.*)$", line):
            what = re.sub(r"\W+", "-", m.group(1).strip()).strip("-").lower()
            verdict = m.group(2)
            status = Status.FAIL if "FAIL" in verdict else Status.PASS if "OK" in verdict else Status.FAIL
            results.append(CheckResult(f"{prefix}/{heap}/{what}", status,
                                       verdict.strip() or "no verdict"))
    if not results:
        results.append(CheckResult(prefix, Status.FAIL, f"no results (exit status {exit_status})",
                                   output[-4000:]))
    return results, []


ZEROED_BUFFERS = 32  # test_alloc_zeroed() in dmabuf-heap.c allocates 32 buffers of each size
_HEAP = re.compile(r"^# Testing heap: (\S+)")
_ZEROED = re.compile(r"^# Testing alloced (\d+)k buffers are zeroed:")
_NOT_OK = re.compile(r"^not ok (\d+) (FAIL \(Allocation \(\d+\) failed\).*)$")


def excuse_small_heaps(output: str, areas: Sequence[DevArea], exit_status: int) -> tuple[str, int]:
    """The dmabuf-heaps KTAP ``output`` with the allocation failures no heap of its size can avoid
    turned into SKIPs, and the exit status that then applies.

    Since Linux 6.17 every CMA area is a dma-buf heap of its own, and the
    selftest's test_alloc_zeroed() (tools/testing/selftests/dmabuf-heaps/
    dmabuf-heap.c) allocates 32 buffers of 1 MiB from each heap: an area
    smaller than that (smdkc210's 8 MiB region-mfc-right) fails it whatever
    the kernel does.  Such a ``not ok`` becomes ``ok ... # SKIP`` naming the
    area's size; the selftest then also skips reporting that test's second
    result, so the plan shrinks by one.  A failing exit status 1 becomes 0 when
    no other test failed.  Areas come from ``cma-test areas`` (``size`` bytes).
    """
    sizes = {a.name: a.size for a in areas}
    heap, buffer, excused, lines = "", 0, 0, []
    for line in output.splitlines():
        if m := _HEAP.match(line):
            heap, buffer = m.group(1), 0
        elif m := _ZEROED.match(line):
            buffer = int(m.group(1)) << 10
        elif (m := _NOT_OK.match(line)) and buffer and heap in sizes \
                and sizes[heap] < ZEROED_BUFFERS * buffer:
            excused += 1
            line = (f"ok {m.group(1)} {m.group(2)} # SKIP heap {heap} holds {sizes[heap] >> 20} MiB, "
                    f"the selftest needs {ZEROED_BUFFERS} x {buffer >> 10}k")
        lines.append(line)
    if not excused:
        return output, exit_status
    text = re.sub(r"^1\.\.(\d+)$", lambda m: f"1..{int(m.group(1)) - excused}", "\n".join(lines), count=1,
                  flags=re.M)
    failed = re.search(r"^not ok ", text, re.M)
    return text, 0 if exit_status == 1 and not failed else exit_status


def dmabuf_heap_checks(output: str,
                       exit_status: int) -> tuple[list[CheckResult], dict[str, str]]:
    """:func:`dmabuf_heap_results` with the measurements as a dict (see :func:`ktap_checks`)."""
    results, measured = dmabuf_heap_results(output, exit_status)
    return results, measurement_dict(measured)

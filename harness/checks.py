"""Checks: pure functions from what the guest printed to :class:`CheckResult`.

Nothing here talks to QEMU; every check can be re-run on a saved console log.
A check that disagreed is a ``FAIL``; trouble getting the evidence (the guest
died, a command failed to run) is an ``ERROR``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum

from harness.klog import find_problems


class Status(Enum):
    """Outcome of one check; :attr:`rank` orders them error > fail > pass > skip."""

    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"
    SKIP = "skip"

    @property
    def rank(self) -> int:
        return {"skip": 0, "pass": 1, "fail": 2, "error": 3}[self.value]


def worst(statuses: Iterable[Status]) -> Status:
    """The most severe status; an empty input is ``ERROR`` (zero checks never pass)."""
    ranked = sorted(statuses, key=lambda s: s.rank)
    return ranked[-1] if ranked else Status.ERROR


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome.

    Attributes:
        name: the testcase name, e.g. ``cma-reservation``.
        status: see :class:`Status`.
        message: one line; for a failure it says what was expected and what was seen.
        details: longer evidence (log excerpts), may be empty.
        seconds: time the check's guest interaction took.
    """

    name: str
    status: Status
    message: str
    details: str = ""
    seconds: float = 0.0


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


@dataclass(frozen=True)
class CmaExpectation:
    """What a matrix cell expects of the default CMA area.

    Attributes:
        outcome: ``"reserved"`` (an area of ``size_mib`` MiB), ``"failed"`` (the
            kernel tried ``size_mib`` MiB and printed "Failed to reserve"), or
            ``"none"`` (no default area at all, e.g. ``cma=0``).
        size_mib: the size in MiB for ``reserved`` and ``failed``; None for ``none``.
    """

    outcome: str
    size_mib: int | None = None

    def describe(self) -> str:
        if self.outcome == "none":
            return "no CMA area"
        verb = "Reserved" if self.outcome == "reserved" else "Failed to reserve"
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
    if expect.outcome == "reserved":
        ok = [r.size_mib for r in report.reserved] == [expect.size_mib] and not report.failed
    elif expect.outcome == "failed":
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

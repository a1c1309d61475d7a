"""The oracle's answer and its verdict on a boot log.

:class:`Prediction` is what :func:`harness.oracle.predict` says the kernel
does with its CMA areas; :func:`check_against_oracle` judges a real boot log
against it by the lines mm/cma.c (cma_declare_contiguous_nid(), pr_fmt
``"cma: "``), kernel/dma/contiguous.c (early_cma(), rmem_cma_setup()) and the
series' patch print, read with :func:`harness.checks.parse_cma_lines`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.checks import CmaBootReport, CmaExpectation, parse_cma_lines
from harness.oracle.facts import SZ_1M


@dataclass(frozen=True)
class DtCmaPool:
    """A DT ``reusable`` ``shared-dma-pool`` the kernel turned into a CMA area (bytes).

    ``ranges`` is the area's ``cma->nranges`` (7.2's ``struct cma_memrange``):
    always 1 for reserved-memory areas (cma_init_reserved_mem()).
    """

    name: str
    base: int
    size: int
    ranges: int = 1


@dataclass(frozen=True)
class Prediction:
    """What the kernel will do with the default CMA area for one command line.

    Attributes:
        outcome: ``"reserved"``, ``"failed"`` (the kernel prints "Failed to
            reserve") or ``"none"`` (no default area, e.g. ``cma=0``).
        size: bytes; for ``reserved`` the area's size as rounded by the kernel,
            for ``failed`` the size the "Failed to reserve" line reports, 0 for ``none``.
        lo: lowest physical address the area may start at (0 unless reserved).
        hi: physical address the area must end at or below (0 unless reserved).
        base: the exact base the area gets, when the placement is deterministic.
        log: the CMA lines the kernel prints, in order, without timestamps:
            early_cma()'s (with the series' "command line:" line), the DT pools'
            "Reserved memory: ..." and cma_declare_contiguous_nid()'s for the
            default area.
        reason: one line naming the kernel rule that decided.
        dt_pools: DT reserved-memory CMA areas that will be created.
        activates: False when ``cma_activate_area()`` will reject the area or
            crash on it (pages outside RAM: WARN in mm/cma.c, then an Oops).
        notes: other kernel messages the model expects (e.g. "Ignoring RAM").
        ranges: the default area's number of ranges (``cma->nranges``, mm/cma.h
            ``struct cma_memrange`` since 6.15): 1 when reserved (only
            cma_declare_contiguous_multi(), hugetlb_cma, makes more), else 0.
        printed_size: bytes the "Reserved" line reports when they differ from
            ``size`` (7.2 prints the unrounded size), else None.
        unbootable: why the guest cannot reach its initramfs shell ("" when it
            can), e.g. a ``mem=`` below the initrd QEMU loaded.
    """

    outcome: str
    size: int
    lo: int
    hi: int
    base: int | None
    log: tuple[str, ...]
    reason: str
    dt_pools: tuple[DtCmaPool, ...] = ()
    activates: bool = True
    notes: tuple[str, ...] = ()
    ranges: int = 0
    printed_size: int | None = None
    unbootable: str = ""

    @property
    def size_mib(self) -> int:
        """The size as the kernel prints it: ``(unsigned long)size / SZ_1M`` (``printed_size`` if set)."""
        size = self.size if self.printed_size is None else self.printed_size
        return (size & 0xFFFFFFFF) // SZ_1M

    def expectation(self) -> CmaExpectation:
        """The matrix-cell expectation this prediction amounts to (harness.checks)."""
        if self.outcome == "none":
            return CmaExpectation("none")
        return CmaExpectation(self.outcome, self.size_mib)


def describe(prediction: Prediction) -> str:
    """One line: the outcome, size (MiB) and placement (physical addresses) of a prediction."""
    p = prediction
    stop = f"; the guest cannot boot: {p.unbootable}" if p.unbootable else ""
    if p.outcome == "none":
        return "no default CMA area" + stop
    if p.outcome == "failed":
        return f"'Failed to reserve {p.size_mib} MiB'" + stop
    where = f"at {p.base:#x}" if p.base is not None else f"in [{p.lo:#x}, {p.hi:#x})"
    shown = f" (printed as {p.size_mib} MiB)" if p.printed_size is not None else ""
    return f"{(p.size & 0xFFFFFFFF) // SZ_1M} MiB{shown} {where}" + stop


# mm/cma.c and early_cma() print with pr_fmt "cma: "; rmem_cma_setup() has none.
_CMA_MSG = re.compile(r"\b(?:cma: |Reserved memory: ).*")


def check_against_oracle(prediction: Prediction, boot_log_text: str) -> tuple[bool, str]:
    """Compare a boot log's ``cma:`` lines with ``prediction``.

    Checks the default area (outcome, size, exact base or bounds), the DT CMA
    pools, and that every predicted ``cma:`` line appears in order.  The
    series' "command line:" lines are only required when the kernel printed at
    least one (an unpatched kernel prints none).

    Returns:
        ``(ok, message)``; on a mismatch the message shows both sides.
    """
    lines = boot_log_text.splitlines()
    report = parse_cma_lines(lines)
    seen = [m.group(0).rstrip() for line in lines if (m := _CMA_MSG.search(line))]
    p = prediction
    ok = _default_area_agrees(p, report)
    pools = sorted((x.base, (x.size & 0xFFFFFFFF) >> 20) for x in p.dt_pools)
    ok = ok and pools == sorted((x.base, x.size_mib) for x in report.dt_pools)
    expected = list(p.log)
    if not any(s.startswith("cma: command line:") for s in seen):
        expected = [s for s in expected
                    if not s.startswith(("cma: command line:", "cma: ignoring trailing"))]
    ok = ok and _in_order(expected, seen)
    if ok:
        return True, f"as the oracle predicted: {describe(p)}"
    return False, "\n".join([f"oracle predicted {describe(p)} ({p.reason})", "oracle expected:",
                             *(f"  {s}" for s in expected), "kernel printed:",
                             *(f"  {s}" for s in seen or ["(no cma: line)"])])


def _default_area_agrees(p: Prediction, report: CmaBootReport) -> bool:
    """The log's default-area lines match ``p``: outcome, MiB, and the exact base or the bounds."""
    got = [(r.size_mib, r.base) for r in report.reserved]
    if p.outcome == "reserved":
        return not report.failed and len(got) == 1 and got[0][0] == p.size_mib and (
            got[0][1] == p.base if p.base is not None
            else p.lo <= got[0][1] and got[0][1] + p.size <= p.hi)
    if p.outcome == "failed":
        return not got and report.failed == [p.size_mib]
    return not got and not report.failed


def _in_order(expected: list[str], seen: list[str]) -> bool:
    """Every line of ``expected`` is in ``seen``, in that order (other lines may come between)."""
    it = iter(seen)
    return all(any(s == want for s in it) for want in expected)

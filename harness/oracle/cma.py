"""CMA areas: mm/cma.c.

Mirrors cma_init_reserved_mem() (a slot, reserved memory, pageblock
alignment), cma_declare_contiguous_nid() (its checks in the kernel's order,
the rounding, and the fixed or ranged placement through memblock) and
cma_activate_area() (whether the area's pages are valid and in one zone);
7.2's split of the declaration into cma_fixed_reserve(), cma_alloc_mem() and
__cma_declare_contiguous_nid() is read from
:class:`~harness.oracle.versions.KernelQuirks`.  An area declared here always
has one range (``struct cma_memrange``, 7.2): only
cma_declare_contiguous_multi() (hugetlb_cma) makes more.
All addresses are physical and all sizes in bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.oracle.facts import PAGE_SIZE, SZ_4G, KernelFacts, align_up
from harness.oracle.state import BootState


@dataclass(frozen=True)
class Declared:
    """What cma_declare_contiguous_nid() did with the default area.

    Attributes:
        outcome: ``"reserved"``, ``"failed"`` or ``"none"`` (see
            :class:`~harness.oracle.verdict.Prediction`).
        size: bytes (rounded when reserved, as reported when failed).
        log: the lines it printed.
        reason: the kernel rule that decided.
        base, lo, hi: the area's base and the window it was placed in.
        printed: the bytes the "Reserved" line reports when they differ from
            ``size`` (7.2 prints the unrounded size), else None.
    """

    outcome: str
    size: int
    log: tuple[str, ...]
    reason: str
    base: int | None = None
    lo: int = 0
    hi: int = 0
    printed: int | None = None


def cma_init_reserved_mem(s: BootState, base: int, size: int) -> bool:
    """cma_init_reserved_mem() (mm/cma.c): a free slot, reserved memory, pageblock alignment.

    6.1/6.12 check the slot first (printing "Not enough slots"); 7.2's
    cma_new_area() checks it last, after the reservation and the alignment.
    """
    late_slot = s.k.quirks.cma_slot_checked_last
    if not late_slot and not _slot_free(s):
        return False
    if not size or not s.mb.is_region_reserved(base, size):
        return False
    if (base | size) % s.k.cma_min_alignment:
        return False
    if late_slot and not _slot_free(s):
        return False
    s.areas += 1
    return True


def _slot_free(s: BootState) -> bool:
    """``cma_area_count < MAX_CMA_AREAS``; prints "Not enough slots" when not."""
    if s.areas >= s.k.max_cma_areas:
        s.log.append("cma: Not enough slots for CMA reserved regions!")
        return False
    return True


def cma_declare(s: BootState, base: int, size: int, limit: int, fixed: bool) -> Declared:
    """cma_declare_contiguous_nid(base, size, limit, 0, 0, fixed, "reserved") (mm/cma.c).

    Order of the checks as in the kernel: slots; fixed base aligned to
    CMA_MIN_ALIGNMENT_BYTES (the failure then prints the *unrounded* size);
    base and size rounded up, limit down; ``base == 0`` makes it unfixed;
    a fixed region must not cross the lowmem/highmem boundary (7.2: only with
    HIGHMEM, after the limit check, in cma_fixed_reserve()); limit 0 or above
    memblock_end_of_DRAM() becomes the end of DRAM; ``base + size`` must not
    exceed limit; a fixed region must not overlap memblock.reserved (-EBUSY,
    no message of its own); a ranged one is allocated (cma_alloc_mem() in 7.2).
    Sizes (bytes) in the lines are rounded (6.1, 6.12) or as given (7.2).
    """
    k, mask = s.k, s.k.phys_mask
    align, memblock_end = k.cma_min_alignment, s.mb.end_of_dram()
    if s.areas >= k.max_cma_areas:
        return Declared("none", 0, ("cma: Not enough slots for CMA reserved regions!",),
                        f"cma_declare_contiguous_nid(): all {k.max_cma_areas} MAX_CMA_AREAS used")
    if fixed and base & (align - 1):
        return _fail(k, size, f"fixed base {k.pa(base)} is not aligned to CMA_MIN_ALIGNMENT_BYTES "
                     f"({k.pa(align)}); the message gives the unrounded size",
                     f"cma: Region at {k.pa(base)} must be aligned to {k.pa(align)} bytes")
    given = size
    base, size, limit = align_up(base, align) & mask, align_up(size, align) & mask, limit & ~(align - 1)
    shown = size if k.quirks.cma_log_rounded_size else given
    fixed = fixed and base != 0
    if not k.quirks.cma_boundary_check_late and _crosses(s, base, size, fixed):
        return _boundary_fail(s, base, size, shown)
    if limit == 0 or limit > memblock_end:
        limit = memblock_end
    if (base + size) & mask > limit:
        return _fail(k, shown, f"base + size is above the limit {k.pa(limit)} (the cmdline limit, "
                     "arm_dma_limit or memblock_end_of_DRAM())",
                     f"cma: Size ({k.pa(size)}) of region at {k.pa(base)} exceeds limit "
                     f"({k.pa(limit)})")
    if k.quirks.cma_boundary_check_late and k.highmem and _crosses(s, base, size, fixed):
        return _boundary_fail(s, base, size, shown)
    return _reserve(s, base, size, limit, fixed, memblock_end, shown)


def _crosses(s: BootState, base: int, size: int, fixed: bool) -> bool:
    """A fixed ``[base, base + size)`` (bytes) starts in lowmem and ends in highmem."""
    hs = s.lowmem_limit
    return fixed and base < hs and (base + size) & s.k.phys_mask > hs


def _boundary_fail(s: BootState, base: int, size: int, shown: int) -> Declared:
    """The "defined on low/high memory boundary" failure; ``shown`` is the size printed (bytes)."""
    k, hs = s.k, s.lowmem_limit
    return _fail(k, shown, f"fixed region crosses the lowmem/highmem boundary {k.pa(hs)}",
                 f"cma: Region at {k.pa(base)} defined on low/high memory boundary ({k.pa(hs)})")


def _reserve(s: BootState, base: int, size: int, limit: int, fixed: bool, memblock_end: int,
             shown: int) -> Declared:
    """The end of cma_declare_contiguous_nid(): place the checked, rounded region, then register it.

    A fixed region is memblock_reserve()d at ``base`` unless it overlaps
    memblock.reserved (-EBUSY); a ranged one is allocated by :func:`_place`
    (-ENOMEM); then cma_init_reserved_mem() and the "Reserved" line, which
    gives ``shown`` bytes.
    """
    k, mb, align = s.k, s.mb, s.k.cma_min_alignment
    if fixed:
        if mb.is_region_reserved(base, size):
            return _fail(k, shown, f"fixed region [{k.pa(base)}, +{size >> 20} MiB) overlaps "
                         "memblock.reserved (kernel, initrd, dtb or DT region): -EBUSY")
        mb.reserve(base, size)
        lo, hi, how = base, base + size, "fixed placement at the cmdline base"
    else:
        base, lo, hi = _place(s, base, size, limit, align, s.lowmem_limit, memblock_end)
        if not base:
            return _fail(k, shown, f"no free {size >> 20} MiB block aligned to {align >> 20} MiB "
                         f"in [{k.pa(lo)}, {k.pa(hi)}) (memblock top-down): -ENOMEM")
        how = f"memblock top-down in [{k.pa(lo)}, {k.pa(hi)})"
    if not cma_init_reserved_mem(s, base, size):
        mb.free(base, size)
        return _fail(k, shown, "cma_init_reserved_mem() refused the region")
    line = f"cma: Reserved {(shown & 0xFFFFFFFF) >> 20} MiB at {k.pa(base)}{_node(k)}"
    return Declared("reserved", size, (line,), f"cma_declare_contiguous_nid(): {how}", base, lo, hi,
                    None if shown == size else shown)


def _node(k: KernelFacts) -> str:
    """The ``on node %d`` ending of the Reserved/Failed lines (6.12 only): nid is NUMA_NO_NODE (-1)."""
    return " on node -1" if k.quirks.cma_log_node else ""


def _fail(k: KernelFacts, size: int, why: str, *lines: str) -> Declared:
    """A failed declaration: ``lines`` then "Failed to reserve <size> MiB"; ``why`` the reason."""
    failed = f"cma: Failed to reserve {(size & 0xFFFFFFFF) >> 20} MiB{_node(k)}"
    return Declared("failed", size, (*lines, failed), f"cma_declare_contiguous_nid(): {why}")


def _place(s: BootState, base: int, size: int, limit: int, align: int, hs: int,
           memblock_end: int) -> tuple[int, int, int]:
    """The ranged placement; returns ``(addr or 0, window lo, window hi)``.

    6.1: highmem ``[highmem_start, limit)`` first, then (LPAE, RAM above
    4 GiB + size) bottom-up from 4 GiB, which overwrites the highmem result
    (leaking it), then lowmem ``[base, highmem_start)``.  6.12: bottom-up
    from 4 GiB first, then highmem, then lowmem, each only if still unplaced
    (:attr:`~harness.oracle.versions.KernelQuirks.cma_above_4g_first`).
    """
    mb, k = s.mb, s.k
    above_4g = k.lpae and memblock_end >= SZ_4G + size
    above_4g_first = k.quirks.cma_above_4g_first
    addr, lo, hi = 0, base, limit
    if above_4g_first and above_4g:
        addr, lo = mb.alloc_range(size, align, SZ_4G, limit, bottom_up=True), SZ_4G
    if not addr and base < hs < limit:
        addr, lo, hi = mb.alloc_range(size, align, hs, limit), hs, limit
        limit = hs
    if not above_4g_first and above_4g:
        leaked = addr
        addr, lo, hi = mb.alloc_range(size, align, SZ_4G, limit, bottom_up=True), SZ_4G, limit
        if leaked and not addr:
            s.notes.append(f"6.1 leaks the highmem block at {k.pa(leaked)} (addr overwritten)")
    if not addr:
        addr, lo, hi = mb.alloc_range(size, align, base, limit), base, limit
    return addr, max(lo, PAGE_SIZE), hi


def cma_activates(s: BootState, base: int, size: int) -> bool:
    """cma_activate_area() (mm/cma.c): every pfn valid (ARM pfn_valid(): the
    pageblock overlaps memblock.memory) and in one zone."""
    block = PAGE_SIZE << s.k.pageblock_order
    start = base & ~(block - 1)
    if any(not s.mb.overlaps_memory(a, block) for a in range(start, base + size, block)):
        return False
    boundary = s.mb.current_limit
    return base + size <= boundary or base >= boundary

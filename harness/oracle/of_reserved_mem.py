"""The dtb's reserved memory: drivers/of/of_reserved_mem.c and drivers/of/fdt.c.

Mirrors early_init_fdt_scan_reserved_mem() (drivers/of/fdt.c: ``/memreserve/``
and fdt_scan_reserved_mem()), __reserved_mem_reserve_reg() with
early_init_dt_reserve_memory(), __reserved_mem_alloc_size() and 6.12's
__reserved_mem_alloc_in_range(), fdt_init_reserved_mem() (6.1, sorting with
__rmem_cmp()), 6.12's fdt_scan_reserved_mem_reg_nodes(), and
__reserved_mem_init_node() with its two ``shared-dma-pool`` handlers:
rmem_cma_setup() (:mod:`harness.oracle.contiguous`) and rmem_dma_setup()
(kernel/dma/coherent.c, here); 7.2's fdt_validate_reserved_mem_node() (the
handlers' ``node_validate`` before a region is reserved or allocated) and
fdt_scan_reserved_mem_late().  Where the versions differ is read from
:class:`~harness.oracle.versions.KernelQuirks`.  All addresses are physical
and all sizes in bytes.
"""

from __future__ import annotations

from harness.oracle.contiguous import EINVAL, ENODEV, rmem_cma_setup, rmem_cma_verify
from harness.oracle.inputs import DtReservedRegion
from harness.oracle.sort import kernel_heapsort
from harness.oracle.state import BootState, ReservedMem


def scan_reserved_mem(s: BootState) -> None:
    """early_init_fdt_scan_reserved_mem() (drivers/of/fdt.c), 6.1 or 6.12 order.

    6.1: /memreserve/, static regions in DT order, then fdt_init_reserved_mem()
    sorts all saved regions with lib/sort.c (dynamic ones have base 0 and come
    first; the heapsort is not stable) and allocates/initialises in that order.
    6.12: static regions, then dynamic ones allocated *and initialised* in DT
    order, then /memreserve/; static regions are initialised only later, by
    fdt_scan_reserved_mem_reg_nodes() from unflatten_device_tree().
    """
    q = s.k.quirks
    if q.memreserve_scanned_first:
        _memreserve(s)
    if not s.boot.dt_format_ok:
        s.notes.append("OF: reserved mem: Reserved memory: unsupported node format, ignoring")
    else:
        dynamic = []
        for region in s.boot.dt_regions:
            if region.has_reg and region.reg and not validate_node(s, region):
                continue  # 7.2: refused by its handler's node_validate, nothing reserved
            if region.has_reg:
                reserve_reg(s, region)
                if not q.reserved_mem_static_init_late and region.reg:
                    s.rmem.append(ReservedMem(region, *region.reg[0]))
            elif region.size is not None:
                dynamic.append(region)
                if q.reserved_mem_sorted_before_alloc:
                    s.rmem.append(ReservedMem(region, 0, 0))
        if q.reserved_mem_sorted_before_alloc:
            _init_sorted(s)
        else:
            _alloc_in_dt_order(s, dynamic)
    if not q.memreserve_scanned_first:
        _memreserve(s)


def _memreserve(s: BootState) -> None:
    """The dtb header's ``/memreserve/`` entries, memblock_reserve()d."""
    for entry in s.boot.memreserve:
        s.mb.reserve(entry.base, entry.size)


def _rmem_cmp(a: ReservedMem, b: ReservedMem) -> int:
    """__rmem_cmp(): by base, then by size."""
    x, y = (a.base, a.size), (b.base, b.size)
    return (x > y) - (x < y)


def _init_sorted(s: BootState) -> None:
    """6.1 fdt_init_reserved_mem(): sort the saved regions, allocate the dynamic ones, init each."""
    s.rmem = kernel_heapsort(s.rmem, _rmem_cmp)
    for entry in s.rmem:
        if entry.size == 0:
            got = alloc_dynamic(s, entry.region) if entry.region.size is not None else None
            if got is None:
                continue
            entry.base, entry.size = got.base, got.size
        init_node(s, entry)


def _alloc_in_dt_order(s: BootState, dynamic: list[DtReservedRegion]) -> None:
    """6.12/7.2 fdt_scan_reserved_mem(): each dynamic region allocated, saved and initialised in DT order.

    6.12 keeps every allocated region in ``reserved_mem[]`` (a later
    alloc-ranges region may settle next to it); 7.2 only those whose init did
    not fail (fdt_init_reserved_mem_node()).
    """
    for region in dynamic:
        entry = alloc_dynamic(s, region)
        if entry is None:
            continue
        s.rmem.append(entry)
        if not init_node(s, entry) and s.k.quirks.reserved_mem_validate_first:
            s.rmem.remove(entry)


def validate_node(s: BootState, region: DtReservedRegion) -> bool:
    """7.2 fdt_validate_reserved_mem_node() (drivers/of/of_reserved_mem.c): may it be reserved?

    Only rmem_cma_validate() has a ``node_validate`` hook: False when it
    returns neither 0 nor -ENODEV.  Always True before 7.2 (no such hook).
    """
    if not s.k.quirks.reserved_mem_validate_first or not region.shared_dma_pool:
        return True
    return rmem_cma_verify(s, region) in (0, ENODEV)


def fdt_scan_reserved_mem_reg_nodes(s: BootState) -> None:
    """6.12 fdt_scan_reserved_mem_reg_nodes() / 7.2 fdt_scan_reserved_mem_late(): static regions late.

    Called from unflatten_device_tree(), after arm_memblock_init(); a no-op
    where static regions are initialised during the early scan (6.1).  7.2
    validates each node again (:func:`validate_node`) and skips refused ones.
    """
    if not s.k.quirks.reserved_mem_static_init_late or not s.boot.dt_format_ok:
        return
    for region in s.boot.dt_regions:
        if region.has_reg and region.reg and validate_node(s, region) and region.reg[0][1]:
            init_node(s, ReservedMem(region, *region.reg[0]))


def reserve_reg(s: BootState, region: DtReservedRegion) -> None:
    """__reserved_mem_reserve_reg() with early_init_dt_reserve_memory() (drivers/of).

    Every ``<base size>`` of ``reg`` (bytes) is reserved, or marked no-map; in
    7.2 only the first, with a warning about the others.
    """
    entries = region.reg
    if s.k.quirks.reserved_mem_reg_first_only and len(entries) > 1:
        s.notes.append(f"OF: reserved mem: Reserved memory: node '{region.name}' has "
                       f"{len(entries)} <base size> entries, only the first is used")
        entries = entries[:1]
    for base, size in entries:
        ok = bool(size)
        if ok and region.no_map:
            busy = s.mb.overlaps_memory(base, size) and s.mb.is_region_reserved(base, size)
            ok = not busy
            if ok:
                s.mb.mark_nomap(base, size)
        elif ok:
            s.mb.reserve(base, size)
        if not ok:
            s.notes.append(f"OF: reserved mem: Reserved memory: failed to reserve memory for "
                           f"node '{region.name}': base {s.k.pa(base)}, size {size >> 20} MiB")


def alloc_dynamic(s: BootState, region: DtReservedRegion) -> ReservedMem | None:
    """__reserved_mem_alloc_size(): allocate a ``size``/``alignment``/``alloc-ranges`` region.

    Without alloc-ranges the range is ``[0, MEMBLOCK_ALLOC_ANYWHERE)``, so
    the region goes to the top of all RAM (highmem included), top-down.
    A reusable shared-dma-pool is aligned to at least CMA_MIN_ALIGNMENT_BYTES.
    """
    if not validate_node(s, region):
        return None  # 7.2: refused before any allocation
    size = region.size or 0
    align = region.alignment
    if region.shared_dma_pool and region.reusable and not region.no_map:
        align = max(align, s.k.cma_min_alignment)
    base = 0
    ranges = [(start, start + n) for start, n in region.alloc_ranges] or [(0, 0)]
    for start, end in ranges:
        bottom_up = _bottom_up_for(s, start, end) if region.alloc_ranges else False
        base = s.mb.alloc_range(size, align or s.k.smp_cache_bytes, start, end or s.mb.mask, bottom_up)
        if base:
            break
    if not base:
        s.notes.append(f"OF: reserved mem: failed to allocate memory for node "
                       f"'{region.name}': size {size >> 20} MiB")
        return None
    if region.no_map:
        s.mb.mark_nomap(base, size)
    return ReservedMem(region, base, size)


def _bottom_up_for(s: BootState, start: int, end: int) -> bool:
    """6.12 __reserved_mem_alloc_in_range(): bottom-up next to an earlier region's end."""
    if not s.k.quirks.reserved_mem_alloc_next_to_neighbour:
        return False
    bottom = any(e.size and e.base <= start <= e.base + e.size for e in s.rmem)
    top = any(e.size and e.base <= end <= e.base + e.size for e in s.rmem)
    return bottom if bottom != top else False


def init_node(s: BootState, entry: ReservedMem) -> bool:
    """__reserved_mem_init_node(): rmem_cma_setup(), then rmem_dma_setup() (link order).

    6.1/6.12 try the next handler after any error; 7.2 only after -ENODEV.
    A shared-dma-pool that ends in an error other than -ENODEV is given back
    ("compatible matching fail"); returns False then.  Other compatibles are
    taken as having no handler here (-ENOENT / -ENODEV).
    """
    region = entry.region
    if not region.shared_dma_pool:
        return True
    ret = rmem_cma_setup(s, entry)
    if ret and (ret == ENODEV or not s.k.quirks.reserved_mem_validate_first):
        ret = rmem_dma_setup(s, entry)
    if not ret or ret == ENODEV and s.k.quirks.reserved_mem_validate_first:
        return True
    s.notes.append(f"OF: reserved mem: node {region.name} compatible matching fail")
    if region.no_map:
        s.mb.clear_nomap(entry.base, entry.size)
    else:
        s.mb.free(entry.base, entry.size)
    return False


def rmem_dma_setup(s: BootState, entry: ReservedMem) -> int:
    """rmem_dma_setup() (kernel/dma/coherent.c): on ARM only a no-map, non-reusable pool; 0 or -errno.

    A reusable pool is -EINVAL (6.1, 6.12) or -ENODEV (7.2).
    """
    if entry.region.reusable:
        return ENODEV if s.k.quirks.reserved_mem_validate_first else EINVAL
    if not entry.region.no_map:
        s.notes.append("Reserved memory: regions without no-map are not yet supported")
        return EINVAL
    return 0

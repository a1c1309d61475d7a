"""32-bit ARM's memory setup: arch/arm/mm/mmu.c and arch/arm/mm/init.c.

Mirrors adjust_lowmem_bounds() (arch/arm/mm/mmu.c: the lowmem limit from
``vmalloc_size``, the memblock limit, "Ignoring RAM" without HIGHMEM) and
arm_memblock_init() (arch/arm/mm/init.c: the kernel image, the initrd with
reserve_initrd_mem() of init/initramfs.c, ``swapper_pg_dir``,
early_init_fdt_scan_reserved_mem(), then dma_contiguous_reserve(arm_dma_limit)).
All addresses are physical and all sizes in bytes.
"""

from __future__ import annotations

from harness.oracle.cma import Declared
from harness.oracle.contiguous import dma_contiguous_reserve
from harness.oracle.facts import PAGE_SIZE, PMD_SIZE, VMALLOC_END, VMALLOC_OFFSET, align_up
from harness.oracle.of_reserved_mem import scan_reserved_mem
from harness.oracle.state import BootState


def adjust_lowmem_bounds(s: BootState) -> int:
    """adjust_lowmem_bounds() (arch/arm/mm/mmu.c); returns arm_lowmem_limit.

    Lowmem ends at the physical address of ``VMALLOC_END - vmalloc_size -
    VMALLOC_OFFSET``; without HIGHMEM, RAM above it is removed ("Ignoring RAM").
    Sets memblock's current limit (``memblock_set_current_limit()``).
    """
    mb, k = s.mb, s.k
    vmalloc_limit = (VMALLOC_END - s.early.vmalloc_size - VMALLOC_OFFSET - k.page_offset
                     + s.boot.phys_offset)
    ranges = [(start, end) for start, end, nomap in mb.memory if not nomap]  # for_each_mem_range
    if ranges and ranges[0][0] % PMD_SIZE:
        mb.mark_nomap(ranges[0][0], align_up(ranges[0][0], PMD_SIZE) - ranges[0][0])
        ranges = [(start, end) for start, end, nomap in mb.memory if not nomap]
    lowmem_limit = memblock_limit = 0
    for start, end in ranges:
        if start >= vmalloc_limit:
            continue
        if end > lowmem_limit:
            lowmem_limit = min(vmalloc_limit, end)
        if not memblock_limit and start % PMD_SIZE:
            memblock_limit = start
        elif not memblock_limit and end % PMD_SIZE:
            memblock_limit = lowmem_limit
    memblock_limit = (memblock_limit or lowmem_limit) & ~(PMD_SIZE - 1)
    end_of_dram = mb.end_of_dram()
    if not k.highmem and end_of_dram > lowmem_limit:
        s.notes += [f"Ignoring RAM at {k.pa(memblock_limit)}-{k.pa(end_of_dram)}",
                    "Consider using a HIGHMEM enabled kernel."]
        mb.remove(memblock_limit, end_of_dram - memblock_limit)
    mb.current_limit = memblock_limit
    return lowmem_limit


def arm_memblock_init(s: BootState) -> Declared:
    """arm_memblock_init() (arch/arm/mm/init.c); returns what dma_contiguous_reserve() did.

    Reserves the kernel image and ``swapper_pg_dir``, the initrd
    (reserve_initrd_mem()), scans the dtb's reserved memory, then declares the
    default CMA area, whose lines are appended to ``s.log``.
    """
    boot = s.boot
    s.mb.reserve(boot.kernel_image.base, boot.kernel_image.size)
    reserve_initrd_mem(s)
    s.mb.reserve(boot.pgdir.base, boot.pgdir.size)
    scan_reserved_mem(s)
    declared = dma_contiguous_reserve(s)
    s.log += declared.log
    return declared


def reserve_initrd_mem(s: BootState) -> None:
    """reserve_initrd_mem() (init/initramfs.c): page-rounded, refused outside RAM or if taken."""
    initrd = s.boot.initrd
    if initrd is None or not initrd.size:
        return
    start = initrd.base & ~(PAGE_SIZE - 1)
    size = align_up(initrd.size + initrd.base - start, PAGE_SIZE)
    where = f"INITRD: 0x{start:08x}+0x{size:08x}"
    if not s.mb.is_region_memory(start, size):
        s.notes.append(f"{where} is not a memory region - disabling initrd")
    elif s.mb.is_region_reserved(start, size):
        s.notes.append(f"{where} overlaps in-use memory region - disabling initrd")
    else:
        s.mb.reserve(start, size)

"""The ``cma=`` oracle: what Linux on 32-bit ARM does with the default CMA area.

Given a board's RAM, the kernel's configuration and what sits in RAM when the
kernel starts (its image, the initrd and the dtb where QEMU put them, the dtb's
``/reserved-memory``), :func:`predict` replays the kernel's early boot for one
command line and says whether the default CMA area ("reserved") is reserved,
where, and with which ``cma:`` lines, or why it fails.  It follows the sources
of Linux 6.1 and 6.12 step by step:

* ``setup_arch()`` (arch/arm/kernel/setup.c): the dtb reserves itself, early
  parameters are parsed, ``adjust_lowmem_bounds()`` runs, then
  ``arm_memblock_init()`` and ``adjust_lowmem_bounds()`` once more;
* ``arm_memblock_init()`` (arch/arm/mm/init.c): kernel image, initrd,
  ``swapper_pg_dir``, ``early_init_fdt_scan_reserved_mem()``, then
  ``dma_contiguous_reserve(arm_dma_limit)``;
* ``early_cma()``, ``dma_contiguous_reserve()``, ``rmem_cma_setup()``
  (kernel/dma/contiguous.c), ``cma_declare_contiguous_nid()`` and
  ``cma_init_reserved_mem()`` (mm/cma.c);
* memblock's top-down allocator (mm/memblock.c).

All sizes are in bytes and all addresses are physical addresses in bytes.
Arithmetic on ``phys_addr_t`` wraps at 32 bits unless the kernel has LPAE, as
it does in the kernel.

Not modelled (an :class:`~harness.errors.InputError` says so when met):
``mem=`` on the command line and ``CONFIG_ZONE_DMA`` machines that declare a
``dma_zone_size``.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness.boards import Loader, MemoryBank
from harness.checks import CmaExpectation, parse_cma_lines
from harness.cmdline import memparse
from harness.errors import EnvironmentProblem, InputError

SZ_1M = 1 << 20
SZ_4G = 1 << 32
PAGE_SIZE = 4096
PMD_SIZE = 2 * SZ_1M  # arch/arm/include/asm/pgtable-{2,3}level.h: PMD_SHIFT 21
TEXT_OFFSET = 0x8000  # arch/arm/Makefile: textofs-y := 0x00008000
VMALLOC_END = 0xFF800000  # arch/arm/include/asm/pgtable.h
VMALLOC_OFFSET = 8 * SZ_1M
DEFAULT_VMALLOC_SIZE = 240 * SZ_1M  # arch/arm/mm/mmu.c: vmalloc_size
NUMA_NO_NODE = -1
QEMU_KERNEL_LOAD_ADDR = 0x10000  # hw/arm/boot.c: KERNEL_LOAD_ADDR
QEMU_DTB_PAD = 10000  # softmmu/device_tree.c load_device_tree(): (size + 10000) * 2

OUTCOMES = ("reserved", "failed", "none")
QEMU_LOADER = Loader()  # hw/arm/boot.c's rule: initrd at base + min(RAM / 2, 128 MiB), dtb 4 KiB-aligned


# --- inputs ------------------------------------------------------------------------


@dataclass(frozen=True)
class KernelFacts:
    """The configuration facts the CMA reservation depends on.

    Attributes:
        version: ``(6, 1)`` or ``(6, 12)``; selects the 6.1 or 6.12 code paths.
        page_offset: ``CONFIG_PAGE_OFFSET`` (virtual), from the VMSPLIT choice.
        highmem: ``CONFIG_HIGHMEM``.
        lpae: ``CONFIG_ARM_LPAE`` (64-bit ``phys_addr_t``).
        dma_cma: ``CONFIG_DMA_CMA``; without it there is no default area.
        cma_size_mbytes: ``CONFIG_CMA_SIZE_MBYTES`` (MiB).
        cma_size_sel: ``"mbytes"``, ``"percentage"``, ``"min"`` or ``"max"``.
        cma_size_percentage: ``CONFIG_CMA_SIZE_PERCENTAGE``.
        pageblock_order: so ``CMA_MIN_ALIGNMENT_BYTES`` is ``4096 << pageblock_order``.
        cma_areas: ``CONFIG_CMA_AREAS``.
        smp_cache_bytes: ``1 << CONFIG_ARM_L1_CACHE_SHIFT`` (default DT alignment).
        zone_dma: ``CONFIG_ZONE_DMA`` (then ``arm_dma_limit`` is 0xffffffff).
    """

    version: tuple[int, int]
    page_offset: int
    highmem: bool
    lpae: bool
    dma_cma: bool = True
    cma_size_mbytes: int = 16
    cma_size_sel: str = "mbytes"
    cma_size_percentage: int = 0
    pageblock_order: int = 10
    cma_areas: int = 8
    smp_cache_bytes: int = 64
    zone_dma: bool = False

    @property
    def phys_mask(self) -> int:
        """All ones in ``phys_addr_t`` (32 or 64 bits)."""
        return (1 << (64 if self.lpae else 32)) - 1

    @property
    def cma_min_alignment(self) -> int:
        """``CMA_MIN_ALIGNMENT_BYTES`` (include/linux/cma.h): one pageblock, in bytes."""
        return PAGE_SIZE << self.pageblock_order

    @property
    def max_cma_areas(self) -> int:
        """``MAX_CMA_AREAS``: ``1 + CONFIG_CMA_AREAS`` in 6.1, ``CONFIG_CMA_AREAS`` in 6.12."""
        return self.cma_areas + (1 if self.version < (6, 12) else 0)

    @property
    def arm_dma_limit(self) -> int:
        """``arm_dma_limit`` (arch/arm/mm/init.c, mm.h) for a DT machine without dma_zone_size."""
        return 0xFFFFFFFF if self.zone_dma else self.phys_mask

    def pa(self, value: int) -> str:
        """``value`` printed as the kernel's ``%pa`` does (zero-padded to phys_addr_t width)."""
        return f"0x{value:0{16 if self.lpae else 8}x}"


@dataclass(frozen=True)
class DtReservedRegion:
    """One available child of the dtb's ``/reserved-memory`` node, in DT order.

    Attributes:
        name: the node name, e.g. ``region-mfc-left``.
        compatible: the compatible strings.
        reg: static ``(base, size)`` pairs; empty for a dynamic region.
        has_reg: the node has a ``reg`` property (then it is static).
        size: a dynamic region's ``size`` property, or None.
        alignment: its ``alignment`` property, or 0.
        alloc_ranges: its ``alloc-ranges`` as ``(start, size)`` pairs.
        no_map: ``no-map`` is present.
        reusable: ``reusable`` is present.
        cma_default: ``linux,cma-default`` is present.
    """

    name: str
    compatible: tuple[str, ...] = ("shared-dma-pool",)
    reg: tuple[tuple[int, int], ...] = ()
    has_reg: bool = False
    size: int | None = None
    alignment: int = 0
    alloc_ranges: tuple[tuple[int, int], ...] = ()
    no_map: bool = False
    reusable: bool = False
    cma_default: bool = False

    @property
    def shared_dma_pool(self) -> bool:
        return "shared-dma-pool" in self.compatible


@dataclass(frozen=True)
class CmaBoot:
    """Everything about one boot except the command line.

    Attributes:
        ram: RAM banks as the kernel sees them (QEMU rewrites the dtb's memory node).
        kernel: the configuration facts.
        phys_offset: ``PHYS_OFFSET``, the physical address the kernel maps at ``page_offset``.
        kernel_image: ``[pa(_stext), pa(_end))`` as a bank (``KERNEL_START``..``KERNEL_END``).
        pgdir: ``swapper_pg_dir`` and ``SWAPPER_PG_DIR_SIZE``.
        initrd: where the boot loader put the initrd (unrounded), or None.
        dtb: the dtb as the kernel reserves it: address and ``fdt_totalsize()``.
        memreserve: the dtb header's ``/memreserve/`` entries.
        dt_regions: ``/reserved-memory`` children (available ones), in DT order.
        dt_format_ok: ``/reserved-memory`` passes ``__reserved_mem_check_root()``.
    """

    ram: tuple[MemoryBank, ...]
    kernel: KernelFacts
    phys_offset: int
    kernel_image: MemoryBank
    pgdir: MemoryBank
    initrd: MemoryBank | None
    dtb: MemoryBank
    memreserve: tuple[MemoryBank, ...] = ()
    dt_regions: tuple[DtReservedRegion, ...] = ()
    dt_format_ok: bool = True


# --- outputs -----------------------------------------------------------------------


@dataclass(frozen=True)
class DtCmaPool:
    """A DT ``reusable`` ``shared-dma-pool`` the kernel turned into a CMA area (bytes)."""

    name: str
    base: int
    size: int


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

    @property
    def size_mib(self) -> int:
        """The size as the kernel prints it: ``(unsigned long)size / SZ_1M``."""
        return (self.size & 0xFFFFFFFF) // SZ_1M

    def expectation(self) -> CmaExpectation:
        """The matrix-cell expectation this prediction amounts to (harness.checks)."""
        if self.outcome == "none":
            return CmaExpectation("none")
        return CmaExpectation(self.outcome, self.size_mib)


# --- memblock ----------------------------------------------------------------------


class _Memblock:
    """Just enough of mm/memblock.c: memory (with MEMBLOCK_NOMAP) and reserved ranges.

    Ranges are ``[start, end)`` lists kept sorted and merged as memblock merges
    neighbours with equal flags; addresses wrap at the ``phys_addr_t`` width.
    """

    def __init__(self, ram: tuple[MemoryBank, ...], mask: int) -> None:
        self.mask = mask
        self.memory: list[tuple[int, int, bool]] = []  # (start, end, nomap)
        self.reserved: list[tuple[int, int]] = []
        self.current_limit = mask  # MEMBLOCK_ALLOC_ANYWHERE
        for bank in ram:
            self.add(bank.base, bank.size)

    def _cap_end(self, base: int, size: int) -> int:
        """memblock_cap_size(): the end of ``[base, base + size)``, clipped to PHYS_ADDR_MAX."""
        return min(base + size, self.mask)

    def _split(self, start: int, end: int) -> list[tuple[int, int, bool, bool]]:
        """Memory regions cut at ``start`` and ``end``: ``(s, e, nomap, inside)``."""
        out = []
        for s, e, nomap in self.memory:
            for ps, pe in ((s, min(e, start)), (max(s, start), min(e, end)), (max(s, end), e)):
                if ps < pe:
                    out.append((ps, pe, nomap, start <= ps and pe <= end))
        return out

    def add(self, base: int, size: int) -> None:
        """memblock_add(): the parts of ``[base, base + size)`` not yet memory become memory."""
        start, end = base, self._cap_end(base, size)
        holes, cur = [], start
        for s, e, _ in self.memory:
            if e <= cur or s >= end:
                continue
            if s > cur:
                holes.append((cur, s, False))
            cur = max(cur, e)
        if cur < end:
            holes.append((cur, end, False))
        self.memory = _merge_flagged(self.memory + holes)

    def _flag(self, base: int, size: int, nomap: bool) -> None:
        end = self._cap_end(base, size)
        self.memory = _merge_flagged([(s, e, nomap if inside else f)
                                      for s, e, f, inside in self._split(base, end)])

    def mark_nomap(self, base: int, size: int) -> None:
        """memblock_mark_nomap(): flag the parts of ``[base, base + size)`` that are memory."""
        self._flag(base, size, True)

    def clear_nomap(self, base: int, size: int) -> None:
        """memblock_clear_nomap()."""
        self._flag(base, size, False)

    def remove(self, base: int, size: int) -> None:
        """memblock_remove()."""
        end = self._cap_end(base, size)
        self.memory = [(s, e, f) for s, e, f, inside in self._split(base, end) if not inside]

    def reserve(self, base: int, size: int) -> None:
        """memblock_reserve() (also outside memory, as the kernel allows)."""
        if size:
            self.reserved = _merge(self.reserved + [(base, self._cap_end(base, size))])

    def free(self, base: int, size: int) -> None:
        """memblock_phys_free()."""
        end = self._cap_end(base, size)
        self.reserved = [p for s, e in self.reserved
                         for p in ((s, min(e, base)), (max(s, end), e)) if p[0] < p[1]]

    def is_region_reserved(self, base: int, size: int) -> bool:
        """memblock_is_region_reserved(): does ``[base, base + size)`` overlap a reservation?"""
        end = self._cap_end(base, size)
        return any(s < end and base < e for s, e in self.reserved)

    def overlaps_memory(self, base: int, size: int) -> bool:
        end = self._cap_end(base, size)
        return any(s < end and base < e for s, e, _ in self.memory)

    def is_region_memory(self, base: int, size: int) -> bool:
        """memblock_is_region_memory(): is ``[base, base + size)`` inside one memory region?"""
        end = self._cap_end(base, size)  # regions of different flags are separate regions
        return any(s <= base and end <= e for s, e, _ in self.memory)

    def end_of_dram(self) -> int:
        """memblock_end_of_DRAM()."""
        return self.memory[-1][1] if self.memory else 0

    def phys_mem_size(self) -> int:
        return sum(e - s for s, e, _ in self.memory)

    def free_ranges(self) -> list[tuple[int, int]]:
        """for_each_free_mem_range(): memory minus reserved, NOMAP skipped, ascending."""
        out = []
        for s, e, nomap in self.memory:
            if nomap:
                continue
            cur = s
            for rs, re_ in self.reserved:
                if re_ <= cur or rs >= e:
                    continue
                if rs > cur:
                    out.append((cur, rs))
                cur = max(cur, re_)
            if cur < e:
                out.append((cur, e))
        return out

    def find_in_range(self, size: int, align: int, start: int, end: int, bottom_up: bool) -> int:
        """memblock_find_in_range_node() with __memblock_find_range_{top_down,bottom_up}()."""
        if end in (0, 1):  # MEMBLOCK_ALLOC_ACCESSIBLE, MEMBLOCK_ALLOC_NOLEAKTRACE
            end = self.current_limit
        start = max(start, PAGE_SIZE)  # avoid allocating the first page
        end = max(start, end)
        ranges = self.free_ranges()
        for this_start, this_end in (ranges if bottom_up else reversed(ranges)):
            this_start = min(max(this_start, start), end)
            this_end = min(max(this_end, start), end)
            if bottom_up:
                cand = _align_up(this_start, align) & self.mask
                if cand < this_end and this_end - cand >= size:
                    return cand
                continue
            if this_end < size:
                continue
            cand = (this_end - size) & ~(align - 1)
            if cand >= this_start:
                return cand
        return 0

    def alloc_range(self, size: int, align: int, start: int, end: int, bottom_up: bool = False) -> int:
        """memblock_alloc_range_nid() / memblock_phys_alloc_range(): find and reserve; 0 on failure."""
        found = self.find_in_range(size, align, start, end, bottom_up)
        if found:
            self.reserve(found, size)
        return found


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in sorted(ranges):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def _merge_flagged(ranges: list[tuple[int, int, bool]]) -> list[tuple[int, int, bool]]:
    out: list[tuple[int, int, bool]] = []
    for s, e, f in sorted(ranges):
        if out and s <= out[-1][1] and f == out[-1][2]:
            out[-1] = (out[-1][0], max(out[-1][1], e), f)
        else:
            out.append((s, e, f))
    return out


def _align_up(value: int, align: int) -> int:
    return (value + align - 1) & ~(align - 1)


# --- early parameters ----------------------------------------------------------------


@dataclass(frozen=True)
class EarlyParams:
    """What the early parameters of a command line leave in the kernel's variables.

    Attributes:
        cma_given: ``size_cmdline != -1``: a ``cma=`` with a value was seen.
        size, base, limit: ``size_cmdline``, ``base_cmdline``, ``limit_cmdline``
            (bytes, wrapped to phys_addr_t; they carry over between several ``cma=``).
        vmalloc_size: arch/arm/mm/mmu.c ``vmalloc_size`` in bytes.
        log: the ``cma:`` lines early_cma() prints (with the series' patch 0001).
        notes: other lines, e.g. early_vmalloc()'s warnings.
    """

    cma_given: bool
    size: int
    base: int
    limit: int
    vmalloc_size: int = DEFAULT_VMALLOC_SIZE
    log: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def _memparse64(text: str) -> tuple[int, str]:
    value, rest = memparse(text)
    return value & (2**64 - 1), rest  # simple_strtoull() and the shift wrap in u64


def parse_early_params(cmdline: str, kernel: KernelFacts) -> EarlyParams:
    """Run the early parameters ``cma`` and ``vmalloc`` of ``cmdline`` in order.

    Mirrors parse_early_param() (init/main.c, stopping at ``--`` as parse_args()
    does), early_cma() (kernel/dma/contiguous.c, as patched by the series to log
    its reading) and early_vmalloc() (arch/arm/mm/mmu.c).  Several ``cma=`` run
    early_cma() several times: base and limit survive a later ``cma=`` without
    ``@``, exactly as the kernel's static variables do.

    Raises:
        InputError: ``mem=`` is on the command line (not modelled).
    """
    mask = kernel.phys_mask
    size, base, limit = mask, 0, 0  # size_cmdline = -1
    vmalloc = DEFAULT_VMALLOC_SIZE
    log: list[str] = []
    notes: list[str] = []
    for word in cmdline.split():
        if word == "--":
            break
        name, eq, value = word.partition("=")
        if name == "mem" and eq:
            raise InputError(f"the cma= oracle does not model '{word}' (mem= rewrites the RAM map)")
        if name == "vmalloc" and eq:
            vmalloc, note = _early_vmalloc(value, kernel)
            notes += note
        if name != "cma":
            continue
        if not eq:
            log.append("cma: Config string not provided")
            continue
        size, rest = _memparse64(value)
        size &= mask
        if rest.startswith("@"):
            base, rest = _memparse64(rest[1:])
            base &= mask
            if rest.startswith("-"):
                limit, rest = _memparse64(rest[1:])
                limit &= mask
            else:
                limit = (base + size) & mask
        if rest:
            log.append(f'cma: ignoring trailing characters "{rest}" of cma=')
        log.append(f"cma: command line: size {kernel.pa(size)}, base {kernel.pa(base)}, "
                   f"limit {kernel.pa(limit)}")
    return EarlyParams(size != mask, size, base, limit, vmalloc, tuple(log), tuple(notes))


def _early_vmalloc(value: str, kernel: KernelFacts) -> tuple[int, list[str]]:
    """early_vmalloc() (arch/arm/mm/mmu.c): clamp to [16 MiB, VMALLOC_END - PAGE_OFFSET - 40 MiB]."""
    reserve = _memparse64(value)[0] & 0xFFFFFFFF  # unsigned long
    if reserve < 16 * SZ_1M:
        return 16 * SZ_1M, ["vmalloc area is too small, limiting to 16MiB"]
    vmalloc_max = VMALLOC_END - (kernel.page_offset + 32 * SZ_1M + VMALLOC_OFFSET)
    if reserve > vmalloc_max:
        return vmalloc_max, [f"vmalloc area is too big, limiting to {vmalloc_max >> 20}MiB"]
    return reserve, []


# --- the boot, step by step --------------------------------------------------------


@dataclass
class _Entry:
    """A ``struct reserved_mem`` being set up (drivers/of/of_reserved_mem.c)."""

    region: DtReservedRegion
    base: int
    size: int


@dataclass(frozen=True)
class _Declared:
    """What cma_declare_contiguous_nid() did."""

    outcome: str
    size: int
    log: tuple[str, ...]
    reason: str
    base: int | None = None
    lo: int = 0
    hi: int = 0


@dataclass
class _Boot:
    """The simulated kernel's state during setup_arch(); methods mirror kernel functions."""

    boot: CmaBoot
    early: EarlyParams
    mb: _Memblock
    lowmem_limit: int = 0
    areas: int = 0
    default_area: bool = False
    pools: list[DtCmaPool] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    rmem: list[_Entry] = field(default_factory=list)

    @property
    def k(self) -> KernelFacts:
        return self.boot.kernel

    def adjust_lowmem_bounds(self) -> int:
        """adjust_lowmem_bounds() (arch/arm/mm/mmu.c); returns arm_lowmem_limit.

        Lowmem ends at the physical address of ``VMALLOC_END - vmalloc_size -
        VMALLOC_OFFSET``; without HIGHMEM, RAM above it is removed ("Ignoring RAM").
        """
        mb, k = self.mb, self.k
        vmalloc_limit = (VMALLOC_END - self.early.vmalloc_size - VMALLOC_OFFSET - k.page_offset
                         + self.boot.phys_offset)
        ranges = [(s, e) for s, e, nomap in mb.memory if not nomap]  # for_each_mem_range
        if ranges and ranges[0][0] % PMD_SIZE:
            mb.mark_nomap(ranges[0][0], _align_up(ranges[0][0], PMD_SIZE) - ranges[0][0])
            ranges = [(s, e) for s, e, nomap in mb.memory if not nomap]
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
            self.notes += [f"Ignoring RAM at {k.pa(memblock_limit)}-{k.pa(end_of_dram)}",
                           "Consider using a HIGHMEM enabled kernel."]
            mb.remove(memblock_limit, end_of_dram - memblock_limit)
        mb.current_limit = memblock_limit
        return lowmem_limit

    def reserve_initrd_mem(self) -> None:
        """reserve_initrd_mem() (init/initramfs.c): page-rounded, refused outside RAM or if taken."""
        initrd = self.boot.initrd
        if initrd is None or not initrd.size:
            return
        start = initrd.base & ~(PAGE_SIZE - 1)
        size = _align_up(initrd.size + initrd.base - start, PAGE_SIZE)
        where = f"INITRD: 0x{start:08x}+0x{size:08x}"
        if not self.mb.is_region_memory(start, size):
            self.notes.append(f"{where} is not a memory region - disabling initrd")
        elif self.mb.is_region_reserved(start, size):
            self.notes.append(f"{where} overlaps in-use memory region - disabling initrd")
        else:
            self.mb.reserve(start, size)

    def reserve_reg(self, region: DtReservedRegion) -> None:
        """__reserved_mem_reserve_reg() with early_init_dt_reserve_memory() (drivers/of)."""
        for base, size in region.reg:
            ok = bool(size)
            if ok and region.no_map:
                busy = self.mb.overlaps_memory(base, size) and self.mb.is_region_reserved(base, size)
                ok = not busy
                if ok:
                    self.mb.mark_nomap(base, size)
            elif ok:
                self.mb.reserve(base, size)
            if not ok:
                self.notes.append(f"OF: reserved mem: Reserved memory: failed to reserve memory for "
                                  f"node '{region.name}': base {self.k.pa(base)}, size {size >> 20} MiB")

    def alloc_dynamic(self, region: DtReservedRegion) -> _Entry | None:
        """__reserved_mem_alloc_size(): allocate a ``size``/``alignment``/``alloc-ranges`` region.

        Without alloc-ranges the range is ``[0, MEMBLOCK_ALLOC_ANYWHERE)``, so
        the region goes to the top of all RAM (highmem included), top-down.
        A reusable shared-dma-pool is aligned to at least CMA_MIN_ALIGNMENT_BYTES.
        """
        size = region.size or 0
        align = region.alignment
        if region.shared_dma_pool and region.reusable and not region.no_map:
            align = max(align, self.k.cma_min_alignment)
        base = 0
        ranges = [(s, s + n) for s, n in region.alloc_ranges] or [(0, 0)]
        for start, end in ranges:
            bottom_up = self._bottom_up_for(start, end) if region.alloc_ranges else False
            base = self.mb.alloc_range(size, align or self.k.smp_cache_bytes, start,
                                       end or self.mb.mask, bottom_up)
            if base:
                break
        if not base:
            self.notes.append(f"OF: reserved mem: failed to allocate memory for node "
                              f"'{region.name}': size {size >> 20} MiB")
            return None
        if region.no_map:
            self.mb.mark_nomap(base, size)
        return _Entry(region, base, size)

    def _bottom_up_for(self, start: int, end: int) -> bool:
        """6.12 __reserved_mem_alloc_in_range(): bottom-up next to an earlier region's end."""
        if self.k.version < (6, 12):
            return False
        bottom = any(e.size and e.base <= start <= e.base + e.size for e in self.rmem)
        top = any(e.size and e.base <= end <= e.base + e.size for e in self.rmem)
        return bottom if bottom != top else False

    def init_node(self, entry: _Entry) -> None:
        """__reserved_mem_init_node(): rmem_cma_setup(), then rmem_dma_setup() (link order).

        A shared-dma-pool both refuse is given back ("compatible matching fail").
        Other compatibles are taken as having no handler here (-ENOENT).
        """
        region = entry.region
        if not region.shared_dma_pool:
            return
        if self.rmem_cma_setup(entry) or self.rmem_dma_setup(entry):
            return
        self.notes.append(f"OF: reserved mem: node {region.name} compatible matching fail")
        if region.no_map:
            self.mb.clear_nomap(entry.base, entry.size)
        else:
            self.mb.free(entry.base, entry.size)

    def rmem_cma_setup(self, entry: _Entry) -> bool:
        """rmem_cma_setup() (kernel/dma/contiguous.c): a reusable pool becomes a CMA area."""
        region, k = entry.region, self.k
        if self.early.cma_given and region.cma_default:
            self.log.append(f"Reserved memory: bypass {region.name} node, using cmdline CMA "
                            "params instead")
            return False
        if not region.reusable or region.no_map:
            return False
        if (entry.base | entry.size) % k.cma_min_alignment:
            self.log.append("Reserved memory: incorrect alignment of CMA region")
            return False
        if not self.cma_init_reserved_mem(entry.base, entry.size):
            self.log.append("Reserved memory: unable to setup CMA region")
            return False
        self.default_area = self.default_area or region.cma_default
        self.pools.append(DtCmaPool(region.name, entry.base, entry.size))
        self.log.append(f"Reserved memory: created CMA memory pool at {k.pa(entry.base)}, "
                        f"size {(entry.size & 0xFFFFFFFF) >> 20} MiB")
        return True

    def rmem_dma_setup(self, entry: _Entry) -> bool:
        """rmem_dma_setup() (kernel/dma/coherent.c): on ARM only a no-map, non-reusable pool."""
        if entry.region.reusable:
            return False
        if not entry.region.no_map:
            self.notes.append("Reserved memory: regions without no-map are not yet supported")
            return False
        return True

    def cma_init_reserved_mem(self, base: int, size: int) -> bool:
        """cma_init_reserved_mem() (mm/cma.c): a free slot, reserved memory, pageblock alignment."""
        if self.areas >= self.k.max_cma_areas:
            self.log.append("cma: Not enough slots for CMA reserved regions!")
            return False
        if not size or not self.mb.is_region_reserved(base, size):
            return False
        if (base | size) % self.k.cma_min_alignment:
            return False
        self.areas += 1
        return True

    def scan_reserved_mem(self) -> None:
        """early_init_fdt_scan_reserved_mem() (drivers/of/fdt.c), 6.1 or 6.12 order.

        6.1: /memreserve/, static regions in DT order, then fdt_init_reserved_mem()
        sorts all saved regions with lib/sort.c (dynamic ones have base 0 and come
        first; the heapsort is not stable) and allocates/initialises in that order.
        6.12: static regions, then dynamic ones allocated *and initialised* in DT
        order, then /memreserve/; static regions are initialised only later, by
        fdt_scan_reserved_mem_reg_nodes() from unflatten_device_tree().
        """
        old = self.k.version < (6, 12)
        if old:
            self._memreserve()
        if not self.boot.dt_format_ok:
            self.notes.append("OF: reserved mem: Reserved memory: unsupported node format, ignoring")
        else:
            dynamic = []
            for region in self.boot.dt_regions:
                if region.has_reg:
                    self.reserve_reg(region)
                    if old and region.reg:
                        self.rmem.append(_Entry(region, *region.reg[0]))
                elif region.size is not None:
                    dynamic.append(region)
                    if old:
                        self.rmem.append(_Entry(region, 0, 0))
            self._init_dt_61() if old else self._alloc_dt_612(dynamic)
        if not old:
            self._memreserve()

    def _memreserve(self) -> None:
        for entry in self.boot.memreserve:
            self.mb.reserve(entry.base, entry.size)

    def _init_dt_61(self) -> None:
        self.rmem = kernel_heapsort(self.rmem, lambda a, b: _cmp((a.base, a.size), (b.base, b.size)))
        for entry in self.rmem:
            if entry.size == 0:
                got = self.alloc_dynamic(entry.region) if entry.region.size is not None else None
                if got is None:
                    continue
                entry.base, entry.size = got.base, got.size
            self.init_node(entry)

    def _alloc_dt_612(self, dynamic: list[DtReservedRegion]) -> None:
        for region in dynamic:
            entry = self.alloc_dynamic(region)
            if entry is not None:
                self.rmem.append(entry)
                self.init_node(entry)

    def init_static_612(self) -> None:
        """6.12 fdt_scan_reserved_mem_reg_nodes(): static regions saved and initialised late."""
        if self.k.version < (6, 12) or not self.boot.dt_format_ok:
            return
        for region in self.boot.dt_regions:
            if region.has_reg and region.reg and region.reg[0][1]:
                self.init_node(_Entry(region, *region.reg[0]))

    # --- the default area: kernel/dma/contiguous.c and mm/cma.c --------------------

    def dma_contiguous_reserve(self) -> _Declared:
        """dma_contiguous_reserve(arm_dma_limit) (kernel/dma/contiguous.c).

        With ``cma=``: size, base and ``min_not_zero(limit, arm_dma_limit)``; fixed
        when ``base + size == limit``.  Without: the Kconfig size.  Nothing is
        reserved for size 0 or when a DT ``linux,cma-default`` pool already is
        the default area.
        """
        k, e = self.k, self.early
        if not k.dma_cma:
            return _Declared("none", 0, (), "CONFIG_DMA_CMA is not set: no default CMA area")
        if e.cma_given:
            size, base, fixed = e.size, e.base, (e.base + e.size) & k.phys_mask == e.limit
            limit = _min_not_zero(e.limit, k.arm_dma_limit)
            if not size:
                return _Declared("none", 0, (), "dma_contiguous_reserve(): early_cma() read size 0 "
                                 "(memparse() stops at the first bad character; phys_addr_t "
                                 "truncates), so no default area")
        else:
            size, base, limit, fixed = self._config_size(), 0, k.arm_dma_limit, False
            if not size:
                return _Declared("none", 0, (), "dma_contiguous_reserve(): the Kconfig size is 0")
        if self.default_area:
            return _Declared("none", 0, (), "dma_contiguous_reserve(): a DT linux,cma-default pool "
                             "already is dma_contiguous_default_area")
        return self.cma_declare(base, size, limit, fixed)

    def _config_size(self) -> int:
        """CONFIG_CMA_SIZE_SEL_*: MiB, percentage of memblock_phys_mem_size(), min or max."""
        k = self.k
        mbytes = (k.cma_size_mbytes * SZ_1M) & k.phys_mask
        percent = ((self.mb.phys_mem_size() >> 12) * k.cma_size_percentage // 100) << 12
        return {"mbytes": mbytes, "percentage": percent, "min": min(mbytes, percent),
                "max": max(mbytes, percent)}[k.cma_size_sel]

    def cma_declare(self, base: int, size: int, limit: int, fixed: bool) -> _Declared:
        """cma_declare_contiguous_nid(base, size, limit, 0, 0, fixed, "reserved") (mm/cma.c).

        Order of the checks as in the kernel: slots; fixed base aligned to
        CMA_MIN_ALIGNMENT_BYTES (the failure then prints the *unrounded* size);
        base and size rounded up, limit down; ``base == 0`` makes it unfixed;
        a fixed region must not cross the lowmem/highmem boundary; limit 0 or
        above memblock_end_of_DRAM() becomes the end of DRAM; ``base + size``
        must not exceed limit; a fixed region must not overlap memblock.reserved
        (-EBUSY, no message of its own); a ranged one is allocated top-down.
        """
        k, mb, mask = self.k, self.mb, self.k.phys_mask
        align, hs, memblock_end = k.cma_min_alignment, self.lowmem_limit, mb.end_of_dram()
        if self.areas >= k.max_cma_areas:
            return _Declared("none", 0, ("cma: Not enough slots for CMA reserved regions!",),
                             f"cma_declare_contiguous_nid(): all {k.max_cma_areas} MAX_CMA_AREAS used")
        if fixed and base & (align - 1):
            return self._fail(size, f"fixed base {k.pa(base)} is not aligned to CMA_MIN_ALIGNMENT_BYTES "
                              f"({k.pa(align)}); the message gives the unrounded size",
                              f"cma: Region at {k.pa(base)} must be aligned to {k.pa(align)} bytes")
        base, size, limit = _align_up(base, align) & mask, _align_up(size, align) & mask, limit & ~(align - 1)
        fixed = fixed and base != 0
        if fixed and base < hs and (base + size) & mask > hs:
            return self._fail(size, f"fixed region crosses the lowmem/highmem boundary {k.pa(hs)}",
                              f"cma: Region at {k.pa(base)} defined on low/high memory boundary "
                              f"({k.pa(hs)})")
        if limit == 0 or limit > memblock_end:
            limit = memblock_end
        if (base + size) & mask > limit:
            return self._fail(size, f"base + size is above the limit {k.pa(limit)} (the cmdline limit, "
                              "arm_dma_limit or memblock_end_of_DRAM())",
                              f"cma: Size ({k.pa(size)}) of region at {k.pa(base)} exceeds limit "
                              f"({k.pa(limit)})")
        if fixed:
            if mb.is_region_reserved(base, size):
                return self._fail(size, f"fixed region [{k.pa(base)}, +{size >> 20} MiB) overlaps "
                                  "memblock.reserved (kernel, initrd, dtb or DT region): -EBUSY")
            mb.reserve(base, size)
            lo, hi, how = base, base + size, "fixed placement at the cmdline base"
        else:
            base, lo, hi = self._place(base, size, limit, align, hs, memblock_end)
            if not base:
                return self._fail(size, f"no free {size >> 20} MiB block aligned to {align >> 20} MiB "
                                  f"in [{k.pa(lo)}, {k.pa(hi)}) (memblock top-down): -ENOMEM")
            how = f"memblock top-down in [{k.pa(lo)}, {k.pa(hi)})"
        if not self.cma_init_reserved_mem(base, size):
            mb.free(base, size)
            return self._fail(size, "cma_init_reserved_mem() refused the region")
        node = " on node -1" if k.version >= (6, 12) else ""
        line = f"cma: Reserved {(size & 0xFFFFFFFF) >> 20} MiB at {k.pa(base)}{node}"
        return _Declared("reserved", size, (line,), f"cma_declare_contiguous_nid(): {how}", base, lo, hi)

    def _fail(self, size: int, why: str, *lines: str) -> _Declared:
        node = " on node -1" if self.k.version >= (6, 12) else ""
        failed = f"cma: Failed to reserve {(size & 0xFFFFFFFF) >> 20} MiB{node}"
        return _Declared("failed", size, (*lines, failed), f"cma_declare_contiguous_nid(): {why}")

    def _place(self, base: int, size: int, limit: int, align: int, hs: int,
               memblock_end: int) -> tuple[int, int, int]:
        """The ranged placement; returns ``(addr or 0, window lo, window hi)``.

        6.1: highmem ``[highmem_start, limit)`` first, then (LPAE, RAM above
        4 GiB + size) bottom-up from 4 GiB, which overwrites the highmem result
        (leaking it), then lowmem ``[base, highmem_start)``.  6.12: bottom-up
        from 4 GiB first, then highmem, then lowmem, each only if still unplaced.
        """
        mb, k = self.mb, self.k
        above_4g = k.lpae and memblock_end >= SZ_4G + size
        addr, lo, hi = 0, base, limit
        if k.version >= (6, 12) and above_4g:
            addr, lo = mb.alloc_range(size, align, SZ_4G, limit, bottom_up=True), SZ_4G
        if not addr and base < hs < limit:
            addr, lo, hi = mb.alloc_range(size, align, hs, limit), hs, limit
            limit = hs
        if k.version < (6, 12) and above_4g:
            leaked = addr
            addr, lo, hi = mb.alloc_range(size, align, SZ_4G, limit, bottom_up=True), SZ_4G, limit
            if leaked and not addr:
                self.notes.append(f"6.1 leaks the highmem block at {k.pa(leaked)} (addr overwritten)")
        if not addr:
            addr, lo, hi = mb.alloc_range(size, align, base, limit), base, limit
        return addr, max(lo, PAGE_SIZE), hi

    def activates(self, base: int, size: int) -> bool:
        """cma_activate_area() (mm/cma.c): every pfn valid (ARM pfn_valid(): the
        pageblock overlaps memblock.memory) and in one zone."""
        block = PAGE_SIZE << self.k.pageblock_order
        start = base & ~(block - 1)
        if any(not self.mb.overlaps_memory(a, block) for a in range(start, base + size, block)):
            return False
        boundary = self.mb.current_limit
        return base + size <= boundary or base >= boundary


def _min_not_zero(a: int, b: int) -> int:
    return b if a == 0 else a if b == 0 else min(a, b)


def _cmp(a: tuple[int, int], b: tuple[int, int]) -> int:
    return (a > b) - (a < b)


def kernel_heapsort(items: list[_Entry], cmp: Callable[[_Entry, _Entry], int]) -> list[_Entry]:
    """lib/sort.c sort_r() of Linux 6.1: a bottom-up heapsort, *not* stable.

    ``__rmem_cmp()`` ties every dynamic region (base 0, size 0), so their order
    after fdt_init_reserved_mem()'s sort is whatever this heapsort leaves:
    two dynamic regions come out swapped (smdkv310: region-mfc-right first).
    """
    a = list(items)
    n, ia = len(a), len(a) // 2
    if not ia:
        return a
    while True:
        if ia:
            ia -= 1
        else:
            n -= 1
            if not n:
                break
            a[0], a[n] = a[n], a[0]
        b = ia
        while True:
            c, d = 2 * b + 1, 2 * b + 2
            if d >= n:
                break
            b = c if cmp(a[c], a[d]) >= 0 else d
        if d == n:
            b = c
        while b != ia and cmp(a[ia], a[b]) >= 0:
            b = (b - 1) // 2
        c = b
        while b != ia:
            b = (b - 1) // 2
            a[b], a[c] = a[c], a[b]
    return a


# --- the oracle ----------------------------------------------------------------------


def predict(cmdline: str, boot: CmaBoot) -> Prediction:
    """Predict the default CMA area (and DT CMA pools) for the full kernel ``cmdline``.

    Replays setup_arch() (arch/arm/kernel/setup.c): the dtb reserves itself,
    parse_early_param(), adjust_lowmem_bounds(), arm_memblock_init()
    (arch/arm/mm/init.c: kernel image, initrd, swapper_pg_dir, DT reserved
    memory, dma_contiguous_reserve(arm_dma_limit)), adjust_lowmem_bounds() again.

    Raises:
        InputError: the command line uses something not modelled (``mem=``).
    """
    early = parse_early_params(cmdline, boot.kernel)
    sim = _Boot(boot, early, _Memblock(boot.ram, boot.kernel.phys_mask), log=list(early.log),
                notes=list(early.notes))
    sim.mb.reserve(boot.dtb.base, boot.dtb.size)
    sim.lowmem_limit = sim.adjust_lowmem_bounds()
    sim.mb.reserve(boot.kernel_image.base, boot.kernel_image.size)
    sim.reserve_initrd_mem()
    sim.mb.reserve(boot.pgdir.base, boot.pgdir.size)
    sim.scan_reserved_mem()
    declared = sim.dma_contiguous_reserve()
    sim.log += declared.log
    sim.adjust_lowmem_bounds()
    sim.init_static_612()
    activates = True
    if declared.base is not None:
        activates = sim.activates(declared.base, declared.size)
        if not activates:
            sim.notes.append("cma_activate_area() meets pages outside RAM or in two zones: "
                             "WARN_ON_ONCE(!pfn_valid()) in mm/cma.c, then likely an Oops")
    return Prediction(declared.outcome, declared.size, declared.lo, declared.hi, declared.base,
                      tuple(sim.log), declared.reason, tuple(sim.pools), activates, tuple(sim.notes))


def describe(prediction: Prediction) -> str:
    """One line: the outcome, size and placement of a prediction."""
    p = prediction
    if p.outcome == "none":
        return "no default CMA area"
    if p.outcome == "failed":
        return f"'Failed to reserve {p.size_mib} MiB'"
    where = f"at {p.base:#x}" if p.base is not None else f"in [{p.lo:#x}, {p.hi:#x})"
    return f"{p.size_mib} MiB {where}"


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
    got = [(r.size_mib, r.base) for r in report.reserved]
    if p.outcome == "reserved":
        ok = not report.failed and len(got) == 1 and got[0][0] == p.size_mib and (
            got[0][1] == p.base if p.base is not None
            else p.lo <= got[0][1] and got[0][1] + p.size <= p.hi)
    elif p.outcome == "failed":
        ok = not got and report.failed == [p.size_mib]
    else:
        ok = not got and not report.failed
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


def _in_order(expected: list[str], seen: list[str]) -> bool:
    it = iter(seen)
    return all(any(s == want for s in it) for want in expected)


# --- building a CmaBoot from files -----------------------------------------------------


def kernel_facts_from_config(config_text: str, release: str) -> KernelFacts:
    """Read the facts that matter from a kernel ``.config`` (``release`` e.g. ``"6.1.176"``).

    pageblock_order follows include/linux/pageblock-flags.h: with HUGETLB_PAGE
    (or, in 6.12, TRANSPARENT_HUGEPAGE), both LPAE-only on ARM, it is
    min(9, top); otherwise top, where top is MAX_ORDER - 1 in 6.1 and
    MAX_PAGE_ORDER in 6.12 (both from ARCH_FORCE_MAX_ORDER).

    Raises:
        InputError: the release is not 6.1 or 6.12, or PAGE_OFFSET is missing.
    """
    m = re.match(r"(\d+)\.(\d+)", release)
    version = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
    if version not in ((6, 1), (6, 12)):
        raise InputError(f"the cma= oracle models Linux 6.1 and 6.12, not {release!r}")
    cfg = dict(re.findall(r"^CONFIG_(\w+)=(.*)$", config_text, re.M))
    if "PAGE_OFFSET" not in cfg:
        raise InputError("kernel config has no CONFIG_PAGE_OFFSET (not a 32-bit ARM MMU kernel?)")

    def on(name: str) -> bool:
        return cfg.get(name) == "y"

    max_order = int(cfg.get("ARCH_FORCE_MAX_ORDER", "11" if version < (6, 12) else "10"))
    top = max_order - 1 if version < (6, 12) else max_order
    huge = on("HUGETLB_PAGE") or (version >= (6, 12) and on("TRANSPARENT_HUGEPAGE"))
    sel = next((s.lower() for s in ("MBYTES", "PERCENTAGE", "MIN", "MAX") if on(f"CMA_SIZE_SEL_{s}")),
               "mbytes")
    return KernelFacts(
        version=version, page_offset=int(cfg["PAGE_OFFSET"], 0), highmem=on("HIGHMEM"),
        lpae=on("ARM_LPAE"), dma_cma=on("DMA_CMA"),
        cma_size_mbytes=int(cfg.get("CMA_SIZE_MBYTES", "0")), cma_size_sel=sel,
        cma_size_percentage=int(cfg.get("CMA_SIZE_PERCENTAGE", "0")),
        pageblock_order=min(9, top) if huge else top, cma_areas=int(cfg.get("CMA_AREAS", "7")),
        smp_cache_bytes=1 << int(cfg.get("ARM_L1_CACHE_SHIFT", "6")), zone_dma=on("ZONE_DMA"))


def system_map_symbols(text: str, names: tuple[str, ...] = ("_stext", "_end", "_sdata",
                                                              "swapper_pg_dir")) -> dict[str, int]:
    """Addresses (virtual) of ``names`` in a System.map."""
    found = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] in names:
            found[parts[2]] = int(parts[0], 16)
    return found


@dataclass(frozen=True)
class DtInfo:
    """What a dtb says about reserved memory (see :class:`CmaBoot`)."""

    regions: tuple[DtReservedRegion, ...]
    memreserve: tuple[MemoryBank, ...]
    format_ok: bool


def _fdtget(dtb: Path, option: str, node: str, prop: str | None = None) -> str | None:
    """``fdtget OPTION DTB NODE [PROP]`` output, or None when the node/property is absent.

    ``option`` is ``-l`` (subnodes), ``-p`` (property names), ``-tu`` (u32
    cells, decimal) or ``-ts`` (strings, space separated).

    Raises:
        EnvironmentProblem: fdtget (Debian device-tree-compiler) is not installed.
    """
    argv = ["fdtget", option, str(dtb), node, *([prop] if prop is not None else [])]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise EnvironmentProblem("fdtget not found: install device-tree-compiler") from exc
    return out.stdout.strip() if out.returncode == 0 else None


def _cells(values: str | None, cells: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Group u32 cells into numbers of ``cells`` widths, e.g. ``(2, 2)`` for (address, size)."""
    words = [int(w) for w in (values or "").split()]
    out, step = [], sum(cells)
    for i in range(0, len(words) - step + 1, step):
        group, pos = [], i
        for width in cells:
            value = 0
            for w in words[pos:pos + width]:
                value = (value << 32) | w
            group.append(value)
            pos += width
        out.append(tuple(group))
    return out


def read_reserved_memory(dtb: Path) -> DtInfo:
    """``/reserved-memory`` and ``/memreserve/`` of ``dtb``, via fdtget and dtc.

    Children with a ``status`` other than "okay"/"ok" are left out, as
    of_fdt_device_is_available() does.

    Raises:
        EnvironmentProblem: fdtget or dtc is not installed.
    """
    acells = int(_fdtget(dtb, "-tu", "/", "#address-cells") or 1)
    scells = int(_fdtget(dtb, "-tu", "/", "#size-cells") or 1)
    memreserve = tuple(MemoryBank(int(b, 16), int(s, 16)) for b, s in re.findall(
        r"^/memreserve/\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+);", _dtc(dtb), re.M))
    children = _fdtget(dtb, "-l", "/reserved-memory")
    if children is None:
        return DtInfo((), memreserve, True)
    root_props = (_fdtget(dtb, "-p", "/reserved-memory") or "").split()
    format_ok = ("ranges" in root_props
                 and _fdtget(dtb, "-tu", "/reserved-memory", "#address-cells") == str(acells)
                 and _fdtget(dtb, "-tu", "/reserved-memory", "#size-cells") == str(scells))
    regions = []
    for name in children.split():
        node = f"/reserved-memory/{name}"
        props = set((_fdtget(dtb, "-p", node) or "").split())
        if "status" in props and _fdtget(dtb, "-ts", node, "status") not in ("okay", "ok"):
            continue
        size = _cells(_fdtget(dtb, "-tu", node, "size"), (scells,))
        align = _cells(_fdtget(dtb, "-tu", node, "alignment"), (acells,))
        regions.append(DtReservedRegion(
            name=name, compatible=tuple((_fdtget(dtb, "-ts", node, "compatible") or "").split()),
            reg=tuple((b, s) for b, s in _cells(_fdtget(dtb, "-tu", node, "reg"), (acells, scells))),
            has_reg="reg" in props, size=size[0][0] if size else None,
            alignment=align[0][0] if align else 0,
            alloc_ranges=tuple((b, s) for b, s in _cells(_fdtget(dtb, "-tu", node, "alloc-ranges"),
                                                          (acells, scells))),
            no_map="no-map" in props, reusable="reusable" in props,
            cma_default="linux,cma-default" in props))
    return DtInfo(tuple(regions), memreserve, format_ok)


def _dtc(dtb: Path) -> str:
    try:
        out = subprocess.run(["dtc", "-q", "-I", "dtb", "-O", "dts", str(dtb)], capture_output=True,
                             text=True, check=False)
    except FileNotFoundError as exc:
        raise EnvironmentProblem("dtc not found: install device-tree-compiler") from exc
    return out.stdout


@dataclass(frozen=True)
class QemuLoad:
    """Where QEMU's hw/arm/boot.c puts a 32-bit Linux boot (physical addresses, bytes).

    Attributes:
        zimage: at ``loader_start + KERNEL_LOAD_ADDR`` (0x10000), its file size.
        initrd: at ``loader_start + min(ram_size / 2, 128 MiB)`` (at least past
            the zImage), page-aligned; its file size.
        dtb: right after the initrd, 4 KiB aligned; size is ``fdt_totalsize()``,
            which load_device_tree() makes ``(file size + 10000) * 2``.
    """

    zimage: MemoryBank
    initrd: MemoryBank
    dtb: MemoryBank


def qemu_arm_load(ram: tuple[MemoryBank, ...], zimage_size: int, initrd_size: int,
                  dtb_file_size: int, dtb_total_size: int | None = None,
                  loader: Loader = QEMU_LOADER) -> QemuLoad:
    """Apply arm_setup_direct_kernel_boot()'s rules (QEMU 7.2) to a RAM map.

    ``dtb_total_size`` overrides the computed ``fdt_totalsize()`` (machines
    such as ``virt`` generate their dtb instead of loading a file).  ``loader``
    is the board's ``[loader]`` table: the initrd goes at RAM base +
    ``min(ram / 2, loader.initrd_offset)``, the dtb after it aligned to
    ``loader.dtb_align``.
    """
    loader_start = ram[0].base
    ram_size = sum(bank.size for bank in ram)
    zimage = MemoryBank(loader_start + QEMU_KERNEL_LOAD_ADDR, zimage_size)
    initrd_start = max(loader_start + min(ram_size // 2, loader.initrd_offset), zimage.base + zimage_size)
    initrd_start = _align_up(initrd_start, PAGE_SIZE)
    dtb_start = _align_up(initrd_start + initrd_size, loader.dtb_align)
    total = dtb_total_size if dtb_total_size is not None else (dtb_file_size + QEMU_DTB_PAD) * 2
    return QemuLoad(zimage, MemoryBank(initrd_start, initrd_size), MemoryBank(dtb_start, total))


def decompressor_phys_offset(ram: tuple[MemoryBank, ...], zimage_base: int) -> int:
    """PHYS_OFFSET a multi-platform (AUTO_ZRELADDR) zImage picks.

    arch/arm/boot/compressed/head.S masks the zImage's address with 0xf8000000;
    fdt_check_mem_start() keeps that if it lies in a memory bank, otherwise
    takes the lowest bank rounded up to 2 MiB.
    """
    start = zimage_base & 0xF8000000
    if any(b.base <= start < b.base + b.size for b in ram):
        return start
    return _align_up(min(b.base for b in ram), 2 * SZ_1M)


def boot_from_files(*, ram: tuple[MemoryBank, ...], release: str, config: Path, system_map: Path,
                    dtb: Path, initrd: Path | int | None, zimage: Path,
                    dtb_total_size: int | None = None, loader: Loader = QEMU_LOADER) -> CmaBoot:
    """Build a :class:`CmaBoot` from a built kernel and the files QEMU boots.

    ``ram`` is the board's RAM map (QEMU replaces the dtb's memory node with
    it); ``config`` the kernel ``.config``; ``system_map`` its System.map
    (``_stext``/``_end`` give KERNEL_START/KERNEL_END, ``_sdata`` for XIP);
    ``initrd`` is the initrd file or its size in bytes (None: no initrd); the
    initrd and dtb are placed by :func:`qemu_arm_load`.

    Raises:
        InputError: an unsupported kernel, or System.map lacks a symbol.
        EnvironmentProblem: fdtget or dtc is missing.
        OSError: a file cannot be read.
    """
    facts = kernel_facts_from_config(config.read_text(), release)
    syms = system_map_symbols(system_map.read_text())
    xip = "CONFIG_XIP_KERNEL=y" in config.read_text()
    start_sym = "_sdata" if xip else "_stext"
    missing = [s for s in (start_sym, "_end", "swapper_pg_dir") if s not in syms]
    if missing:
        raise InputError(f"{system_map}: no symbol {', '.join(missing)}")
    initrd_size = initrd.stat().st_size if isinstance(initrd, Path) else initrd or 0
    load = qemu_arm_load(ram, zimage.stat().st_size, initrd_size, dtb.stat().st_size, dtb_total_size,
                         loader)
    phys_offset = decompressor_phys_offset(ram, load.zimage.base)

    def pa(virt: int) -> int:
        return virt - facts.page_offset + phys_offset

    info = read_reserved_memory(dtb)
    pgdir_size = 0x5000 if facts.lpae else 0x4000  # SWAPPER_PG_DIR_SIZE (arch/arm/mm/mmu.c)
    return CmaBoot(
        ram=ram, kernel=facts, phys_offset=phys_offset,
        kernel_image=MemoryBank(pa(syms[start_sym]), syms["_end"] - syms[start_sym]),
        pgdir=MemoryBank(pa(syms["swapper_pg_dir"]), pgdir_size),
        initrd=load.initrd if initrd is not None else None, dtb=load.dtb, memreserve=info.memreserve,
        dt_regions=info.regions, dt_format_ok=info.format_ok)

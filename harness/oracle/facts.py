"""The kernel's configuration and constants: what a ``.config`` and System.map say.

Mirrors the headers and Kconfig the CMA reservation depends on:
include/linux/cma.h (``MAX_CMA_AREAS``, ``CMA_MIN_ALIGNMENT_BYTES``),
include/linux/pageblock-flags.h (``pageblock_order``), arch/arm/Kconfig
(``ARCH_FORCE_MAX_ORDER``, ``PAGE_OFFSET``), arch/arm/mm/init.c
(``arm_dma_limit``) and the ARM page-table and vmalloc constants.  The facts
that differ between kernel versions come from :mod:`harness.oracle.versions`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.errors import InputError
from harness.oracle.versions import KernelQuirks, UnmodelledKernel, quirks_for

SZ_1M = 1 << 20
SZ_4G = 1 << 32
PAGE_SIZE = 4096
PMD_SIZE = 2 * SZ_1M  # arch/arm/include/asm/pgtable-{2,3}level.h: PMD_SHIFT 21
VMALLOC_END = 0xFF800000  # arch/arm/include/asm/pgtable.h
VMALLOC_OFFSET = 8 * SZ_1M
DEFAULT_VMALLOC_SIZE = 240 * SZ_1M  # arch/arm/mm/mmu.c: vmalloc_size


def align_up(value: int, align: int) -> int:
    """The kernel's ``ALIGN(value, align)``: ``value`` rounded up to a power-of-two ``align``."""
    return (value + align - 1) & ~(align - 1)


@dataclass(frozen=True)
class KernelFacts:
    """The configuration facts the CMA reservation depends on.

    Attributes:
        version: ``(major, minor)``, e.g. ``(6, 12)``; selects the kernel's
            :class:`KernelQuirks` (:func:`~harness.oracle.versions.quirks_for`).
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
    def quirks(self) -> KernelQuirks:
        """The version's behaviours (:func:`~harness.oracle.versions.quirks_for`).

        Raises:
            InputError: the version is not modelled.
        """
        return quirks_for(self.version)

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
        """``MAX_CMA_AREAS``: ``1 + CONFIG_CMA_AREAS`` in 6.1, ``CONFIG_CMA_AREAS`` in 6.12 and 7.2."""
        return self.cma_areas + self.quirks.max_cma_areas_extra

    @property
    def arm_dma_limit(self) -> int:
        """``arm_dma_limit`` (arch/arm/mm/init.c, mm.h) for a DT machine without dma_zone_size."""
        return 0xFFFFFFFF if self.zone_dma else self.phys_mask

    def pa(self, value: int) -> str:
        """``value`` printed as the kernel's ``%pa`` does (zero-padded to phys_addr_t width)."""
        return f"0x{value:0{16 if self.lpae else 8}x}"


def kernel_facts_from_config(config_text: str, release: str) -> KernelFacts:
    """Read the facts that matter from a kernel ``.config`` (``release`` e.g. ``"6.1.176"``).

    pageblock_order follows include/linux/pageblock-flags.h: with HUGETLB_PAGE
    (or, since 6.12, TRANSPARENT_HUGEPAGE), both LPAE-only on ARM, it is
    min(9, top); otherwise top, where top is MAX_ORDER - 1 in 6.1 and
    MAX_PAGE_ORDER in 6.12 (both from ARCH_FORCE_MAX_ORDER), and in 7.2
    PAGE_BLOCK_MAX_ORDER (CONFIG_PAGE_BLOCK_MAX_ORDER, at most MAX_PAGE_ORDER).

    Raises:
        InputError: the release is not a modelled version, or PAGE_OFFSET is missing.
    """
    m = re.match(r"(\d+)\.(\d+)", release)
    version = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
    try:
        quirks = quirks_for(version)
    except UnmodelledKernel as exc:
        raise UnmodelledKernel(f"{exc} (release {release!r})") from None
    cfg = dict(re.findall(r"^CONFIG_(\w+)=(.*)$", config_text, re.M))
    if "PAGE_OFFSET" not in cfg:
        raise InputError("kernel config has no CONFIG_PAGE_OFFSET (not a 32-bit ARM MMU kernel?)")

    def on(name: str) -> bool:
        return cfg.get(name) == "y"

    max_order = int(cfg.get("ARCH_FORCE_MAX_ORDER", str(quirks.max_order_default)))
    top = max_order if quirks.max_order_inclusive else max_order - 1
    if quirks.pageblock_max_order_config:
        top = min(top, int(cfg.get("PAGE_BLOCK_MAX_ORDER", str(top))))
    huge = on("HUGETLB_PAGE") or (quirks.pageblock_follows_thp and on("TRANSPARENT_HUGEPAGE"))
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
    """Addresses (virtual, bytes) of ``names`` in a System.map's text, keyed by symbol name."""
    found = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] in names:
            found[parts[2]] = int(parts[0], 16)
    return found

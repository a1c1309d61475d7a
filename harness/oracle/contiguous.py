"""The DMA contiguous allocator's setup: kernel/dma/contiguous.c.

Mirrors dma_contiguous_reserve() (the default area's size, base and limit
from ``cma=`` or ``CONFIG_CMA_SIZE_*``, handed to
cma_declare_contiguous_nid()) and rmem_cma_setup() (a reusable
``shared-dma-pool`` in ``/reserved-memory`` becoming a CMA area, possibly the
default one; 7.2 validates the node first with rmem_cma_validate()).
early_cma() is in :mod:`harness.oracle.params`.  All addresses
are physical and all sizes in bytes.
"""

from __future__ import annotations

from harness.oracle.cma import Declared, cma_declare, cma_init_reserved_mem
from harness.oracle.facts import SZ_1M
from harness.oracle.inputs import DtReservedRegion
from harness.oracle.state import BootState, ReservedMem
from harness.oracle.verdict import DtCmaPool


def dma_contiguous_reserve(s: BootState) -> Declared:
    """dma_contiguous_reserve(arm_dma_limit) (kernel/dma/contiguous.c).

    With ``cma=``: size, base and ``min_not_zero(limit, arm_dma_limit)`` (7.2:
    ``limit ?: arm_dma_limit``); fixed when ``base + size == limit``.  Without: the Kconfig size.  Nothing is
    reserved for size 0 or when a DT ``linux,cma-default`` pool already is
    the default area.
    """
    k, e = s.k, s.early
    if not k.dma_cma:
        return Declared("none", 0, (), "CONFIG_DMA_CMA is not set: no default CMA area")
    if e.cma_given:
        size, base, fixed = e.size, e.base, (e.base + e.size) & k.phys_mask == e.limit
        limit = (e.limit or k.arm_dma_limit) if k.quirks.dma_cmdline_limit_wins \
            else _min_not_zero(e.limit, k.arm_dma_limit)
        if not size:
            return Declared("none", 0, (), "dma_contiguous_reserve(): early_cma() read size 0 "
                            "(memparse() stops at the first bad character; phys_addr_t "
                            "truncates), so no default area")
    else:
        size, base, limit, fixed = _config_size(s), 0, k.arm_dma_limit, False
        if not size:
            return Declared("none", 0, (), "dma_contiguous_reserve(): the Kconfig size is 0")
    if s.default_area:
        return Declared("none", 0, (), "dma_contiguous_reserve(): a DT linux,cma-default pool "
                        "already is dma_contiguous_default_area")
    return cma_declare(s, base, size, limit, fixed)


def _config_size(s: BootState) -> int:
    """CONFIG_CMA_SIZE_SEL_*: MiB, percentage of memblock_phys_mem_size(), min or max (in bytes)."""
    k = s.k
    mbytes = (k.cma_size_mbytes * SZ_1M) & k.phys_mask
    percent = ((s.mb.phys_mem_size() >> 12) * k.cma_size_percentage // 100) << 12
    return {"mbytes": mbytes, "percentage": percent, "min": min(mbytes, percent),
            "max": max(mbytes, percent)}[k.cma_size_sel]


def _min_not_zero(a: int, b: int) -> int:
    """The kernel's min_not_zero()."""
    return b if a == 0 else a if b == 0 else min(a, b)


# The errno values the reserved-memory handlers return (include/uapi/asm-generic/errno-base.h).
ENODEV, EBUSY, EINVAL = -19, -16, -22

SKIP_DEFAULT = 'Skipping dt linux,cma-default node in favor for "cma=" kernel param.'


def rmem_cma_verify(s: BootState, region: DtReservedRegion) -> int:
    """7.2 __rmem_cma_verify_node() (kernel/dma/contiguous.c), behind rmem_cma_validate().

    -ENODEV for a pool that is not ``reusable`` or is ``no-map`` (not CMA's);
    -EBUSY, printing the skip line, for ``linux,cma-default`` with ``cma=`` given.
    """
    if not region.reusable or region.no_map:
        return ENODEV
    if s.early.cma_given and region.cma_default:
        s.notes.append(SKIP_DEFAULT)
        return EBUSY
    return 0


def rmem_cma_setup(s: BootState, entry: ReservedMem) -> int:
    """rmem_cma_setup() (kernel/dma/contiguous.c): a reusable pool becomes a CMA area; 0 or -errno.

    6.1/6.12 first bypass a ``linux,cma-default`` pool when ``cma=`` is given
    (-EBUSY), then refuse a non-reusable or no-map one (-EINVAL); 7.2 runs
    :func:`rmem_cma_verify` (-ENODEV lets the next handler try).  Then the
    pageblock alignment of base and size (bytes) and cma_init_reserved_mem().
    """
    region, k = entry.region, s.k
    if k.quirks.reserved_mem_validate_first:
        ret = rmem_cma_verify(s, region)
        if ret:
            return ret
    elif s.early.cma_given and region.cma_default:
        s.log.append(f"Reserved memory: bypass {region.name} node, using cmdline CMA "
                     "params instead")
        return EBUSY
    elif not region.reusable or region.no_map:
        return EINVAL
    if (entry.base | entry.size) % k.cma_min_alignment:
        s.log.append("Reserved memory: incorrect alignment of CMA region")
        return EINVAL
    if not cma_init_reserved_mem(s, entry.base, entry.size):
        s.log.append("Reserved memory: unable to setup CMA region")
        return EINVAL
    s.default_area = s.default_area or region.cma_default
    s.pools.append(DtCmaPool(region.name, entry.base, entry.size))
    s.log.append(f"Reserved memory: created CMA memory pool at {k.pa(entry.base)}, "
                 f"size {(entry.size & 0xFFFFFFFF) >> 20} MiB")
    return 0

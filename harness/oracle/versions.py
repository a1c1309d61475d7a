"""What differs between the kernels the oracle models, as named facts of each version.

Every behaviour of Linux 6.1 and 6.12 that the oracle replays differently is
one field of :class:`KernelQuirks`, named after the kernel behaviour and
citing the kernel file and function where the two versions part.  The rest of
the package asks ``kernel.quirks.<fact>`` and never compares version numbers.

A third base kernel plugs in here: add its entry to :data:`KERNEL_QUIRKS`
with the values of the existing facts read from its sources.  A behaviour the
model does not have yet (e.g. CMA areas made of several ranges, mm/cma.c since
6.15) needs a new field here and the code in the module mirroring that kernel
file that reads it.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.errors import InputError


@dataclass(frozen=True)
class KernelQuirks:
    """The version-dependent behaviours of one base kernel (see :func:`quirks_for`).

    Attributes:
        max_cma_areas_extra: ``MAX_CMA_AREAS - CONFIG_CMA_AREAS`` (include/linux/cma.h):
            6.1 has ``1 + CONFIG_CMA_AREAS``, a slot kept for the default area;
            6.12 has ``CONFIG_CMA_AREAS``.
        max_order_default: the default of ``ARCH_FORCE_MAX_ORDER`` (arch/arm/Kconfig):
            ``"11"`` in 6.1, ``"10"`` in 6.12.
        max_order_inclusive: the largest buddy order is ``ARCH_FORCE_MAX_ORDER``
            itself (6.12's ``MAX_PAGE_ORDER``) rather than ``MAX_ORDER - 1`` (6.1);
            include/linux/mmzone.h, commit 23baf831a32c "mm, treewide: redefine
            MAX_ORDER sanely" (v6.4).  pageblock_order is capped by it.
        pageblock_follows_thp: without HUGETLB_PAGE, ``TRANSPARENT_HUGEPAGE`` makes
            pageblock_order ``min(HPAGE_PMD_ORDER, MAX_PAGE_ORDER)``
            (include/linux/pageblock-flags.h: 6.12 has the ``#elif``, 6.1 not).
        memreserve_scanned_first: early_init_fdt_scan_reserved_mem()
            (drivers/of/fdt.c) reserves the dtb header's ``/memreserve/`` entries
            before fdt_scan_reserved_mem() (6.1) instead of after it (6.12).
        reserved_mem_sorted_before_alloc: fdt_scan_reserved_mem() saves every
            ``/reserved-memory`` region and fdt_init_reserved_mem() sorts them all
            with lib/sort.c by (base, size) before allocating the dynamic ones and
            initialising each (6.1); 6.12 allocates and initialises the dynamic
            ones in DT order during the scan (drivers/of/of_reserved_mem.c).
        reserved_mem_static_init_late: static (``reg``) regions are initialised
            only by fdt_scan_reserved_mem_reg_nodes(), called from
            unflatten_device_tree() after arm_memblock_init() (6.12;
            drivers/of/of_reserved_mem.c, drivers/of/fdt.c); 6.1 initialises them
            in fdt_init_reserved_mem().
        reserved_mem_alloc_next_to_neighbour: __reserved_mem_alloc_in_range()
            (drivers/of/of_reserved_mem.c, 6.12 only) allocates an alloc-ranges
            region bottom-up when the range starts within an earlier region or at
            its end (top-down when it ends there), keeping regions together.
        cma_log_node: cma_declare_contiguous_nid() (mm/cma.c) ends its
            "Reserved ..." and "Failed to reserve ..." lines with ``on node %d``
            (6.12), here ``-1`` (NUMA_NO_NODE).
        cma_above_4g_first: cma_declare_contiguous_nid() (mm/cma.c) tries the
            bottom-up allocation above 4 GiB before the highmem one, each only if
            nothing is placed yet (6.12); 6.1 tries highmem first, then the 4 GiB
            attempt, whose result overwrites (and leaks) the highmem block.
    """

    max_cma_areas_extra: int
    max_order_default: int
    max_order_inclusive: bool
    pageblock_follows_thp: bool
    memreserve_scanned_first: bool
    reserved_mem_sorted_before_alloc: bool
    reserved_mem_static_init_late: bool
    reserved_mem_alloc_next_to_neighbour: bool
    cma_log_node: bool
    cma_above_4g_first: bool


LINUX_6_1 = KernelQuirks(
    max_cma_areas_extra=1, max_order_default=11, max_order_inclusive=False, pageblock_follows_thp=False,
    memreserve_scanned_first=True, reserved_mem_sorted_before_alloc=True,
    reserved_mem_static_init_late=False, reserved_mem_alloc_next_to_neighbour=False,
    cma_log_node=False, cma_above_4g_first=False)

LINUX_6_12 = KernelQuirks(
    max_cma_areas_extra=0, max_order_default=10, max_order_inclusive=True, pageblock_follows_thp=True,
    memreserve_scanned_first=False, reserved_mem_sorted_before_alloc=False,
    reserved_mem_static_init_late=True, reserved_mem_alloc_next_to_neighbour=True,
    cma_log_node=True, cma_above_4g_first=True)

# (major, minor) -> its quirks; the only place that knows which kernels are modelled.
KERNEL_QUIRKS: dict[tuple[int, int], KernelQuirks] = {(6, 1): LINUX_6_1, (6, 12): LINUX_6_12}


def modelled_versions() -> str:
    """The modelled kernels for a message, e.g. ``"6.1 and 6.12"``."""
    return " and ".join(f"{major}.{minor}" for major, minor in KERNEL_QUIRKS)


def quirks_for(version: tuple[int, int]) -> KernelQuirks:
    """The :class:`KernelQuirks` of kernel ``version`` (``(major, minor)``, e.g. ``(6, 12)``).

    Raises:
        InputError: the version is not one the oracle models.
    """
    try:
        return KERNEL_QUIRKS[version]
    except KeyError:
        raise InputError(f"the cma= oracle models Linux {modelled_versions()}, not "
                         f"{'.'.join(map(str, version))}") from None

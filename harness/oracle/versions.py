"""What differs between the kernels the oracle models, as named facts of each version.

Every behaviour of Linux 6.1, 6.12 and 7.2 that the oracle replays differently
is one field of :class:`KernelQuirks`, named after the kernel behaviour and
citing the kernel file and function where the versions part.  The rest of the
package asks ``kernel.quirks.<fact>`` and never compares version numbers.

Versions are taken by range (:func:`quirks_for`): a modelled entry covers
from its version up to the next modelled one, the newest (7.2) everything
after it (mainline), except where a quirk is known to change at a version in
between: there the range stops and the versions up to the next entry are
refused (:data:`KNOWN_BREAKS`), rather than replayed with the wrong model.

Another base kernel plugs in here: add its entry to :data:`KERNEL_QUIRKS`
with the values of the existing facts read from its sources.  A behaviour the
model does not have yet needs a new field here and the code in the module
mirroring that kernel file that reads it.
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
        cma_log_rounded_size: the "Reserved %ld MiB" / "Failed to reserve %ld
            MiB" lines of cma_declare_contiguous_nid() (mm/cma.c) give the size
            rounded up to CMA_MIN_ALIGNMENT_BYTES (6.1, 6.12, where the checks
            are inline); since the split into __cma_declare_contiguous_nid()
            (v6.15, with ``struct cma_memrange``; 7.2) the wrapper prints the
            caller's unrounded size, e.g. "Reserved 5 MiB" for an 8 MiB area.
        cma_boundary_check_late: the fixed region's "defined on low/high memory
            boundary" check runs only with CONFIG_HIGHMEM and after the "exceeds
            limit" check, in cma_fixed_reserve() (mm/cma.c, v6.15; 7.2); before,
            it ran unconditionally before the limit check.
        cma_slot_checked_last: cma_init_reserved_mem() (mm/cma.c) checks for a
            free ``cma_areas[]`` slot after the reservation and alignment checks,
            in cma_new_area() (v6.15; 7.2); before, first.
        dma_cmdline_limit_wins: dma_contiguous_reserve() (kernel/dma/contiguous.c)
            takes ``limit_cmdline ?: limit`` (7.2: "Hornor the user setup dma
            address limit") instead of ``min_not_zero(limit_cmdline, limit)``.
        pageblock_max_order_config: pageblock_order is capped by
            ``PAGE_BLOCK_MAX_ORDER`` = CONFIG_PAGE_BLOCK_MAX_ORDER (mm/Kconfig,
            include/linux/mmzone.h, include/linux/pageblock-flags.h; v6.16 as
            CONFIG_PAGE_BLOCK_ORDER; 7.2), whose default is ARCH_FORCE_MAX_ORDER.
        reserved_mem_validate_first: drivers/of/of_reserved_mem.c calls the
            handler's ``node_validate`` (rmem_cma_validate(), kernel/dma/contiguous.c)
            before reserving a ``reg`` region or allocating a dynamic one, and
            ``__reserved_mem_init_node()`` stops at the first handler that does
            not return -ENODEV (7.2, ``struct reserved_mem_ops``): a
            ``linux,cma-default`` pool with ``cma=`` given is never reserved or
            allocated and prints ``Skipping dt linux,cma-default node in favor
            for "cma=" kernel param.`` (once per validation); ``reusable``/``no-map``
            are checked before ``linux,cma-default``; a region whose init fails
            is not kept in ``reserved_mem[]``.  Before (6.1, 6.12), the pool was
            reserved, then rmem_cma_setup() printed "bypass ... node, using
            cmdline CMA params instead" and the region was given back.
        reserved_mem_reg_first_only: __reserved_mem_reserve_reg()
            (drivers/of/of_reserved_mem.c) reserves only the first ``<base size>``
            of ``reg`` and warns about the rest (7.2); before, every entry.
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
    cma_log_rounded_size: bool = True
    cma_boundary_check_late: bool = False
    cma_slot_checked_last: bool = False
    dma_cmdline_limit_wins: bool = False
    pageblock_max_order_config: bool = False
    reserved_mem_validate_first: bool = False
    reserved_mem_reg_first_only: bool = False


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

# Read from Linux 7.2.13: mm/cma.c was split (cma_fixed_reserve(), cma_alloc_mem(),
# __cma_declare_contiguous_nid(); areas of up to CMA_MAX_RANGES ranges), the "on node"
# ending is gone again, drivers/of/of_reserved_mem.c validates nodes first.
LINUX_7_2 = KernelQuirks(
    max_cma_areas_extra=0, max_order_default=10, max_order_inclusive=True, pageblock_follows_thp=True,
    memreserve_scanned_first=False, reserved_mem_sorted_before_alloc=False,
    reserved_mem_static_init_late=True, reserved_mem_alloc_next_to_neighbour=True,
    cma_log_node=False, cma_above_4g_first=True, cma_log_rounded_size=False,
    cma_boundary_check_late=True, cma_slot_checked_last=True, dma_cmdline_limit_wins=True,
    pageblock_max_order_config=True,
    reserved_mem_validate_first=True, reserved_mem_reg_first_only=True)

# (major, minor) -> its quirks; the only place that knows which kernels are modelled.
KERNEL_QUIRKS: dict[tuple[int, int], KernelQuirks] = {(6, 1): LINUX_6_1, (6, 12): LINUX_6_12,
                                                      (7, 2): LINUX_7_2}

# Where a modelled entry's range ends before the next entry: the first version known
# to behave differently, and what changed there.  Versions from it up to the next
# modelled entry are refused.
KNOWN_BREAKS: dict[tuple[int, int], tuple[tuple[int, int], str]] = {
    (6, 1): ((6, 4), "v6.4 redefines MAX_ORDER (include/linux/mmzone.h, commit 23baf831a32c) "
                     "and ARCH_FORCE_MAX_ORDER's default"),
    (6, 12): ((6, 15), "v6.15 splits mm/cma.c's cma_declare_contiguous_nid() "
                       "(multi-range areas; the log lines change)"),
}


def modelled_versions() -> str:
    """The modelled kernels for a message, e.g. ``"6.1-6.3, 6.12-6.14 and 7.2 or later"``."""
    names = []
    for version in sorted(KERNEL_QUIRKS):
        first = ".".join(map(str, version))
        newer = [v for v in KERNEL_QUIRKS if v > version]
        if version in KNOWN_BREAKS:
            end = KNOWN_BREAKS[version][0]
            names.append(f"{first}-{end[0]}.{end[1] - 1}" if end[1] else first)
        elif not newer:
            names.append(f"{first} or later")
        else:
            names.append(f"{first} up to {'.'.join(map(str, min(newer)))}")
    return ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]


class UnmodelledKernel(InputError):
    """The kernel version is one the oracle does not model (see :func:`quirks_for`).

    A run goes on without predictions: each cell without a matrix ``expect``
    gets an UNPREDICTABLE expectation carrying this message.
    """


def quirks_for(version: tuple[int, int]) -> KernelQuirks:
    """The :class:`KernelQuirks` of kernel ``version`` (``(major, minor)``, e.g. ``(6, 12)``).

    The entry with the highest modelled version at or below ``version``,
    unless ``version`` is at or past that entry's :data:`KNOWN_BREAKS` point.

    Raises:
        UnmodelledKernel: the version is older than the oldest modelled one, or in a
            range where a behaviour is known to change and is not modelled.
    """
    name = ".".join(map(str, version))
    base = max((v for v in KERNEL_QUIRKS if v <= version), default=None)
    if base is None:
        raise UnmodelledKernel(f"the cma= oracle models Linux {modelled_versions()}, not {name}")
    if base in KNOWN_BREAKS and version >= KNOWN_BREAKS[base][0]:
        raise UnmodelledKernel(f"the cma= oracle models Linux {modelled_versions()}, not {name}: "
                         f"{KNOWN_BREAKS[base][1]}")
    return KERNEL_QUIRKS[base]

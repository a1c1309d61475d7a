"""One boot, start to finish: setup_arch() of arch/arm/kernel/setup.c.

Mirrors the order in which setup_arch() reaches the CMA reservation:
early_init_fdt_reserve_self() (the dtb reserves itself), parse_early_param()
(with early_mem() for ``mem=``), adjust_lowmem_bounds(), arm_memblock_init(),
adjust_lowmem_bounds() again, then unflatten_device_tree() (6.12:
fdt_scan_reserved_mem_reg_nodes(), 7.2: fdt_scan_reserved_mem_late()), and later
cma_init_reserved_areas() activating the area (mm/cma.c).
"""

from __future__ import annotations

from harness.errors import InputError
from harness.oracle.arm_mm import adjust_lowmem_bounds, arm_memblock_init
from harness.oracle.arm_setup import boot_stoppers, early_mem
from harness.oracle.cma import cma_activates
from harness.oracle.inputs import CmaBoot
from harness.oracle.memblock import Memblock
from harness.oracle.memmap import MemoryMap, memory_map
from harness.oracle.of_reserved_mem import fdt_scan_reserved_mem_reg_nodes
from harness.oracle.params import parse_early_params
from harness.oracle.state import BootState
from harness.oracle.verdict import Prediction
from harness.oracle.versions import quirks_for


def predict(cmdline: str, boot: CmaBoot) -> Prediction:
    """Predict the default CMA area (and DT CMA pools) for the full kernel ``cmdline``.

    The prediction of :func:`predict_boot`; see there.

    Raises:
        InputError: see :func:`predict_boot`.
    """
    return predict_boot(cmdline, boot)[0]


def predict_boot(cmdline: str, boot: CmaBoot) -> tuple[Prediction, MemoryMap]:
    """Predict the CMA areas for the full kernel ``cmdline``, and the boot's memory map.

    Returns:
        The :class:`~harness.oracle.verdict.Prediction` and the
        :class:`~harness.oracle.memmap.MemoryMap` of the same replay.

    Replays setup_arch() (arch/arm/kernel/setup.c): the dtb reserves itself,
    parse_early_param() (``mem=`` rewrites memblock.memory: early_mem()),
    adjust_lowmem_bounds(), arm_memblock_init() (arch/arm/mm/init.c: kernel
    image, initrd, swapper_pg_dir, DT reserved memory,
    dma_contiguous_reserve(arm_dma_limit)), adjust_lowmem_bounds() again.

    Raises:
        InputError: the command line uses something not modelled (a bare
            ``mem``, a ``mem=`` that leaves no memory), or the kernel version
            is not modelled.
    """
    quirks_for(boot.kernel.version)  # an unmodelled kernel fails here, before anything runs
    early = parse_early_params(cmdline, boot.kernel)
    s = BootState(boot, early, Memblock(boot.ram, boot.kernel.phys_mask), log=list(early.log),
                  notes=list(early.notes))
    s.mb.reserve(boot.dtb.base, boot.dtb.size)
    early_mem(s)
    if not s.mb.memory:
        raise InputError(f"the mem= of {cmdline!r} leaves the kernel no memory at all "
                         "(arm_add_memory() dropped it): it cannot boot")
    s.lowmem_limit = adjust_lowmem_bounds(s)
    declared = arm_memblock_init(s)
    lowmem_limit = adjust_lowmem_bounds(s)
    fdt_scan_reserved_mem_reg_nodes(s)
    activates = True
    if declared.base is not None:
        activates = cma_activates(s, declared.base, declared.size)
        if not activates:
            s.notes.append("cma_activate_area() meets pages outside RAM or in two zones: "
                           "WARN_ON_ONCE(!pfn_valid()) in mm/cma.c, then likely an Oops")
    prediction = Prediction(declared.outcome, declared.size, declared.lo, declared.hi, declared.base,
                            tuple(s.log), declared.reason, tuple(s.pools), activates, tuple(s.notes),
                            ranges=1 if declared.outcome == "reserved" else 0,
                            printed_size=declared.printed, unbootable="; ".join(boot_stoppers(s)))
    return prediction, memory_map(s, lowmem_limit)

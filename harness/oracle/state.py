"""The kernel's early-boot variables that the modules mirroring its files share.

One :class:`BootState` is one simulated boot during setup_arch()
(arch/arm/kernel/setup.c): ``memblock`` (mm/memblock.c), ``reserved_mem[]``
(drivers/of/of_reserved_mem.c), ``cma_area_count`` and
``dma_contiguous_default_area`` (mm/cma.c, kernel/dma/contiguous.c),
``arm_lowmem_limit`` (arch/arm/mm/mmu.c), and what the kernel prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.oracle.facts import KernelFacts
from harness.oracle.inputs import CmaBoot, DtReservedRegion
from harness.oracle.memblock import Memblock
from harness.oracle.params import EarlyParams
from harness.oracle.verdict import DtCmaPool


@dataclass
class ReservedMem:
    """A ``struct reserved_mem`` being set up (drivers/of/of_reserved_mem.c).

    ``base`` (physical) and ``size`` are in bytes; both 0 for a dynamic region
    not allocated yet.
    """

    region: DtReservedRegion
    base: int
    size: int


@dataclass
class BootState:
    """The simulated kernel's state during setup_arch().

    Attributes:
        boot: the boot's fixed inputs.
        early: what the early parameters set.
        mb: memblock.
        lowmem_limit: ``arm_lowmem_limit`` after the first adjust_lowmem_bounds()
            (physical address, bytes): cma_declare_contiguous_nid()'s highmem_start.
        areas: ``cma_area_count``, CMA areas declared so far.
        default_area: a DT ``linux,cma-default`` pool became ``dma_contiguous_default_area``.
        pools: the DT CMA pools created, in creation order.
        log: the CMA lines printed so far (see :class:`~harness.oracle.verdict.Prediction`).
        notes: other kernel messages so far.
        rmem: ``reserved_mem[]``, the DT regions saved so far.
    """

    boot: CmaBoot
    early: EarlyParams
    mb: Memblock
    lowmem_limit: int = 0
    areas: int = 0
    default_area: bool = False
    pools: list[DtCmaPool] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    rmem: list[ReservedMem] = field(default_factory=list)

    @property
    def k(self) -> KernelFacts:
        """The kernel's configuration facts."""
        return self.boot.kernel

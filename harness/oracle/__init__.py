"""The ``cma=`` oracle: what Linux on 32-bit ARM does with the default CMA area.

Given a board's RAM, the kernel's configuration and what sits in RAM when the
kernel starts (its image, the initrd and the dtb where QEMU put them, the dtb's
``/reserved-memory``), :func:`predict` replays the kernel's early boot for one
command line and says whether the default CMA area ("reserved") is reserved,
where, and with which ``cma:`` lines, or why it fails.  It follows the sources
of Linux 6.1, 6.12 and 7.2 step by step (other versions by range:
:func:`~harness.oracle.versions.quirks_for`), one module per kernel file:

* :mod:`~harness.oracle.boot`: ``setup_arch()`` (arch/arm/kernel/setup.c): the
  dtb reserves itself, early parameters are parsed, ``adjust_lowmem_bounds()``
  runs, then ``arm_memblock_init()`` and ``adjust_lowmem_bounds()`` once more;
* :mod:`~harness.oracle.params`: ``parse_early_param()`` (init/main.c) with
  ``early_cma()``, ``early_vmalloc()`` and what ``mem=`` asks of ``early_mem()``;
* :mod:`~harness.oracle.arm_setup`: ``early_mem()`` and ``arm_add_memory()``
  (arch/arm/kernel/setup.c) rewriting memblock.memory, and what such a memory
  map does to the harness's boot (an initrd left outside memory);
* :mod:`~harness.oracle.arm_mm`: ``adjust_lowmem_bounds()``
  (arch/arm/mm/mmu.c) and ``arm_memblock_init()`` (arch/arm/mm/init.c): kernel
  image, initrd, ``swapper_pg_dir``, ``early_init_fdt_scan_reserved_mem()``,
  then ``dma_contiguous_reserve(arm_dma_limit)``;
* :mod:`~harness.oracle.of_reserved_mem`: the dtb's ``/reserved-memory``
  (drivers/of/of_reserved_mem.c, drivers/of/fdt.c);
* :mod:`~harness.oracle.contiguous`: ``dma_contiguous_reserve()`` and
  ``rmem_cma_setup()`` (kernel/dma/contiguous.c);
* :mod:`~harness.oracle.cma`: ``cma_declare_contiguous_nid()``,
  ``cma_init_reserved_mem()`` and ``cma_activate_area()`` (mm/cma.c);
* :mod:`~harness.oracle.memblock`: memblock's top-down allocator (mm/memblock.c);
* :mod:`~harness.oracle.sort`: lib/sort.c's heapsort.

Around them: :mod:`~harness.oracle.facts` (the ``.config`` and the kernel's
constants), :mod:`~harness.oracle.versions` (what differs between kernel
versions, as named facts: where a third base kernel plugs in),
:mod:`~harness.oracle.inputs` (reading the dtb and the built kernel),
:mod:`~harness.oracle.loader` (where QEMU puts the boot files),
:mod:`~harness.oracle.state` (the kernel variables the steps share),
:mod:`~harness.oracle.memmap` (the boot's physical memory map, for drawings) and
:mod:`~harness.oracle.verdict` (the prediction, judged against a boot log).

All sizes are in bytes and all addresses are physical addresses in bytes.
Arithmetic on ``phys_addr_t`` wraps at 32 bits unless the kernel has LPAE, as
it does in the kernel.

Not modelled (an :class:`~harness.errors.InputError` says so when met): a
bare ``mem`` or a ``mem=`` that leaves no memory, kernel versions outside the
modelled ranges, and ``CONFIG_ZONE_DMA`` machines that declare a
``dma_zone_size``.  See docs/oracle-7x-and-mem.md.
"""

from __future__ import annotations

from harness.oracle.boot import predict, predict_boot
from harness.oracle.facts import (
    DEFAULT_VMALLOC_SIZE,
    PAGE_SIZE,
    PMD_SIZE,
    SZ_1M,
    SZ_4G,
    VMALLOC_END,
    VMALLOC_OFFSET,
    KernelFacts,
    kernel_facts_from_config,
    system_map_symbols,
)
from harness.oracle.inputs import CmaBoot, DtInfo, DtReservedRegion, boot_from_files, read_reserved_memory
from harness.oracle.loader import (
    QEMU_DTB_PAD,
    QEMU_KERNEL_LOAD_ADDR,
    QEMU_LOADER,
    QemuLoad,
    decompressor_phys_offset,
    qemu_arm_load,
)
from harness.oracle.memmap import MapRegion, MemoryMap, RegionKind
from harness.oracle.params import EarlyParams, parse_early_params
from harness.oracle.sort import kernel_heapsort
from harness.oracle.state import ReservedMem
from harness.oracle.verdict import DtCmaPool, Prediction, check_against_oracle, describe
from harness.oracle.versions import KERNEL_QUIRKS, KernelQuirks, UnmodelledKernel, quirks_for

_Entry = ReservedMem  # the name harness.oracle gave struct reserved_mem before it was a package

__all__ = [
    "DEFAULT_VMALLOC_SIZE",
    "KERNEL_QUIRKS",
    "PAGE_SIZE",
    "PMD_SIZE",
    "QEMU_DTB_PAD",
    "QEMU_KERNEL_LOAD_ADDR",
    "QEMU_LOADER",
    "SZ_1M",
    "SZ_4G",
    "VMALLOC_END",
    "VMALLOC_OFFSET",
    "CmaBoot",
    "DtCmaPool",
    "DtInfo",
    "DtReservedRegion",
    "EarlyParams",
    "KernelFacts",
    "KernelQuirks",
    "MapRegion",
    "MemoryMap",
    "Prediction",
    "QemuLoad",
    "RegionKind",
    "ReservedMem",
    "_Entry",
    "boot_from_files",
    "check_against_oracle",
    "decompressor_phys_offset",
    "describe",
    "kernel_facts_from_config",
    "kernel_heapsort",
    "parse_early_params",
    "predict",
    "predict_boot",
    "qemu_arm_load",
    "quirks_for",
    "UnmodelledKernel",
    "read_reserved_memory",
    "system_map_symbols",
]

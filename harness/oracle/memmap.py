"""The physical memory map of one boot, as the oracle's replay of setup_arch() leaves it.

:class:`MemoryMap` is what a report draws for a cell: the board's RAM banks,
what memblock.memory kept of them (``mem=``, "Ignoring RAM"), the boot files
where QEMU's loader put them (kernel image, initrd, dtb), ``swapper_pg_dir``,
the dtb's ``/memreserve/`` entries and ``/reserved-memory`` regions where
drivers/of/of_reserved_mem.c placed them, and ``arm_lowmem_limit`` (the
lowmem/highmem line of arch/arm/mm/mmu.c).  It is built from the same
:class:`~harness.oracle.state.BootState` the prediction comes from
(:func:`harness.oracle.boot.predict_boot`): no second model, no boot log.

All addresses are physical addresses in bytes, all sizes bytes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from harness.oracle.state import BootState


class RegionKind(StrEnum):
    """What a :class:`MapRegion` is."""

    RAM = "ram"  # a RAM bank the board gives (QEMU writes it into the dtb's memory node)
    MEMORY = "memory"  # a range of memblock.memory after early_mem() and adjust_lowmem_bounds()
    KERNEL = "kernel"  # [pa(_stext), pa(_end)): KERNEL_START..KERNEL_END of arch/arm/mm/init.c
    PGDIR = "pgdir"  # swapper_pg_dir and SWAPPER_PG_DIR_SIZE
    INITRD = "initrd"  # the initrd as QEMU loaded it (unrounded)
    DTB = "dtb"  # the dtb: its address and fdt_totalsize()
    MEMRESERVE = "memreserve"  # a /memreserve/ entry of the dtb header
    RESERVED_MEMORY = "reserved-memory"  # a /reserved-memory child, where it was placed


@dataclass(frozen=True)
class MapRegion:
    """One range of physical memory: ``base`` (physical address) and ``size``, in bytes.

    ``name`` is what a drawing labels it with (a DT node name, "kernel"...);
    ``detail`` says more ("reusable shared-dma-pool", "disabled: ... is not a
    memory region"), "" when there is nothing to add.
    """

    kind: RegionKind
    name: str
    base: int
    size: int
    detail: str = ""

    @property
    def end(self) -> int:
        """The first byte after the region (physical address)."""
        return self.base + self.size


@dataclass(frozen=True)
class MemoryMap:
    """What sits where in physical memory when the default CMA area is declared.

    Attributes:
        ram: the board's RAM banks (:attr:`RegionKind.RAM`).
        memory: memblock.memory at the end of setup_arch()'s memory set-up, no-map
            ranges included (:attr:`RegionKind.MEMORY`): RAM the kernel uses.
        placed: kernel image, ``swapper_pg_dir``, initrd, dtb, ``/memreserve/``
            entries and ``/reserved-memory`` regions, in that order.
        lowmem_limit: ``arm_lowmem_limit`` after the last adjust_lowmem_bounds()
            (arch/arm/mm/mmu.c): RAM at or above it is highmem.
    """

    ram: tuple[MapRegion, ...]
    memory: tuple[MapRegion, ...]
    placed: tuple[MapRegion, ...]
    lowmem_limit: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` reads it back unchanged."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MemoryMap:
        """The inverse of :meth:`to_dict`.

        Raises:
            KeyError, TypeError, ValueError: not such a dict.
        """
        def regions(key: str) -> tuple[MapRegion, ...]:
            return tuple(MapRegion(RegionKind(r["kind"]), str(r["name"]), int(r["base"]),
                                   int(r["size"]), str(r.get("detail", ""))) for r in data[key])

        return cls(regions("ram"), regions("memory"), regions("placed"), int(data["lowmem_limit"]))


def _initrd_detail(s: BootState) -> str:
    """Why reserve_initrd_mem() (init/initramfs.c) disabled the initrd, "" when it did not."""
    notes = [n for n in s.notes if n.startswith("INITRD:") and "disabling initrd" in n]
    return f"disabled by the kernel: {notes[0]}" if notes else ""


def _dt_detail(compatible: tuple[str, ...], no_map: bool, reusable: bool) -> str:
    flags = [*compatible, *(["no-map"] if no_map else []), *(["reusable"] if reusable else [])]
    return " ".join(flags)


def memory_map(s: BootState, lowmem_limit: int) -> MemoryMap:
    """The :class:`MemoryMap` of a replayed boot ``s`` whose final ``arm_lowmem_limit`` is ``lowmem_limit``.

    ``/reserved-memory`` regions are taken from ``reserved_mem[]`` (static
    ``reg`` regions and the dynamic ones allocated), so they sit where the
    kernel put them; a region that was never placed (size 0) is left out.
    """
    boot = s.boot
    ram = tuple(MapRegion(RegionKind.RAM, f"bank {i}", b.base, b.size) for i, b in enumerate(boot.ram))
    memory = tuple(MapRegion(RegionKind.MEMORY, "memblock.memory", start, end - start,
                             "no-map" if nomap else "") for start, end, nomap in s.mb.memory)
    placed = [MapRegion(RegionKind.KERNEL, "kernel", boot.kernel_image.base, boot.kernel_image.size),
              MapRegion(RegionKind.PGDIR, "swapper_pg_dir", boot.pgdir.base, boot.pgdir.size)]
    if boot.initrd is not None and boot.initrd.size:
        placed.append(MapRegion(RegionKind.INITRD, "initrd", boot.initrd.base, boot.initrd.size,
                                _initrd_detail(s)))
    placed.append(MapRegion(RegionKind.DTB, "dtb", boot.dtb.base, boot.dtb.size))
    placed += [MapRegion(RegionKind.MEMRESERVE, "/memreserve/", m.base, m.size) for m in boot.memreserve]
    placed += [MapRegion(RegionKind.RESERVED_MEMORY, e.region.name, e.base, e.size,
                         _dt_detail(e.region.compatible, e.region.no_map, e.region.reusable))
               for e in s.rmem if e.size]
    return MemoryMap(ram, memory, tuple(placed), lowmem_limit)

"""The oracle's inputs: one boot's RAM, kernel and dtb, read from the files QEMU boots.

Reads what the kernel's drivers/of/fdt.c and drivers/of/of_reserved_mem.c
read from a dtb (the ``/memreserve/`` header entries,
__reserved_mem_check_root() on ``/reserved-memory``, and each available
child's ``reg``/``size``/``alignment``/``alloc-ranges``/``no-map``/
``reusable``/``linux,cma-default`` as fdt_scan_reserved_mem() and
__reserved_mem_alloc_size() see them), with fdtget and dtc; and builds a
:class:`CmaBoot` from a built kernel (``.config``, System.map, zImage) and
QEMU's load layout (:mod:`harness.oracle.loader`).
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness.boards import Loader, MemoryBank
from harness.errors import EnvironmentProblem, InputError
from harness.oracle.facts import KernelFacts, kernel_facts_from_config, system_map_symbols
from harness.oracle.loader import QEMU_LOADER, decompressor_phys_offset, qemu_arm_load


@dataclass(frozen=True)
class DtReservedRegion:
    """One available child of the dtb's ``/reserved-memory`` node, in DT order.

    Addresses are physical and sizes in bytes.

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
        """The node is ``compatible = "shared-dma-pool"`` (CMA or coherent pool)."""
        return "shared-dma-pool" in self.compatible


@dataclass(frozen=True)
class CmaBoot:
    """Everything about one boot except the command line (physical addresses, bytes).

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
    regions = (_read_region(dtb, name, acells, scells) for name in children.split())
    return DtInfo(tuple(r for r in regions if r is not None), memreserve, format_ok)


def _read_region(dtb: Path, name: str, acells: int, scells: int) -> DtReservedRegion | None:
    """The ``/reserved-memory/<name>`` child of ``dtb``, or None when its status is not okay.

    ``acells``/``scells`` are the root's ``#address-cells``/``#size-cells``.
    """
    node = f"/reserved-memory/{name}"
    props = set((_fdtget(dtb, "-p", node) or "").split())
    if "status" in props and _fdtget(dtb, "-ts", node, "status") not in ("okay", "ok"):
        return None
    size = _cells(_fdtget(dtb, "-tu", node, "size"), (scells,))
    align = _cells(_fdtget(dtb, "-tu", node, "alignment"), (acells,))
    return DtReservedRegion(
        name=name, compatible=tuple((_fdtget(dtb, "-ts", node, "compatible") or "").split()),
        reg=tuple((b, s) for b, s in _cells(_fdtget(dtb, "-tu", node, "reg"), (acells, scells))),
        has_reg="reg" in props, size=size[0][0] if size else None,
        alignment=align[0][0] if align else 0,
        alloc_ranges=tuple((b, s) for b, s in _cells(_fdtget(dtb, "-tu", node, "alloc-ranges"),
                                                      (acells, scells))),
        no_map="no-map" in props, reusable="reusable" in props,
        cma_default="linux,cma-default" in props)


def _dtc(dtb: Path) -> str:
    """``dtc -I dtb -O dts`` of ``dtb`` (for its ``/memreserve/`` lines); EnvironmentProblem without dtc."""
    try:
        out = subprocess.run(["dtc", "-q", "-I", "dtb", "-O", "dts", str(dtb)], capture_output=True,
                             text=True, check=False)
    except FileNotFoundError as exc:
        raise EnvironmentProblem("dtc not found: install device-tree-compiler") from exc
    return out.stdout


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

"""Where QEMU puts a 32-bit ARM Linux boot, and where the zImage then maps RAM.

Mirrors QEMU 7.2's hw/arm/boot.c arm_setup_direct_kernel_boot() (zImage at
``KERNEL_LOAD_ADDR``, initrd, then the dtb) and softmmu/device_tree.c
load_device_tree() (the dtb's padded ``fdt_totalsize()``), then the kernel's
arch/arm/boot/compressed/head.S with fdt_check_mem_start()
(arch/arm/boot/compressed/fdt_check_mem_start.c) choosing PHYS_OFFSET.
All addresses are physical and all sizes in bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.boards import Loader, MemoryBank
from harness.oracle.facts import PAGE_SIZE, SZ_1M, align_up

QEMU_KERNEL_LOAD_ADDR = 0x10000  # hw/arm/boot.c: KERNEL_LOAD_ADDR
QEMU_DTB_PAD = 10000  # softmmu/device_tree.c load_device_tree(): (size + 10000) * 2
QEMU_LOADER = Loader()  # hw/arm/boot.c's rule: initrd at base + min(RAM / 2, 128 MiB), dtb 4 KiB-aligned


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
    initrd_start = align_up(initrd_start, PAGE_SIZE)
    dtb_start = align_up(initrd_start + initrd_size, loader.dtb_align)
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
    return align_up(min(b.base for b in ram), 2 * SZ_1M)


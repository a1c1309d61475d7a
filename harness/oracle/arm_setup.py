"""``mem=`` on 32-bit ARM: early_mem() and arm_add_memory() of arch/arm/kernel/setup.c.

The same in Linux 6.1, 6.12 and 7.2.  The first ``mem=`` removes all of
memblock.memory (what the dtb's memory node gave, as QEMU wrote it); each
``mem=size[@start]`` then adds ``[start, start + size)``, ``start`` defaulting
to PHYS_OFFSET: arm_add_memory() rounds ``start`` up to a page and shortens
``size`` by as much, without LPAE drops what lies above 4 GiB ("Ignoring" /
"Truncating memory ... 32-bit physical address space"), cuts what lies below
PHYS_OFFSET ("Ignoring memory below PHYS_OFFSET"), rounds ``size`` down to a
page and memblock_add()s the rest.  Nothing checks the result against the
board's RAM: the kernel believes ``mem=``.

:func:`boot_stoppers` then says what such a memory map does to the boot the
harness needs (the initramfs QEMU loaded, the kernel image, RAM that is not
there).  All addresses are physical and all sizes in bytes.
"""

from __future__ import annotations

from harness.oracle.facts import PAGE_SIZE, align_up
from harness.oracle.state import BootState

U64 = 2**64 - 1
ULONG_MAX = 0xFFFFFFFF


def early_mem(s: BootState) -> None:
    """Every ``mem=`` of the command line in order: early_mem() (arch/arm/kernel/setup.c).

    The first one memblock_remove()s ``[memblock_start_of_DRAM(),
    memblock_end_of_DRAM())``; each one calls arm_add_memory(start, size).
    """
    for i, (size, start) in enumerate(s.early.mem):
        if i == 0 and s.mb.memory:
            first = s.mb.memory[0][0]
            s.mb.remove(first, s.mb.end_of_dram() - first)
        arm_add_memory(s, s.boot.phys_offset if start is None else start, size)


def arm_add_memory(s: BootState, start: int, size: int) -> None:
    """arm_add_memory(u64 start, u64 size) (arch/arm/kernel/setup.c), printing what it drops."""
    aligned = align_up(start, PAGE_SIZE) & U64
    size = 0 if aligned > (start + size) & U64 else size - (aligned - start)
    if not s.k.lpae:
        if aligned > ULONG_MAX:
            s.notes.append(f"Ignoring memory at 0x{start:08x} outside 32-bit physical address space")
            return
        if aligned + size > ULONG_MAX:
            s.notes.append(f"Truncating memory at 0x{start:08x} to fit in 32-bit physical address space")
            size = ULONG_MAX - aligned
    phys_offset = s.boot.phys_offset
    if aligned < phys_offset:
        if aligned + size <= phys_offset:
            s.notes.append(f"Ignoring memory below PHYS_OFFSET: 0x{aligned:08x}-0x{aligned + size:08x}")
            return
        s.notes.append(f"Ignoring memory below PHYS_OFFSET: 0x{aligned:08x}-0x{phys_offset:08x}")
        size -= phys_offset - aligned
        aligned = phys_offset
    size &= s.k.phys_mask & ~(PAGE_SIZE - 1)  # ~(phys_addr_t)(PAGE_SIZE - 1): 32 bits without LPAE
    if size:
        s.mb.add(aligned, size)


def boot_stoppers(s: BootState) -> list[str]:
    """Why the guest cannot reach its initramfs shell with this memory map ([] when it can).

    * reserve_initrd_mem() (init/initramfs.c) disabled the initrd QEMU loaded
      ("is not a memory region" / "overlaps in-use memory region"): the
      harness's root is that initramfs, so the boot ends in "VFS: Unable to
      mount root fs";
    * the kernel image is not inside memblock.memory (a ``mem=...@start``
      above it): its pages are not RAM to the kernel;
    * ``mem=`` claims RAM the board does not have.
    The last two are expected to stop the boot but are not modelled further.
    """
    out = [n for n in s.notes if n.startswith("INITRD:") and "disabling initrd" in n]
    if out:
        out = [f"{out[0]}: the initramfs is the guest's root, so 'VFS: Unable to mount root fs' follows"]
    image = s.boot.kernel_image
    if not _covered(s, image.base, image.base + image.size):
        out.append(f"the kernel image {s.k.pa(image.base)}+{image.size:#x} is not inside the memory "
                   "left by mem= (not modelled further)")
    ram = s.boot.ram
    for start, end, _ in s.mb.memory:
        if not any(b.base <= start and end <= b.base + b.size for b in ram):
            out.append(f"mem= claims RAM at {s.k.pa(start)}-{s.k.pa(end)} the board does not have "
                       "(not modelled further)")
    return out


def _covered(s: BootState, start: int, end: int) -> bool:
    """Is ``[start, end)`` (physical, bytes) all memblock.memory, NOMAP or not?"""
    for lo, hi, _ in s.mb.memory:
        if lo <= start < hi:
            start = hi
    return start >= end

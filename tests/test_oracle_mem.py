"""The cma= oracle with ``mem=`` (arch/arm/kernel/setup.c early_mem()) and on Linux 7.2.

The fixtures ``<version>-<board>-<cmdline, spaces as +>.log`` are real console
logs of ``cma-harness run -m harness/matrices/forms.toml`` cells: the harness's
own kernels (multi-v7 with VMSPLIT_3G + HIGHMEM for vexpress-a9/-a15 and
smdkc210, LPAE for virt; Linux 6.1.192, 6.12.95 and 7.2.13) with the series
applied, booted by QEMU 7.2 with the harness's initramfs, trimmed from
"Booting Linux" to "Memory:" (and the panic line when the guest could not
boot).  :data:`LAYOUT` rebuilds where each kernel and QEMU put things, as
measured from those builds (System.map's ``_stext``/``_end``, the initramfs
size, QEMU's ``fdt_totalsize()``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from harness.boards import MemoryBank
from harness.errors import InputError
from harness.oracle import (
    CmaBoot,
    DtReservedRegion,
    KernelFacts,
    Prediction,
    check_against_oracle,
    parse_early_params,
    predict,
    qemu_arm_load,
)

from .conftest import FIXTURES

M = 1 << 20
ORACLE = FIXTURES / "oracle"
V61, V612, V72 = (6, 1), (6, 12), (7, 2)
RAM = {"vexpress-a9": (0x60000000, 512 * M), "vexpress-a15": (0x80000000, 1024 * M),
       "smdkc210": (0x40000000, 1024 * M), "virt": (0x40000000, 3072 * M)}
DT = {"vexpress-a9": (DtReservedRegion("vram@4c000000", reg=((0x4C000000, 8 * M),), has_reg=True,
                                       no_map=True),),
      "vexpress-a15": (DtReservedRegion("vram@18000000", reg=((0x18000000, 8 * M),), has_reg=True,
                                        no_map=True),),
      "smdkc210": (DtReservedRegion("region-mfc-left", size=36 * M, alignment=4 * M, reusable=True),
                   DtReservedRegion("region-mfc-right", size=8 * M, alignment=4 * M, reusable=True)),
      "virt": ()}
# (version, board) -> (_end - _stext, initramfs bytes, QEMU's fdt_totalsize()), measured.
LAYOUT = {
    (V61, "vexpress-a9"): (0x8EF2C0, 1450319, 0xBC22),
    (V61, "vexpress-a15"): (0x8EF2C0, 1450319, 0xB3E0),
    (V61, "smdkc210"): (0x8EF2C0, 1450319, 0x194CA),
    (V61, "virt"): (0x8EEA28, 1449082, 0x100000),
    (V612, "vexpress-a9"): (0x8FFE38, 1455228, 0xBE12),
    (V612, "vexpress-a15"): (0x8FFE38, 1455228, 0xB480),
    (V612, "virt"): (0xAFF258, 1454294, 0x100000),
    (V72, "vexpress-a9"): (0x9F9FB4, 1460874, 0xBE12),
    (V72, "vexpress-a15"): (0x9F9FB4, 1460874, 0xB4D0),
    (V72, "smdkc210"): (0x9F9FB4, 1460874, 0x195A4),
    (V72, "virt"): (0xAF9334, 1457734, 0x100000),
}


def harness_boot(version: tuple[int, int], board: str) -> CmaBoot:
    """The oracle's view of a harness cell: kernel at PHYS_OFFSET + 1 MiB (LPAE: + 2 MiB)."""
    base, size = RAM[board]
    ram = (MemoryBank(base, size),)
    image, initrd, dtb = LAYOUT[version, board]
    lpae = board == "virt"
    load = qemu_arm_load(ram, 0, initrd, 0, dtb_total_size=dtb)
    facts = KernelFacts(version, 0xC0000000, highmem=True, lpae=lpae)
    pgdir = MemoryBank(base + 0x3000, 0x5000) if lpae else MemoryBank(base + 0x4000, 0x4000)
    return CmaBoot(ram, facts, base, MemoryBank(base + (0x200000 if lpae else 0x100000), image), pgdir,
                   load.initrd, load.dtb, dt_regions=DT[board])


# fixture version, board, the cell's cmdline, then outcome, MiB in the log, exact base, bootable.
CASES = [
    (V61, "vexpress-a9", "mem=256M cma=64M", "reserved", 64, 0x6C000000, True),
    (V61, "vexpress-a9", "mem=128M cma=32M", "reserved", 32, 0x66000000, False),
    (V61, "vexpress-a9", "mem=160M mem=128M@0x78000000 cma=64M", "reserved", 64, 0x7C000000, True),
    (V61, "vexpress-a9", "mem=384M cma=64M@0x7c000000", "failed", 64, None, True),
    (V61, "vexpress-a15", "mem=768M cma=64M", "reserved", 64, 0xAC000000, True),
    (V61, "vexpress-a15", "mem=262144K cma=16384K", "reserved", 16, 0x8F000000, True),
    (V61, "smdkc210", "mem=256M@0x40000000 mem=256M@0x60000000 cma=64M", "reserved", 64, 0x69400000, True),
    (V61, "virt", "mem=1G cma=64M", "reserved", 64, 0x7C000000, True),
    (V61, "virt", "mem=512M cma=64M@0x90000000", "failed", 64, None, True),
    (V612, "vexpress-a9", "mem=160M mem=128M@0x78000000 cma=64M", "reserved", 64, 0x7C000000, True),
    (V612, "vexpress-a15", "mem=262144K cma=16384K", "reserved", 16, 0x8F000000, True),
    (V612, "virt", "mem=1G cma=64M", "reserved", 64, 0x7C000000, True),
    (V72, "vexpress-a9", "mem=256M cma=64M", "reserved", 64, 0x6C000000, True),
    (V72, "vexpress-a9", "mem=128M cma=32M", "reserved", 32, 0x66000000, False),
    (V72, "vexpress-a15", "mem=768M cma=64M", "reserved", 64, 0xAC000000, True),
    (V72, "smdkc210", "mem=512M@0x40000000 cma=64M", "reserved", 64, 0x59400000, True),
    (V72, "virt", "mem=512M cma=64M@0x90000000", "failed", 64, None, True),
    (V72, "virt", "vmalloc=128M mem=2G cma=128M", "reserved", 128, 0xB8000000, True),
    # default-matrix forms on 7.2: the unrounded size, the late boundary check, the MFC pools
    (V72, "vexpress-a9", "cma=5M", "reserved", 5, 0x7F800000, True),
    (V72, "vexpress-a15", "cma=64M@0xae000000", "failed", 64, None, True),
    (V72, "smdkc210", "cma=64M", "reserved", 64, 0x79400000, True),
]


def _name(version: tuple[int, int], board: str, cmdline: str) -> str:
    return f"{version[0]}.{version[1]}-{board}-{cmdline.replace(' ', '+')}"


@pytest.mark.parametrize(("version", "board", "cmdline", "outcome", "mib", "base", "bootable"), CASES,
                         ids=[_name(*c[:3]) for c in CASES])
def test_real_mem_boot_logs_agree_with_the_oracle(version: tuple[int, int], board: str, cmdline: str,
                                                  outcome: str, mib: int, base: int | None,
                                                  bootable: bool) -> None:
    log = (ORACLE / f"{_name(version, board, cmdline)}.log").read_text()
    assert f"cmaharness.shell=batch {cmdline}\n" in log  # the fixture is the boot we model
    p = predict(cmdline, harness_boot(version, board))
    assert (p.outcome, p.expectation().size_mib, p.base, not p.unbootable) == (outcome, mib, base, bootable)
    assert p.ranges == (1 if outcome == "reserved" else 0)
    ok, message = check_against_oracle(p, log)
    assert ok, message
    assert ("Unable to mount root fs" in log) is (not bootable)
    # smdkc210's MFC regions become one-range pools (their bases: check_against_oracle above)
    assert [x.ranges for x in p.dt_pools] == ([1, 1] if board == "smdkc210" else [])


def test_72_real_boot_reserves_a_whole_pageblock_but_prints_the_size_given() -> None:
    log = (ORACLE / "7.2-vexpress-a9-cma=5M.log").read_text()
    assert "cma: Reserved 5 MiB at 0x7f800000" in log and "8192K cma-reserved" in log
    p = predict("cma=5M", harness_boot(V72, "vexpress-a9"))
    assert (p.size, p.printed_size) == (8 * M, 5 * M)


def test_mem_below_the_initrd_says_why_the_guest_cannot_boot() -> None:
    p = predict("mem=128M cma=32M", harness_boot(V61, "vexpress-a9"))
    line = "INITRD: 0x68000000+0x00163000 is not a memory region - disabling initrd"
    assert p.unbootable.startswith(line) and "VFS: Unable to mount root fs" in p.unbootable
    assert line in (ORACLE / "6.1-vexpress-a9-mem=128M+cma=32M.log").read_text()
    assert "the guest cannot boot" in check_against_oracle(p, "cma: Reserved 32 MiB at 0x66000000")[1]


def test_mem_twice_makes_two_banks_and_the_area_goes_to_the_upper_one() -> None:
    # 0x60000000-0x6a000000 keeps the kernel and the initrd; 0x78000000-0x80000000 is on top.
    p = predict("mem=160M mem=128M@0x78000000 cma=64M", harness_boot(V61, "vexpress-a9"))
    assert (p.base, p.hi) == (0x7C000000, 0x80000000)
    p = predict("mem=160M mem=128M@0x78000000 cma=64M@0x70000000", harness_boot(V61, "vexpress-a9"))
    assert (p.outcome, p.activates) == ("reserved", False)  # fixed, in the hole: not RAM to the kernel


def test_mem_moves_the_dt_regions_and_the_end_of_dram() -> None:
    p = predict("mem=512M@0x40000000 cma=64M", harness_boot(V61, "smdkc210"))
    assert {x.name: x.base for x in p.dt_pools} == {"region-mfc-right": 0x5F800000,
                                                    "region-mfc-left": 0x5D400000}
    assert p.base == 0x59400000
    p = predict("mem=384M cma=64M@0x7c000000", harness_boot(V61, "vexpress-a9"))
    assert p.log[-2] == "cma: Size (0x04000000) of region at 0x7c000000 exceeds limit (0x78000000)"


def test_arm_add_memory_rounds_and_drops_what_the_kernel_cannot_use() -> None:
    boot = harness_boot(V61, "vexpress-a9")
    p = predict("mem=256M@0x5ff00000 cma=16M", boot)  # below PHYS_OFFSET: cut at 0x60000000
    assert "Ignoring memory below PHYS_OFFSET: 0x5ff00000-0x60000000" in p.notes
    assert p.base == 0x6EC00000  # memory ends at 0x6ff00000; 4 MiB pageblocks
    p = predict("mem=64M@0x40000000 mem=256M cma=16M", boot)  # the first one is all below: ignored
    assert "Ignoring memory below PHYS_OFFSET: 0x40000000-0x44000000" in p.notes
    assert p.base == 0x6F000000
    p = predict("mem=256M@0x60000001 cma=16M", boot)  # start rounded up a page, size shortened
    assert p.base == 0x6F000000  # 0x60001000 + (256 MiB - 4 KiB) ends at 0x70000000
    with pytest.raises(InputError, match="no memory"):
        predict("mem=0 cma=16M", boot)
    with pytest.raises(InputError, match="no memory"):
        predict("mem=", boot)


def test_mem_beyond_4g_without_lpae_is_truncated_or_ignored() -> None:
    boot = harness_boot(V61, "vexpress-a9")
    p = predict("mem=256M mem=64M@0xfffff000 cma=16M", boot)
    assert "Truncating memory at 0xfffff000 to fit in 32-bit physical address space" in p.notes
    p = predict("mem=256M mem=64M@0x100000000 cma=16M", boot)
    assert "Ignoring memory at 0x100000000 outside 32-bit physical address space" in p.notes
    assert "does not have" not in p.unbootable


def test_mem_claiming_missing_ram_or_leaving_out_the_kernel_is_flagged() -> None:
    boot = harness_boot(V61, "vexpress-a9")
    assert "does not have" in predict("mem=1G cma=64M", boot).unbootable
    assert "kernel image" in predict("mem=256M@0x70000000 cma=64M", boot).unbootable


def test_mem_is_read_in_order_with_the_other_early_params() -> None:
    facts = harness_boot(V61, "vexpress-a9").kernel
    e = parse_early_params("mem=0x10000000 cma=32M mem=64K@0x70000000junk -- mem=1G", facts)
    assert e.mem == ((0x10000000, None), (64 << 10, 0x70000000))
    assert e.size == 32 * M


# --- Linux 7.2 -------------------------------------------------------------------------------


def _boot72(board: str = "vexpress-a15", *, highmem: bool = True,
            regions: tuple[DtReservedRegion, ...] | None = None) -> CmaBoot:
    boot = harness_boot(V61, board)
    facts = dataclasses.replace(boot.kernel, version=V72, highmem=highmem,
                                page_offset=0xC0000000 if highmem else 0x80000000)
    return dataclasses.replace(boot, kernel=facts, dt_regions=DT[board] if regions is None else regions)


def test_72_prints_the_unrounded_size_and_no_node() -> None:
    p = predict("cma=5M", _boot72())
    assert p.log[-1] == "cma: Reserved 5 MiB at 0xbf800000"  # an 8 MiB area
    assert (p.size, p.printed_size, p.size_mib, p.ranges) == (8 * M, 5 * M, 5, 1)
    assert check_against_oracle(p, "[    0.000000] cma: Reserved 5 MiB at 0xbf800000")[0]
    assert not check_against_oracle(p, "[    0.000000] cma: Reserved 8 MiB at 0xbf800000")[0]
    p = predict("cma=5M", dataclasses.replace(_boot72(), kernel=dataclasses.replace(_boot72().kernel,
                                                                                    version=V612)))
    assert p.log[-1] == "cma: Reserved 8 MiB at 0xbf800000 on node -1" and p.printed_size is None
    assert predict("cma=1G", _boot72()).log[-1] == "cma: Failed to reserve 1024 MiB"


def test_72_checks_the_low_high_boundary_after_the_limit_and_only_with_highmem() -> None:
    # a15 with the 3G split: lowmem ends at 0xb0000000, RAM at 0xc0000000
    assert predict("cma=64M@0xae000000", _boot72()).log[-2] == \
        "cma: Region at 0xae000000 defined on low/high memory boundary (0xb0000000)"
    over: Prediction = predict("mem=784M cma=64M@0xae000000", _boot72())  # RAM ends 0xb1000000
    assert over.log[-2] == "cma: Size (0x04000000) of region at 0xae000000 exceeds limit (0xb1000000)"
    v612 = dataclasses.replace(_boot72(), kernel=dataclasses.replace(_boot72().kernel, version=V612))
    assert "boundary" in predict("mem=784M cma=64M@0xae000000", v612).log[-2]
    # without HIGHMEM the end of lowmem is the end of RAM: 6.12 still says "boundary", 7.2 "exceeds"
    assert "exceeds limit" in predict("cma=64M@0x7e000000", _boot72("vexpress-a9", highmem=False)).log[-2]


def test_72_skips_a_dt_default_pool_before_reserving_it() -> None:
    pool = (DtReservedRegion("linux,cma", size=32 * M, reusable=True, cma_default=True),)
    p = predict("cma=64M", _boot72(regions=pool))
    assert p.dt_pools == () and p.base == 0xBC000000
    assert 'Skipping dt linux,cma-default node in favor for "cma=" kernel param.' in p.notes
    assert not any("bypass" in line for line in p.log)
    static = (DtReservedRegion("linux,cma", reg=((0xBE000000, 32 * M),), has_reg=True, reusable=True,
                               cma_default=True),)
    p = predict("cma=64M", _boot72(regions=static))  # never reserved: the top of RAM stays free
    assert p.base == 0xBC000000 and p.notes.count(
        'Skipping dt linux,cma-default node in favor for "cma=" kernel param.') == 2
    v612 = dataclasses.replace(_boot72(regions=static),
                               kernel=dataclasses.replace(_boot72().kernel, version=V612))
    assert predict("cma=64M", v612).base == 0xBA000000  # 6.12 frees it only after the reservation
    assert predict("", _boot72(regions=pool)).dt_pools[0].ranges == 1


def test_72_reserves_only_the_first_reg_entry() -> None:
    two = (DtReservedRegion("fb", reg=((0xBF000000, 16 * M), (0xBE000000, 16 * M)), has_reg=True,
                            no_map=True),)
    p = predict("cma=16M", _boot72(regions=two))
    assert p.base == 0xBE000000 and any("only the first is used" in n for n in p.notes)
    v612 = dataclasses.replace(_boot72(regions=two), kernel=dataclasses.replace(_boot72().kernel,
                                                                                version=V612))
    assert predict("cma=16M", v612).base == 0xBD000000


TREE72 = Path("/tmp/k72/linux-source-7.2")
FORMATS72 = [  # (file, format as in the 7.2 source, cmdline, the oracle's line)
    ("mm/cma.c", 'pr_info("Reserved %ld MiB at %pa\\n"', "cma=64M", "cma: Reserved 64 MiB at 0xbc000000"),
    ("mm/cma.c", 'pr_err("Failed to reserve %ld MiB\\n"', "cma=1G", "cma: Failed to reserve 1024 MiB"),
    ("mm/cma.c", 'pr_err("Region at %pa defined on low/high memory boundary (%pa)\\n"', "cma=64M@0xae000000",
     "cma: Region at 0xae000000 defined on low/high memory boundary (0xb0000000)"),
    ("kernel/dma/contiguous.c", 'pr_err("Skipping dt linux,cma-default node in favor for \\"cma=\\" '
     'kernel param.\\n"', "", ""),
    ("arch/arm/kernel/setup.c", 'pr_info("Ignoring memory below PHYS_OFFSET: 0x%08llx-0x%08llx\\n"', "", ""),
    ("init/initramfs.c", '"INITRD: 0x%08llx+0x%08lx is not a memory region"', "", ""),
]


@pytest.mark.parametrize(("path", "source", "cmdline", "line"), FORMATS72)
def test_printk_formats_of_7_2(path: str, source: str, cmdline: str, line: str) -> None:
    tree = TREE72 / path
    if tree.is_file():  # the quote is what the kernel source says
        assert source in tree.read_text()
    if line:
        assert line in predict(cmdline, _boot72()).log

"""The cma= oracle against real boot logs (tests/fixtures/oracle/) and the kernel's rules.

Every fixture is a real console log of the harness's kernels (Linux 6.1.176 and
6.12.95, vexpress_defconfig + CMA fragments, VMSPLIT_2G, no HIGHMEM; and
"6.1-highmem": 6.1.176 with VMSPLIT_3G + HIGHMEM and the series' patch that
makes the smdkv310 MFC regions reusable) booted by QEMU 7.2 with
``rdinit=/nonexistent`` (so the boot stops after the reservations), trimmed to
the boot lines up to "Memory:".  The boots below rebuild the exact
layout of those runs: System.map's ``_stext``/``_end``, the initramfs size and
the dtb size (QEMU makes ``fdt_totalsize()`` ``(file + 10000) * 2``).
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.boards import MemoryBank
from harness.checks import CmaExpectation
from harness.errors import InputError
from harness.oracle import (
    KERNEL_QUIRKS,
    CmaBoot,
    DtReservedRegion,
    KernelFacts,
    Prediction,
    _Entry,
    check_against_oracle,
    kernel_facts_from_config,
    kernel_heapsort,
    parse_early_params,
    predict,
    qemu_arm_load,
    quirks_for,
    read_reserved_memory,
)

from .conftest import FIXTURES

M = 1 << 20
ORACLE = FIXTURES / "oracle"
RAM = {"vexpress-a9": (0x60000000, 512 * M), "vexpress-a15": (0x80000000, 1024 * M),
       "smdkc210": (0x40000000, 1024 * M)}
# Measured on the harness's kernels, keyed by (version, VMSPLIT_3G + HIGHMEM):
# (_end - _stext, initramfs size, zImage size) and the dtbs' file sizes.
KERNEL = {((6, 1), False): (0xD49CE8, 1464199, 5565192), ((6, 12), False): (0xE66490, 1469146, 6168568),
          ((6, 1), True): (0xD4E668, 1464945, 5568536)}
DTB_FILE = {((6, 1), False): {"vexpress-a9": 14081, "vexpress-a15": 13024, "smdkc210": 41811},
            ((6, 12), False): {"vexpress-a9": 14329, "vexpress-a15": 13104, "smdkc210": 41920},
            ((6, 1), True): {"vexpress-a9": 14081, "vexpress-a15": 13024, "smdkc210": 41813}}
VRAM = {"vexpress-a9": (DtReservedRegion("vram@4c000000", reg=((0x4C000000, 8 * M),), has_reg=True,
                                         no_map=True),),
        "vexpress-a15": (DtReservedRegion("vram@18000000", reg=((0x18000000, 8 * M),), has_reg=True,
                                          no_map=True),)}
MFC_NOMAP = (DtReservedRegion("region-mfc-left", size=36 * M, alignment=M, no_map=True),
             DtReservedRegion("region-mfc-right", size=8 * M, alignment=M, no_map=True))
MFC_REUSABLE = (DtReservedRegion("region-mfc-left", size=36 * M, alignment=4 * M, reusable=True),
                DtReservedRegion("region-mfc-right", size=8 * M, alignment=4 * M, reusable=True))


def boot(version: tuple[int, int], board: str, *, split_3g: bool = False,
         regions: tuple[DtReservedRegion, ...] | None = None) -> CmaBoot:
    """The layout of a harness boot: kernel at PHYS_OFFSET + 1 MiB (_stext), initrd and dtb by QEMU.

    ``split_3g`` gives the VMSPLIT_3G + HIGHMEM kernel (PAGE_OFFSET 0xc0000000),
    whose smdkv310 dtb has the series' reusable MFC regions.
    """
    base, size = RAM[board]
    ram = (MemoryBank(base, size),)
    image, initrd, zimage = KERNEL[version, split_3g]
    load = qemu_arm_load(ram, zimage, initrd, DTB_FILE[version, split_3g][board])
    facts = KernelFacts(version, 0xC0000000 if split_3g else 0x80000000, highmem=split_3g, lpae=False)
    dt = regions if regions is not None else VRAM.get(board, MFC_REUSABLE if split_3g else MFC_NOMAP)
    return CmaBoot(ram, facts, base, MemoryBank(base + 0x100000, image), MemoryBank(base + 0x4000, 0x4000),
                   load.initrd, load.dtb, dt_regions=dt)


def run(cmdline: str, version: tuple[int, int] = (6, 1), board: str = "vexpress-a9",
        **kwargs: bool | tuple[DtReservedRegion, ...]) -> Prediction:
    return predict(cmdline, boot(version, board, **kwargs))  # type: ignore[arg-type]


# --- real logs ------------------------------------------------------------------------

V61, V612 = (6, 1), (6, 12)
# fixture, kernel, board, the cell's cmdline, then outcome, MiB, exact base.
CASES = [
    ("6.1-vexpress-a9-default", V61, "vexpress-a9", "", "reserved", 16, 0x7F000000),
    ("6.1-vexpress-a9-cma=5M", V61, "vexpress-a9", "cma=5M", "reserved", 8, 0x7F800000),
    ("6.1-vexpress-a9-cma=380M", V61, "vexpress-a9", "cma=380M", "reserved", 380, 0x68400000),
    ("6.1-vexpress-a9-cma=384M", V61, "vexpress-a9", "cma=384M", "failed", 384, None),
    ("6.1-vexpress-a9-cma=64M@0x68000000", V61, "vexpress-a9", "cma=64M@0x68000000", "failed", 64, None),
    ("6.1-vexpress-a9-cma=5M@0x70100000", V61, "vexpress-a9", "cma=5M@0x70100000", "failed", 5, None),
    ("6.1-vexpress-a9-cma=64M@0xa0000000", V61, "vexpress-a9", "cma=64M@0xa0000000", "failed", 64, None),
    ("6.1-vexpress-a9-cma=64M@0x7e000000", V61, "vexpress-a9", "cma=64M@0x7e000000", "failed", 64, None),
    ("6.1-vexpress-a9-cma=64M@0x60000000-0x70000000", V61, "vexpress-a9",
     "cma=64M@0x60000000-0x70000000", "reserved", 64, 0x6C000000),
    ("6.1-vexpress-a9-cma=lots", V61, "vexpress-a9", "cma=lots", "none", None, None),
    ("6.1-vexpress-a9-cma=64Mb", V61, "vexpress-a9", "cma=64Mb", "reserved", 64, 0x7C000000),
    ("6.1-vexpress-a9-cma=64M@0x70000000+cma=32M", V61, "vexpress-a9", "cma=64M@0x70000000 cma=32M",
     "reserved", 32, 0x72000000),
    ("6.1-vexpress-a9-cma=4G", V61, "vexpress-a9", "cma=4G", "none", None, None),
    ("6.1-vexpress-a9-cma=64M@0x10000000", V61, "vexpress-a9", "earlycon=pl011,0x10009000 cma=64M@0x10000000",
     "reserved", 64, 0x10000000),
    ("6.1-vexpress-a15-cma=64M@0xfe000000", V61, "vexpress-a15",
     "earlycon=pl011,0x1c090000 cma=64M@0xfe000000", "reserved", 64, 0xFE000000),
    ("6.1-vexpress-a15-vmalloc=1500M+cma=64M", V61, "vexpress-a15", "vmalloc=1500M cma=64M",
     "reserved", 64, 0x9D400000),
    ("6.1-vexpress-a15-cma=0xffffffff", V61, "vexpress-a15", "cma=0xffffffff", "reserved", 16, 0xBF000000),
    ("6.1-smdkc210-default", V61, "smdkc210", "", "reserved", 16, 0x7C400000),
    ("6.12-vexpress-a9-default", V612, "vexpress-a9", "", "reserved", 16, 0x7F000000),
    ("6.12-vexpress-a9-cma=64M@0xa0000000", V612, "vexpress-a9", "cma=64M@0xa0000000", "failed", 64, None),
    ("6.12-vexpress-a15-cma=900M", V612, "vexpress-a15", "cma=900M", "failed", 900, None),
    ("6.12-smdkc210-default", V612, "smdkc210", "", "reserved", 16, 0x7C400000),
]


HIGHMEM_CASES = [
    ("6.1-highmem-vexpress-a15-default", "vexpress-a15", "", "reserved", 16, 0xBF000000),
    ("6.1-highmem-vexpress-a15-cma=300M", "vexpress-a15", "cma=300M", "reserved", 300, 0x9D400000),
    ("6.1-highmem-vexpress-a15-cma=64M@0xae000000", "vexpress-a15", "cma=64M@0xae000000", "failed", 64,
     None),
    ("6.1-highmem-vexpress-a15-cma=64M@0xa0000000-0xc0000000", "vexpress-a15",
     "cma=64M@0xa0000000-0xc0000000", "reserved", 64, 0xBC000000),
    ("6.1-highmem-smdkc210-default", "smdkc210", "", "reserved", 16, 0x7C400000),
    ("6.1-highmem-smdkc210-cma=256M", "smdkc210", "cma=256M", "reserved", 256, 0x60000000),
    ("6.1-highmem-vexpress-a9-vmalloc=512M+cma=32M", "vexpress-a9", "vmalloc=512M cma=32M", "reserved", 32,
     0x7D000000),
]


def fixture(name: str) -> str:
    return (ORACLE / f"{name}.log").read_text()


@pytest.mark.parametrize(("name", "version", "board", "cmdline", "outcome", "mib", "base"), CASES,
                         ids=[c[0] for c in CASES])
def test_real_boot_logs_agree_with_the_oracle(name: str, version: tuple[int, int], board: str,
                                              cmdline: str, outcome: str, mib: int | None,
                                              base: int | None) -> None:
    log = fixture(name)
    assert f"rdinit=/nonexistent {cmdline}".strip() in log  # the fixture is the boot we model
    p = predict(cmdline, boot(version, board))
    assert (p.outcome, p.expectation().size_mib, p.base) == (outcome, mib, base)
    ok, message = check_against_oracle(p, log)
    assert ok, message


@pytest.mark.parametrize(("name", "board", "cmdline", "outcome", "mib", "base"), HIGHMEM_CASES,
                         ids=[c[0] for c in HIGHMEM_CASES])
def test_real_highmem_boot_logs_agree_with_the_oracle(name: str, board: str, cmdline: str, outcome: str,
                                                      mib: int | None, base: int | None) -> None:
    log = fixture(name)
    assert f"rdinit=/nonexistent {cmdline}".strip() in log
    p = predict(cmdline, boot(V61, board, split_3g=True))
    assert (p.outcome, p.expectation().size_mib, p.base) == (outcome, mib, base)
    ok, message = check_against_oracle(p, log)
    assert ok, message


@pytest.mark.parametrize("version", [V61, V612])
def test_reusable_mfc_regions_become_dt_cma_pools(version: tuple[int, int]) -> None:
    # The series makes the smdkv310 MFC regions reusable with 4 MiB alignment;
    # the logs are boots of the real dtb with exactly that change (fdtput).
    p = run("cma=64M", version, "smdkc210", regions=MFC_REUSABLE)
    ok, message = check_against_oracle(p, fixture(f"{version[0]}.{version[1]}-smdkc210-reusable-mfc-cma=64M"))
    assert ok, message
    pools = {pool.name: pool.base for pool in p.dt_pools}
    if version == V61:  # lib/sort.c heapsort swaps the two dynamic regions: right goes first, on top
        assert pools == {"region-mfc-right": 0x7F800000, "region-mfc-left": 0x7D400000}
    else:  # 6.12 allocates dynamic regions in DT order
        assert pools == {"region-mfc-left": 0x7DC00000, "region-mfc-right": 0x7D400000}
    assert (p.base, p.notes) == (0x79400000, ())  # under the pools; no no-map so no "Ignoring RAM"


def test_no_map_mfc_regions_are_ignored_ram_after_the_reservation() -> None:
    p = run("", V61, "smdkc210")
    assert p.base == 0x7C400000 and p.dt_pools == ()
    assert p.notes[:1] == ("Ignoring RAM at 0x7d400000-0x80000000",)
    assert "Ignoring RAM at 0x7d400000-0x80000000" in fixture("6.1-smdkc210-default")


def test_qemu_loader_and_kernel_image_match_a_memblock_debug_boot() -> None:
    log = fixture("6.1-vexpress-a9-memblock=debug")
    b = boot(V61, "vexpress-a9")
    assert "memblock_reserve: [0x60100000-0x60e49ce7] arm_memblock_init" in log  # _stext.._end
    assert "memblock_reserve: [0x68000000-0x68165fff] reserve_initrd_mem" in log  # base + 128 MiB
    assert "memblock_reserve: [0x60004000-0x60007fff] arm_memblock_init" in log  # swapper_pg_dir
    assert "reserved[0x2]\t[0x68000000-0x68171c21]" in log  # initrd, then the dtb page-aligned after it
    assert (b.kernel_image.base, b.kernel_image.base + b.kernel_image.size - 1) == (0x60100000, 0x60E49CE7)
    assert (b.initrd, b.dtb) == (MemoryBank(0x68000000, 1464199), MemoryBank(0x68166000, 0xBC22))


# --- rules of cma_declare_contiguous_nid() -----------------------------------------------


def test_size_is_rounded_up_to_a_pageblock_and_placed_top_down() -> None:
    p = run("cma=5M")
    assert (p.size, p.base, p.lo, p.hi) == (8 * M, 0x7F800000, 0x1000, 0x80000000)
    assert p.log[-1] == "cma: Reserved 8 MiB at 0x7f800000"


def test_misaligned_fixed_base_fails_with_the_unrounded_size() -> None:
    p = run("cma=5M@0x70100000")
    assert (p.outcome, p.size) == ("failed", 5 * M)
    assert p.log[-2:] == ("cma: Region at 0x70100000 must be aligned to 0x00400000 bytes",
                          "cma: Failed to reserve 5 MiB")


@pytest.mark.parametrize(("cmdline", "what"), [("cma=64M@0x68000000", "initrd at base + 128 MiB"),
                                                ("cma=16M@0x60000000", "kernel image"),
                                                ("cma=4M@0x68000000", "first page of the initrd")])
def test_fixed_region_over_a_reservation_is_ebusy(cmdline: str, what: str) -> None:
    p = run(cmdline)
    assert p.outcome == "failed", what
    assert "-EBUSY" in p.reason and p.log[-1].startswith("cma: Failed to reserve")
    assert not any("Region at" in line or "exceeds" in line for line in p.log)


def test_fixed_region_just_past_initrd_and_dtb_fits() -> None:
    assert run("cma=4M@0x68400000").base == 0x68400000


def test_top_down_allocation_skips_the_initrd_block() -> None:
    assert run("cma=380M").base == 0x68400000  # the dtb ends at 0x68171c22
    p = run("cma=384M")  # would need 0x68000000, under the initrd: the next free range is too small
    assert (p.outcome, p.log[-1]) == ("failed", "cma: Failed to reserve 384 MiB")


def test_limits_and_boundary_messages() -> None:
    assert run("cma=64M@0xa0000000").log[-2] == \
        "cma: Size (0x04000000) of region at 0xa0000000 exceeds limit (0x80000000)"
    assert run("cma=64M@0x70000000-0x60000000").log[-2] == \
        "cma: Size (0x04000000) of region at 0x70000000 exceeds limit (0x60000000)"
    # Without HIGHMEM, highmem_start is the end of lowmem = end of RAM: still checked first.
    assert run("cma=64M@0x7e000000").log[-2] == \
        "cma: Region at 0x7e000000 defined on low/high memory boundary (0x80000000)"


def test_base_zero_is_not_fixed_and_finds_no_ram_below_the_limit() -> None:
    p = run("cma=64M@0")  # limit_cmdline = 64 MiB; RAM starts at 0x60000000
    assert p.outcome == "failed" and "-ENOMEM" in p.reason


def test_ranged_placement_fits_or_fails_within_the_range() -> None:
    assert run("cma=64M@0x60000000-0x70000000").base == 0x6C000000
    assert run("cma=128M@0x60000000-0x70000000").outcome == "failed"


# --- early_cma() -----------------------------------------------------------------------------


def test_early_params_carry_over_and_stop_at_double_dash() -> None:
    facts = boot(V61, "vexpress-a9").kernel
    e = parse_early_params("cma=64M@0x70000000 cma=32M", facts)
    assert (e.size, e.base, e.limit) == (32 * M, 0x70000000, 0x74000000)
    assert run("cma=64M@0x70000000 cma=32M").base == 0x72000000  # not fixed: 0x72000000 != limit
    assert run("cma=64M -- cma=32M").size == 64 * M
    assert run("cma").log[0] == "cma: Config string not provided" and run("cma").size == 16 * M
    assert run("cma=").outcome == "none"


def test_trailing_characters_are_ignored_with_a_warning() -> None:
    p = run("cma=64Mb")
    assert p.log[:2] == ('cma: ignoring trailing characters "b" of cma=',
                         "cma: command line: size 0x04000000, base 0x00000000, limit 0x00000000")
    assert run("cma=lots").outcome == "none"


def test_phys_addr_t_is_32_bits_without_lpae() -> None:
    assert run("cma=4G").outcome == "none"  # memparse() gives 4 GiB, size_cmdline keeps 0
    assert run("cma=0xffffffff").size == 16 * M  # == -1, "not given": the Kconfig default
    # 0xfe000000 + 64 MiB wraps: limit 0x02000000 == base + size, so fixed, and accepted
    p = run("cma=64M@0xfe000000", board="vexpress-a15")
    assert (p.outcome, p.base, p.activates) == ("reserved", 0xFE000000, False)
    assert "WARNING: CPU: 0 PID: 1 at" in fixture("6.1-vexpress-a15-cma=64M@0xfe000000")
    lpae = dataclasses.replace(boot(V61, "vexpress-a9"),
                               kernel=KernelFacts(V61, 0xC0000000, highmem=True, lpae=True))
    # With LPAE the size survives, but "%ld MiB" of (unsigned long)size prints 0 for 4 GiB.
    assert predict("cma=4G", lpae).log[-2:] == ("cma: Size (0x0000000100000000) of region at "
                                                "0x0000000000000000 exceeds limit (0x0000000080000000)",
                                                "cma: Failed to reserve 0 MiB")


def test_fixed_region_outside_ram_is_reserved_but_cannot_activate() -> None:
    p = run("cma=64M@0x10000000")
    assert (p.outcome, p.activates) == ("reserved", False)
    assert "Unable to handle kernel paging request" in fixture("6.1-vexpress-a9-cma=64M@0x10000000")


def test_mem_rewrites_the_ram_map_and_a_bare_mem_is_refused() -> None:
    p = run("mem=256M cma=64M")  # memory 0x60000000-0x70000000: top-down under the new end
    assert (p.outcome, p.base, p.hi, p.unbootable) == ("reserved", 0x6C000000, 0x70000000, "")
    with pytest.raises(InputError, match="bare 'mem'"):
        run("mem cma=64M")


# --- HIGHMEM (VMSPLIT_3G), vmalloc=, LPAE ----------------------------------------------------


def test_3g_split_puts_the_default_area_in_highmem_first() -> None:
    # a15: lowmem ends at PHYS_OFFSET + 768 MiB = 0xb0000000; RAM ends 0xc0000000.
    p = run("", board="vexpress-a15", split_3g=True)
    assert (p.base, p.lo, p.hi) == (0xBF000000, 0xB0000000, 0xC0000000)
    p = run("cma=64M@0xae000000", board="vexpress-a15", split_3g=True)
    assert p.log[-2] == "cma: Region at 0xae000000 defined on low/high memory boundary (0xb0000000)"
    # too big for highmem's 256 MiB: falls back to lowmem [base, 0xb0000000)
    p = run("cma=300M", board="vexpress-a15", split_3g=True)
    assert (p.base, p.hi) == (0xB0000000 - 300 * M, 0xB0000000)


def test_3g_split_smdkc210_highmem_holds_the_mfc_regions_too() -> None:
    # Dynamic DT regions use MEMBLOCK_ALLOC_ANYWHERE: the top of *all* RAM, highmem included.
    p = run("", board="smdkc210", split_3g=True)
    assert p.base == 0x7C400000 and p.lo == 0x70000000
    p = run("cma=256M", board="smdkc210", split_3g=True)
    assert (p.base, p.hi) == (0x60000000, 0x70000000)


def test_vmalloc_moves_the_lowmem_limit() -> None:
    p = run("vmalloc=1500M cma=64M", board="vexpress-a15")
    assert p.base == 0x9D400000
    assert p.notes[:1] == ("Ignoring RAM at 0xa1400000-0xc0000000",)
    assert run("vmalloc=512M", split_3g=True).lo == 0x7F000000  # a9: 16 MiB of highmem


def _virt(version: tuple[int, int], ram_gib: int) -> CmaBoot:
    facts = KernelFacts(version, 0xC0000000, highmem=True, lpae=True, pageblock_order=9)
    ram = (MemoryBank(0x40000000, ram_gib << 30),)
    load = qemu_arm_load(ram, 6 * M, 2 * M, 0, dtb_total_size=0x100000)
    return CmaBoot(ram, facts, 0x40000000, MemoryBank(0x40100000, 14 * M),
                   MemoryBank(0x40003000, 0x5000), load.initrd, load.dtb)


def test_lpae_above_4g_612_goes_bottom_up_from_4g_and_61_leaks_highmem() -> None:
    p = predict("cma=64M", _virt(V612, 4))
    assert p.base == 1 << 32 and p.log[-1] == "cma: Reserved 64 MiB at 0x0000000100000000 on node -1"
    p = predict("cma=64M", _virt(V61, 4))  # 6.1 overwrites the highmem result with the failed 4G try
    assert p.base == 0x70000000 - 64 * M and any("leaks" in n for n in p.notes)
    assert predict("cma=3M", _virt(V612, 2)).size == 4 * M  # 2 MiB pageblocks with LPAE + huge pages


# --- DT linux,cma-default ---------------------------------------------------------------------


def test_dt_default_pool_replaces_or_yields_to_the_cmdline() -> None:
    pool = (DtReservedRegion("linux,cma", size=32 * M, reusable=True, cma_default=True),)
    p = run("", regions=pool)
    assert (p.outcome, p.dt_pools[0].base) == ("none", 0x7E000000)
    p = run("cma=64M", regions=pool)  # rmem_cma_setup() bypasses it, the region is given back
    assert (p.base, p.dt_pools) == (0x7C000000, ())
    assert "Reserved memory: bypass linux,cma node, using cmdline CMA params instead" in p.log


def test_kernel_heapsort_swaps_two_equal_elements() -> None:
    a, b = (_Entry(r, 0, 0) for r in MFC_NOMAP)
    assert [e.region.name for e in kernel_heapsort([a, b], lambda x, y: 0)] == \
        ["region-mfc-right", "region-mfc-left"]


# --- the printk formats of both kernels, quoted from their sources ----------------------------

FORMATS = [  # (version, file, format as in the source, the oracle's line for the same values)
    (V61, "mm/cma.c", 'pr_info("Reserved %ld MiB at %pa\\n"', "cma=64M",
     "cma: Reserved 64 MiB at 0x7c000000"),
    (V612, "mm/cma.c", 'pr_info("Reserved %ld MiB at %pa on node %d\\n"', "cma=64M",
     "cma: Reserved 64 MiB at 0x7c000000 on node -1"),
    (V61, "mm/cma.c", 'pr_err("Failed to reserve %ld MiB\\n"', "cma=1G", "cma: Failed to reserve 1024 MiB"),
    (V612, "mm/cma.c", 'pr_err("Failed to reserve %ld MiB on node %d\\n"', "cma=1G",
     "cma: Failed to reserve 1024 MiB on node -1"),
    (V61, "mm/cma.c", 'pr_err("Region at %pa must be aligned to %pa bytes\\n"', "cma=8M@0x70100000",
     "cma: Region at 0x70100000 must be aligned to 0x00400000 bytes"),
    (V612, "mm/cma.c", 'pr_err("Region at %pa defined on low/high memory boundary (%pa)\\n"',
     "cma=64M@0x7e000000", "cma: Region at 0x7e000000 defined on low/high memory boundary (0x80000000)"),
    (V612, "mm/cma.c", 'pr_err("Size (%pa) of region at %pa exceeds limit (%pa)\\n"', "cma=64M@0xa0000000",
     "cma: Size (0x04000000) of region at 0xa0000000 exceeds limit (0x80000000)"),
    (V61, "kernel/dma/contiguous.c", 'pr_info("command line: size %pa, base %pa, limit %pa\\n"',
     "cma=64M@0x70000000", "cma: command line: size 0x04000000, base 0x70000000, limit 0x74000000"),
    (V612, "kernel/dma/contiguous.c", 'pr_warn("ignoring trailing characters \\"%s\\" of cma=\\n"',
     "cma=64Mb", 'cma: ignoring trailing characters "b" of cma='),
]
TREES = {V61: Path("/root/.cache/cma-harness/trees/680bdbbb0c19460b"),
         V612: Path("/root/.cache/cma-harness/trees/19438baff39d92b4")}


def _printf(fmt: str, *args: int | str) -> str:
    """C printf for the conversions used here; %pa as on a 32-bit phys_addr_t."""
    values = iter(args)

    def one(m: re.Match[str]) -> str:
        value = next(values)
        return f"0x{value:08x}" if m.group(0) == "%pa" else str(value)

    return re.sub(r"%pa|%ld|%d|%s", one, fmt)


@pytest.mark.parametrize(("version", "path", "source", "cmdline", "line"), FORMATS)
def test_printk_formats_of_both_kernels(version: tuple[int, int], path: str, source: str, cmdline: str,
                                        line: str) -> None:
    tree = TREES[version] / path
    if tree.is_file():  # the quote is what the kernel source says
        assert source in tree.read_text()
    fmt = json.loads(source[source.index('"'):source.rindex('"') + 1])
    args: dict[str, tuple[int | str, ...]] = {
        "Reserved": (64, 0x7C000000, -1), "Failed": (1024, -1), "Region at %pa must": (0x70100000, 4 * M),
        "Region at %pa defined": (0x7E000000, 0x80000000), "Size": (64 * M, 0xA0000000, 0x80000000),
        "command": (64 * M, 0x70000000, 0x74000000), "ignoring": ("b",)}
    key = next(k for k in args if fmt.startswith(k))
    rendered = "cma: " + _printf(fmt, *args[key]).rstrip("\n")
    assert rendered == line
    assert line in run(cmdline, version).log


# --- check_against_oracle and builders ---------------------------------------------------------


def test_check_against_oracle_shows_both_sides_on_a_mismatch() -> None:
    p = run("cma=64M")
    ok, message = check_against_oracle(p, fixture("6.1-vexpress-a9-default"))
    assert not ok
    assert "oracle predicted 64 MiB at 0x7c000000" in message
    assert "  cma: Reserved 16 MiB at 0x7f000000" in message
    assert p.expectation() == CmaExpectation("reserved", 64)
    assert run("cma=0").expectation() == CmaExpectation("none")


def test_kernel_facts_from_config() -> None:
    config = "\n".join(["CONFIG_PAGE_OFFSET=0xC0000000", "CONFIG_HIGHMEM=y", "CONFIG_ARM_LPAE=y",
                        "CONFIG_DMA_CMA=y", "CONFIG_CMA_SIZE_MBYTES=32", "CONFIG_CMA_SIZE_SEL_MBYTES=y",
                        "CONFIG_CMA_AREAS=7", "CONFIG_TRANSPARENT_HUGEPAGE=y"])
    facts = kernel_facts_from_config(config, "6.12.95")
    assert (facts.page_offset, facts.highmem, facts.lpae) == (0xC0000000, True, True)
    assert facts.cma_size_mbytes == 32
    assert (facts.cma_min_alignment, facts.max_cma_areas) == (2 * M, 7)  # THP: pageblock = PMD
    facts = kernel_facts_from_config(config, "6.1.176")
    assert (facts.cma_min_alignment, facts.max_cma_areas) == (4 * M, 8)  # 6.1 ignores THP here
    with pytest.raises(InputError):
        kernel_facts_from_config(config, "5.15.0")


# --- version facts ----------------------------------------------------------------------------


def test_quirks_of_6_1_6_12_and_7_2() -> None:
    old, new, v72 = (dataclasses.asdict(quirks_for(v)) for v in (V61, V612, (7, 2)))
    later = {"cma_log_rounded_size": True, "cma_boundary_check_late": False, "cma_slot_checked_last": False,
             "dma_cmdline_limit_wins": False, "pageblock_max_order_config": False,
             "reserved_mem_validate_first": False, "reserved_mem_reg_first_only": False}
    assert old == {"max_cma_areas_extra": 1, "max_order_default": 11, "max_order_inclusive": False,
                   "pageblock_follows_thp": False, "memreserve_scanned_first": True,
                   "reserved_mem_sorted_before_alloc": True, "reserved_mem_static_init_late": False,
                   "reserved_mem_alloc_next_to_neighbour": False, "cma_log_node": False,
                   "cma_above_4g_first": False, **later}
    assert new == {"max_cma_areas_extra": 0, "max_order_default": 10, "max_order_inclusive": True,
                   "pageblock_follows_thp": True, "memreserve_scanned_first": False,
                   "reserved_mem_sorted_before_alloc": False, "reserved_mem_static_init_late": True,
                   "reserved_mem_alloc_next_to_neighbour": True, "cma_log_node": True,
                   "cma_above_4g_first": True, **later}
    assert v72 == {**new, "cma_log_node": False, **{name: not value for name, value in later.items()}}
    assert set(KERNEL_QUIRKS) == {V61, V612, (7, 2)}
    assert KernelFacts(V612, 0x80000000, highmem=False, lpae=False).quirks is quirks_for(V612)


@pytest.mark.parametrize(("version", "modelled_as"), [((6, 3), V61), ((6, 14), V612), ((7, 2), (7, 2)),
                                                      ((7, 9), (7, 2)), ((8, 0), (7, 2))])
def test_versions_are_taken_by_range(version: tuple[int, int], modelled_as: tuple[int, int]) -> None:
    assert quirks_for(version) is KERNEL_QUIRKS[modelled_as]


@pytest.mark.parametrize(("version", "why"), [((5, 15), ""), ((6, 0), ""), ((6, 4), "MAX_ORDER"),
                                              ((6, 6), "MAX_ORDER"), ((6, 15), "cma_declare_contiguous_nid"),
                                              ((7, 1), "cma_declare_contiguous_nid")])
def test_an_unmodelled_version_is_refused_clearly(version: tuple[int, int], why: str) -> None:
    name = f"{version[0]}.{version[1]}"
    modelled = r"models Linux 6\.1-6\.3, 6\.12-6\.14 and 7\.2 or later"
    with pytest.raises(InputError, match=rf"{modelled}, not {re.escape(name)}\b.*{why}"):
        quirks_for(version)
    facts = KernelFacts(version, 0x80000000, highmem=False, lpae=False)
    with pytest.raises(InputError, match=modelled):
        predict("cma=64M", dataclasses.replace(boot(V61, "vexpress-a9"), kernel=facts))
    with pytest.raises(InputError, match=f"release '{re.escape(name)}.1'"):
        kernel_facts_from_config("CONFIG_PAGE_OFFSET=0x80000000", f"{name}.1")


def test_no_module_compares_kernel_versions_inline() -> None:
    # Version differences are named facts in harness/oracle/versions.py, looked up by quirks_for().
    package = Path(__file__).parents[1] / "harness" / "oracle"
    for module in package.glob("*.py"):
        if module.name != "versions.py":
            assert not re.search(r"version\w*\s*(<|>|<=|>=|==|!=)\s*\(", module.read_text()), module


@pytest.mark.skipif(shutil.which("dtc") is None or shutil.which("fdtget") is None,
                    reason="device-tree-compiler not installed")
def test_read_reserved_memory(tmp_path: Path) -> None:
    dts = tmp_path / "x.dts"
    dts.write_text("""/dts-v1/;
/memreserve/ 0x60000000 0x1000;
/ { #address-cells = <1>; #size-cells = <1>;
  reserved-memory { #address-cells = <1>; #size-cells = <1>; ranges;
    mfc { compatible = "shared-dma-pool"; reusable; size = <0x2400000>; alignment = <0x400000>; };
    off { compatible = "shared-dma-pool"; size = <0x100000>; status = "disabled"; };
    vram@4c000000 { compatible = "shared-dma-pool"; reg = <0x4c000000 0x800000>; no-map; };
  };
};
""")
    dtb = tmp_path / "x.dtb"
    subprocess.run(["dtc", "-q", "-I", "dts", "-O", "dtb", "-o", str(dtb), str(dts)], check=True)
    info = read_reserved_memory(dtb)
    assert info.format_ok and info.memreserve == (MemoryBank(0x60000000, 0x1000),)
    assert info.regions == (
        DtReservedRegion("mfc", size=0x2400000, alignment=0x400000, reusable=True),
        DtReservedRegion("vram@4c000000", reg=((0x4C000000, 0x800000),), has_reg=True, no_map=True))


CACHE = Path("/root/.cache/cma-harness")


@pytest.mark.skipif(not (CACHE / "build/73004b697a42ab7b/System.map").is_file(),
                    reason="the harness's 6.1 kernel is not in the cache")
def test_boot_from_files_rebuilds_the_fixture_layout() -> None:
    from harness.oracle import boot_from_files

    initrd = KERNEL[V61, False][1]
    key = CACHE / "kernels/73004b697a42ab7b"
    built = boot_from_files(ram=(MemoryBank(0x60000000, 512 * M),), release="6.1.176", config=key / "config",
                            system_map=CACHE / "build/73004b697a42ab7b/System.map",
                            dtb=key / "dtbs/vexpress-v2p-ca9.dtb", initrd=initrd, zimage=key / "zImage")
    assert built == boot(V61, "vexpress-a9")

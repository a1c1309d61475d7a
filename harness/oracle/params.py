"""The early parameters: init/main.c parse_early_param() running ``cma=`` and ``vmalloc=``.

Mirrors early_cma() (kernel/dma/contiguous.c, as patched by the series to log
what it read; memparse() from lib/cmdline.c) and early_vmalloc()
(arch/arm/mm/mmu.c), and reads what each ``mem=`` asks of early_mem()
(arch/arm/kernel/setup.c), which :mod:`harness.oracle.arm_setup` applies to
memblock.  A bare ``mem`` (early_mem(NULL) dereferences NULL) is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.cmdline import memparse
from harness.errors import InputError
from harness.oracle.facts import DEFAULT_VMALLOC_SIZE, SZ_1M, VMALLOC_END, VMALLOC_OFFSET, KernelFacts


@dataclass(frozen=True)
class EarlyParams:
    """What the early parameters of a command line leave in the kernel's variables.

    Attributes:
        cma_given: ``size_cmdline != -1``: a ``cma=`` with a value was seen.
        size, base, limit: ``size_cmdline``, ``base_cmdline``, ``limit_cmdline``
            (bytes, wrapped to phys_addr_t; they carry over between several ``cma=``).
        vmalloc_size: arch/arm/mm/mmu.c ``vmalloc_size`` in bytes.
        log: the ``cma:`` lines early_cma() prints (with the series' patch 0001).
        notes: other lines, e.g. early_vmalloc()'s warnings.
        mem: each ``mem=size[@start]`` in order, as early_mem() memparse()s it
            in u64: ``(size, start)`` in bytes, ``start`` None without ``@``
            (then PHYS_OFFSET).
    """

    cma_given: bool
    size: int
    base: int
    limit: int
    vmalloc_size: int = DEFAULT_VMALLOC_SIZE
    log: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    mem: tuple[tuple[int, int | None], ...] = ()


def _memparse64(text: str) -> tuple[int, str]:
    """memparse() as the kernel does it in 64 bits: ``(bytes, the unparsed rest)``."""
    value, rest = memparse(text)
    return value & (2**64 - 1), rest  # simple_strtoull() and the shift wrap in u64


def parse_early_params(cmdline: str, kernel: KernelFacts) -> EarlyParams:
    """Run the early parameters ``cma`` and ``vmalloc`` of ``cmdline`` in order.

    Mirrors parse_early_param() (init/main.c, stopping at ``--`` as parse_args()
    does), early_cma() (kernel/dma/contiguous.c, as patched by the series to log
    its reading), early_vmalloc() (arch/arm/mm/mmu.c) and early_mem()'s parsing
    (arch/arm/kernel/setup.c).  Several ``cma=`` run early_cma() several times:
    base and limit survive a later ``cma=`` without ``@``, exactly as the
    kernel's static variables do.

    Raises:
        InputError: a bare ``mem`` (no ``=``): early_mem(NULL) oopses at boot.
    """
    mask = kernel.phys_mask
    cma = (mask, 0, 0)  # size_cmdline = -1, base_cmdline, limit_cmdline
    vmalloc = DEFAULT_VMALLOC_SIZE
    log: list[str] = []
    notes: list[str] = []
    mem: list[tuple[int, int | None]] = []
    for word in cmdline.split():
        if word == "--":
            break
        name, eq, value = word.partition("=")
        if name == "mem":
            mem.append(_early_mem(value, bool(eq)))
        if name == "vmalloc" and eq:
            vmalloc, note = _early_vmalloc(value, kernel)
            notes += note
        if name != "cma":
            continue
        if not eq:
            log.append("cma: Config string not provided")
            continue
        cma = _early_cma(value, kernel, cma, log)
    size, base, limit = cma
    return EarlyParams(size != mask, size, base, limit, vmalloc, tuple(log), tuple(notes), tuple(mem))


def _early_mem(value: str, has_value: bool) -> tuple[int, int | None]:
    """What early_mem() (arch/arm/kernel/setup.c) reads from ``mem=value``: ``(size, start or None)``.

    ``size = memparse(p, &endp)``; ``start = memparse(endp + 1, NULL)`` after
    an ``@`` (the rest is ignored), else None for PHYS_OFFSET; bytes, in u64.

    Raises:
        InputError: a bare ``mem``: early_mem(NULL) hands NULL to memparse().
    """
    if not has_value:
        raise InputError("a bare 'mem' on the command line makes early_mem() (arch/arm/kernel/"
                         "setup.c) call memparse(NULL): the kernel oopses before the CMA reservation")
    size, rest = _memparse64(value)
    return size, _memparse64(rest[1:])[0] if rest.startswith("@") else None


def _early_cma(value: str, kernel: KernelFacts, cma: tuple[int, int, int],
               log: list[str]) -> tuple[int, int, int]:
    """early_cma() (kernel/dma/contiguous.c) for ``cma=value``: ``size[@base[-limit]]``.

    ``cma`` is ``(size_cmdline, base_cmdline, limit_cmdline)`` before, in bytes;
    returns them after, appending the lines the (patched) kernel prints to ``log``.
    """
    mask = kernel.phys_mask
    _, base, limit = cma
    size, rest = _memparse64(value)
    size &= mask
    if rest.startswith("@"):
        base, rest = _memparse64(rest[1:])
        base &= mask
        if rest.startswith("-"):
            limit, rest = _memparse64(rest[1:])
            limit &= mask
        else:
            limit = (base + size) & mask
    if rest:
        log.append(f'cma: ignoring trailing characters "{rest}" of cma=')
    log.append(f"cma: command line: size {kernel.pa(size)}, base {kernel.pa(base)}, "
               f"limit {kernel.pa(limit)}")
    return size, base, limit


def _early_vmalloc(value: str, kernel: KernelFacts) -> tuple[int, list[str]]:
    """early_vmalloc() (arch/arm/mm/mmu.c): clamp to [16 MiB, VMALLOC_END - PAGE_OFFSET - 40 MiB]."""
    reserve = _memparse64(value)[0] & 0xFFFFFFFF  # unsigned long
    if reserve < 16 * SZ_1M:
        return 16 * SZ_1M, ["vmalloc area is too small, limiting to 16MiB"]
    vmalloc_max = VMALLOC_END - (kernel.page_offset + 32 * SZ_1M + VMALLOC_OFFSET)
    if reserve > vmalloc_max:
        return vmalloc_max, [f"vmalloc area is too big, limiting to {vmalloc_max >> 20}MiB"]
    return reserve, []

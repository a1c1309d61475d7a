"""Boards as data: ``boards/<name>.toml`` loaded into a frozen :class:`Board`.

Code never names a board; everything a board needs (QEMU machine and flags, the
RAM map and where QEMU's loader puts the initrd and dtb, the kernel's
defconfig, fragments and dtb, the console) comes from its file.  Adding a
board is adding a file.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness import paths
from harness.errors import InputError

BOARDS_DIR = paths.BOARDS_DIR
BOARDS_ENV = "CMA_HARNESS_BOARDS"


@dataclass(frozen=True)
class MemoryBank:
    """One bank of guest RAM: ``base`` physical address and ``size``, both in bytes."""

    base: int
    size: int


@dataclass(frozen=True)
class Loader:
    """Where QEMU's ARM loader (hw/arm/boot.c) puts the boot files, as offsets from RAM base.

    Attributes:
        initrd_offset: bytes from the start of RAM to the initrd; QEMU uses
            ``min(ram_size / 2, 128 MiB)``, so 128 MiB on every board here.
        dtb_align: the dtb goes right after the initrd, rounded up to this
            many bytes (4 KiB for 32-bit guests).
    """

    initrd_offset: int = 128 << 20
    dtb_align: int = 4096


@dataclass(frozen=True)
class Board:
    """One emulated board.

    Attributes:
        name: the board file's stem, e.g. ``vexpress-a9``.
        machine: QEMU ``-M`` value.
        cpu: QEMU ``-cpu`` value, or ``""`` for the machine default.
        smp: number of CPUs (``-smp``).
        memory_mib: guest RAM in MiB, passed with ``-m`` unless ``memory_fixed``.
        max_memory_mib: the most RAM QEMU's machine model allows, in MiB.
        memory_fixed: QEMU ignores ``-m`` for this machine (it is not passed).
        ram: the RAM map, physical addresses in bytes; its banks add up to
            ``memory_mib``.
        loader: where QEMU puts the initrd and dtb.
        dtb: file name of the board's dtb as built by ``make dtbs``, or ``""``
            when QEMU generates the device tree itself (``virt``).
        defconfig: the kernel defconfig target, e.g. ``vexpress_defconfig``.
        fragments: Kconfig fragment file names in ``kernel-patches/fragments``.
        console: the serial console device, e.g. ``ttyAMA0``.
        kernel_args: arguments every boot of this board gets (console, earlycon...).
        qemu_args: extra QEMU arguments for this board.
        file: the board file it was loaded from (fragments named by the board
            are looked up beside it first); None for a board built in code.
    """

    name: str
    machine: str
    cpu: str
    smp: int
    memory_mib: int
    max_memory_mib: int
    memory_fixed: bool
    ram: tuple[MemoryBank, ...]
    loader: Loader
    dtb: str
    defconfig: str
    fragments: tuple[str, ...]
    console: str
    kernel_args: tuple[str, ...]
    qemu_args: tuple[str, ...]
    file: Path | None = None


def _get(table: dict[str, Any], key: str, kind: type, where: str) -> Any:
    """Return ``table[key]`` checked to be of ``kind``; raise InputError naming ``where``."""
    if key not in table:
        raise InputError(f"{where}: missing key '{key}'")
    value = table[key]
    if kind is not bool and isinstance(value, bool) or not isinstance(value, kind):
        raise InputError(f"{where}: key '{key}' must be a {kind.__name__}, got {value!r}")
    return value


def _str_tuple(table: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    values = _get(table, key, list, where)
    if not all(isinstance(v, str) for v in values):
        raise InputError(f"{where}: every entry of '{key}' must be a string")
    return tuple(values)


def parse_board(name: str, data: dict[str, Any], where: str) -> Board:
    """Build a :class:`Board` from a parsed TOML table.

    Raises:
        InputError: a section or key is missing or of the wrong type; the message
            names ``where`` (the file) and the key.
    """
    qemu = _get(data, "qemu", dict, where)
    kernel = _get(data, "kernel", dict, where)
    console = _get(data, "console", dict, where)
    memory = _get(data, "memory", dict, where)
    banks = []
    for i, bank in enumerate(_get(memory, "banks", list, f"{where} [memory]")):
        bwhere = f"{where} [memory] banks[{i}]"
        if not isinstance(bank, dict):
            raise InputError(f"{bwhere}: must be a table with 'base' and 'size'")
        banks.append(MemoryBank(_get(bank, "base", int, bwhere), _get(bank, "size", int, bwhere)))
    if not banks:
        raise InputError(f"{where} [memory]: 'banks' is empty")
    memory_mib = _get(qemu, "memory_mib", int, f"{where} [qemu]")
    max_mib = _get(memory, "max_mib", int, f"{where} [memory]")
    if sum(b.size for b in banks) != memory_mib << 20:
        raise InputError(f"{where} [memory]: 'banks' add up to {sum(b.size for b in banks) >> 20} MiB "
                         f"but [qemu] memory_mib is {memory_mib}")
    if not 0 < memory_mib <= max_mib:
        raise InputError(f"{where} [qemu]: memory_mib {memory_mib} is outside 1..{max_mib} "
                         "([memory] max_mib)")
    loader_raw = data.get("loader", {})
    if not isinstance(loader_raw, dict):
        raise InputError(f"{where}: [loader] must be a table")
    unknown = set(loader_raw) - {"initrd_offset", "dtb_align"}
    if unknown:
        raise InputError(f"{where} [loader]: unknown key(s) {', '.join(sorted(unknown))}")
    loader = Loader(**{k: _get(loader_raw, k, int, f"{where} [loader]") for k in loader_raw})
    return Board(
        name=name,
        machine=_get(qemu, "machine", str, f"{where} [qemu]"),
        cpu=qemu.get("cpu", ""),
        smp=_get(qemu, "smp", int, f"{where} [qemu]"),
        memory_mib=memory_mib,
        max_memory_mib=max_mib,
        memory_fixed=_get(memory, "fixed", bool, f"{where} [memory]") if "fixed" in memory else False,
        qemu_args=_str_tuple(qemu, "extra_args", f"{where} [qemu]") if "extra_args" in qemu else (),
        ram=tuple(banks),
        loader=loader,
        dtb=_get(kernel, "dtb", str, f"{where} [kernel]"),
        defconfig=_get(kernel, "defconfig", str, f"{where} [kernel]"),
        fragments=_str_tuple(kernel, "fragments", f"{where} [kernel]"),
        console=_get(console, "device", str, f"{where} [console]"),
        kernel_args=_str_tuple(console, "kernel_args", f"{where} [console]"),
    )


def board_dirs() -> tuple[Path, ...]:
    """Where boards are looked up, first match wins: the user's directories, then the packaged ones.

    The user's directories come from ``CMA_HARNESS_BOARDS`` (``os.pathsep``-separated;
    the CLI's ``--boards-dir`` sets it, so cell jobs run elsewhere see the same boards).
    """
    user = [Path(p) for p in os.environ.get(BOARDS_ENV, "").split(os.pathsep) if p]
    return (*user, BOARDS_DIR)


def available_boards(dirs: tuple[Path, ...] | None = None) -> list[str]:
    """Names of the boards that have a ``<name>.toml`` in any of ``dirs`` (default: :func:`board_dirs`)."""
    return sorted({p.stem for d in (dirs or board_dirs()) for p in d.glob("*.toml")})


def load_board(name: str, dirs: tuple[Path, ...] | None = None) -> Board:
    """Load ``<name>.toml`` from the first of ``dirs`` (default: :func:`board_dirs`) that has it.

    Raises:
        InputError: unknown board (the message lists the known ones), a TOML
            syntax error, or a missing/mistyped key.
    """
    dirs = dirs or board_dirs()
    path = next((d / f"{name}.toml" for d in dirs if (d / f"{name}.toml").is_file()), None)
    if "/" in name or path is None:
        known = ", ".join(available_boards(dirs)) or "none"
        raise InputError(f"unknown board '{name}' (known boards: {known})")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: {exc}") from exc
    return replace(parse_board(name, data, str(path)), file=path)

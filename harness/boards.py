"""Boards as data: ``boards/<name>.toml`` loaded into a frozen :class:`Board`.

Code never names a board; everything a board needs (QEMU machine and flags, the
RAM map and where QEMU's loader puts the initrd and dtb, the kernel's
defconfig, fragments and dtb, the console) comes from its file.  Adding a
board is adding a file.

A board file is checked as strictly as a matrix: an unknown section or key, a
value of the wrong type or out of range, a file name that is not a bare name,
or a QEMU argument that could reach the host is refused with one error line
naming the file, the section and the key.  See :class:`Board` for the rules.
This module also holds :func:`read_input_text`, with which boards, matrices,
series and run.json files are read (regular files only, UTF-8, no NUL).
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness import paths
from harness.cmdline import validate_cmdline
from harness.errors import InputError

BOARDS_DIR = paths.BOARDS_DIR
BOARDS_ENV = "CMA_HARNESS_BOARDS"

MAX_SMP = 8
PHYS_LIMIT = 1 << 40  # LPAE: 40-bit physical addresses
_SECTIONS: dict[str, set[str]] = {
    "qemu": {"machine", "cpu", "smp", "memory_mib", "extra_args", "allow_unsafe_args"},
    "memory": {"banks", "max_mib", "fixed"},
    "loader": {"initrd_offset", "dtb_align"},
    "kernel": {"defconfig", "fragments", "dtb"},
    "console": {"device", "kernel_args"},
}
_BANK_KEYS = {"base", "size"}
# QEMU splits -M/-cpu values on commas (``vexpress-a9,dumpdtb=/path``): plain names only.
_QEMU_NAME = re.compile(r"[A-Za-z0-9._-]+")
_DTB_NAME = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9._+-]*\.dtb")
_FRAGMENT_NAME = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9._+-]*\.config")
_DEFCONFIG_NAME = re.compile(r"([A-Za-z0-9_][A-Za-z0-9._-]*_)?defconfig")
_DEVICE_NAME = re.compile(r"[A-Za-z0-9]+")

# -- the QEMU argument allow-list (see Board.qemu_args) ---------------------------------------
_BOOL = "on|off|true|false|yes|no"
# option -> (implied key of a first item without '=', {key: value pattern})
_QEMU_OPTIONS: dict[str, tuple[str | None, dict[str, str]]] = {
    "-accel": ("accel", {"accel": "tcg", "thread": "single|multi", "tb-size": "[0-9]+",
                         "one-insn-per-tb": _BOOL, "split-wx": _BOOL}),
    "-icount": ("shift", {"shift": "[0-9]+|auto", "align": _BOOL, "sleep": _BOOL}),
    "-rtc": (None, {"base": r"utc|localtime|[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}:[0-9]{2})?",
                    "clock": "host|rt|vm", "driftfix": "none|slew"}),
    "-machine": (None, {k: _BOOL for k in ("highmem", "secure", "virtualization", "its", "mte",
                                            "highmem-ecam", "highmem-mmio", "highmem-redists",
                                            "dump-guest-core", "mem-merge")}
                 | {"gic-version": "2|3|4|max"}),
}
_GLOBAL = re.compile(r"([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)=([A-Za-z0-9_.:+-]*)")
# Properties that name a host file or a backend (a chardev, drive, netdev...): never by -global.
_GLOBAL_REFUSED = {"romfile", "file", "filename", "path", "chardev", "drive", "netdev", "fsdev",
                   "memdev", "fd", "vhostfd", "socket", "audiodev", "backend", "iothread"}
_ALLOWED_HELP = ("-accel tcg[,thread=..,tb-size=..], -icount [shift=]N|auto[,align=..,sleep=..], "
                 "-rtc base=..[,clock=..,driftfix=..], -machine <safe property>=.., "
                 "-global DRIVER.PROP=VALUE")


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
            many bytes (4 KiB for 32-bit guests); a power of two.
    """

    initrd_offset: int = 128 << 20
    dtb_align: int = 4096


@dataclass(frozen=True)
class Board:
    """One emulated board.

    Attributes:
        name: the board file's stem, e.g. ``vexpress-a9``.
        machine: QEMU ``-M`` value; ``[A-Za-z0-9._-]+`` (no comma: QEMU would
            read what follows as machine properties).
        cpu: QEMU ``-cpu`` value (same characters), or ``""`` for the machine default.
        smp: number of CPUs (``-smp``), 1..8.
        memory_mib: guest RAM in MiB (> 0), passed with ``-m`` unless ``memory_fixed``.
        max_memory_mib: the most RAM QEMU's machine model allows, in MiB.
        memory_fixed: QEMU ignores ``-m`` for this machine (it is not passed).
        ram: the RAM map, physical addresses in bytes, sorted by base; its
            banks do not overlap, each has a size > 0, ends at or below
            2**40, and together they add up to ``memory_mib``.
        loader: where QEMU puts the initrd and dtb.
        dtb: bare file name of the board's dtb as built by ``make dtbs``
            (``*.dtb``, no ``/``), or ``""`` when QEMU generates the device
            tree itself (``virt``).
        defconfig: the kernel defconfig target, e.g. ``vexpress_defconfig``.
        fragments: Kconfig fragment file names (bare ``*.config`` names) in
            ``kernel-patches/fragments`` or beside the board file.
        kernel_args: arguments every boot of this board gets (console, earlycon...);
            each passes :func:`harness.cmdline.validate_cmdline`.  The board
            file's ``[console] device`` (e.g. ``ttyAMA0``) is checked to be a
            device name but not kept: the console is the ``console=`` of these
            arguments.
        qemu_args: extra QEMU arguments for this board (``[qemu] extra_args``).
            Only an allow-list of options that cannot give the guest a network,
            a monitor, a chardev or socket, or a host file, each followed by
            its value: ``-accel tcg[,thread=single|multi,tb-size=N,
            one-insn-per-tb=B,split-wx=B]``, ``-icount [shift=]N|auto[,align=B,
            sleep=B]`` (no record/replay file), ``-rtc base=utc|localtime|DATE
            [,clock=host|rt|vm,driftfix=none|slew]``, ``-machine KEY=B`` for
            ``highmem*``, ``secure``, ``virtualization``, ``its``, ``mte``,
            ``dump-guest-core``, ``mem-merge`` (and ``gic-version=2|3|4|max``;
            never ``type``, ``dumpdtb``, ``firmware``...), and ``-global
            DRIVER.PROP=VALUE`` with a plain VALUE (no ``/`` or ``,``) and a PROP
            that names no host file or backend (not ``romfile``, ``file``,
            ``chardev``, ``drive``, ``netdev``...); ``B`` is on/off.  Anything
            else (``-netdev``, ``-nic``, ``-monitor``, ``-qmp``, ``-chardev``,
            ``-serial``, ``-drive``, ``-device``, ``-object``, ``-plugin``,
            ``-gdb``, ``-s``, ``-readconfig``, ``-sandbox``...) is refused unless
            the board file sets ``[qemu] allow_unsafe_args = true``.
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
    kernel_args: tuple[str, ...]
    qemu_args: tuple[str, ...]
    file: Path | None = None


def refuse_unknown(raw: dict[str, Any], known: set[str], where: str, what: str = "key") -> None:
    """Refuse keys of ``raw`` outside ``known``.

    Raises:
        InputError: ``<where>: unknown key(s) a, b (known: ...)`` (``what`` replaces "key").
    """
    unknown = set(raw) - known
    if unknown:
        raise InputError(f"{where}: unknown {what}(s) {', '.join(sorted(unknown))} "
                         f"(known: {', '.join(sorted(known))})")


def _get(table: dict[str, Any], key: str, kind: type, where: str) -> Any:
    """Return ``table[key]`` checked to be of ``kind``; raise InputError naming ``where``."""
    if key not in table:
        raise InputError(f"{where}: missing key '{key}'")
    value = table[key]
    if kind is not bool and isinstance(value, bool) or not isinstance(value, kind):
        raise InputError(f"{where}: key '{key}' must be a {kind.__name__}, got {value!r}")
    return value


def _get_int(table: dict[str, Any], key: str, where: str, low: int, high: int | None = None) -> int:
    """``table[key]``, an int in ``low..high`` (no upper bound when ``high`` is None)."""
    value: int = _get(table, key, int, where)
    if value < low or (high is not None and value > high):
        bounds = f"{low}..{high}" if high is not None else f">= {low}"
        raise InputError(f"{where}: key '{key}' must be {bounds}, got {value}")
    return value


def _get_name(table: dict[str, Any], key: str, where: str, pattern: re.Pattern[str], rule: str,
              empty_ok: bool = False) -> str:
    """``table[key]``, a string matching ``pattern`` (or ``""`` when ``empty_ok``)."""
    value: str = _get(table, key, str, where)
    if not (value == "" and empty_ok) and not pattern.fullmatch(value):
        raise InputError(f"{where}: key '{key}' must be {rule}, got {value!r}")
    return value


def _str_tuple(table: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    values = _get(table, key, list, where)
    if not all(isinstance(v, str) for v in values):
        raise InputError(f"{where}: every entry of '{key}' must be a string")
    return tuple(values)


def _section(data: dict[str, Any], name: str, where: str, required: bool = True) -> dict[str, Any]:
    """The table ``[name]`` of a board file, its keys checked against ``_SECTIONS[name]``."""
    if not required and name not in data:
        return {}
    table: dict[str, Any] = _get(data, name, dict, where)
    refuse_unknown(table, _SECTIONS[name], f"{where} [{name}]")
    return table


def _check_option_value(option: str, value: str) -> str | None:
    """Why ``option value`` is not on the allow-list, or None when it is."""
    if option == "-global":
        m = _GLOBAL.fullmatch(value)
        if m is None:
            return "-global takes DRIVER.PROP=VALUE with a plain VALUE (no '/' or ',')"
        return f"-global property '{m.group(2)}' may name a host file or backend" \
            if m.group(2).lower() in _GLOBAL_REFUSED else None
    implied, allowed = _QEMU_OPTIONS[option]
    for i, item in enumerate(value.split(",")):
        key, sep, val = item.partition("=")
        if not sep:
            if i > 0 or implied is None:
                return f"{option} item {item!r} is not KEY=VALUE"
            key, val = implied, item
        if key not in allowed:
            return f"{option} property '{key}' is not on the allow-list ({', '.join(sorted(allowed))})"
        if not re.fullmatch(allowed[key], val):
            return f"{option} {key}={val!r} must match {allowed[key]}"
    return None


def check_qemu_args(args: tuple[str, ...], where: str) -> tuple[str, ...]:
    """Return ``args`` if every option is on the allow-list (see :class:`Board` ``qemu_args``).

    Each option is one entry and its value the next (``["-rtc", "base=utc"]``);
    ``--opt`` is read as ``-opt`` and ``-M`` as ``-machine``, as QEMU does.

    Raises:
        InputError: ``<where>: extra_args[i] ...: <why>`` for the first option
            off the list, a value outside its safe form, or an option without value.
    """
    i = 0
    while i < len(args):
        arg = args[i]
        option = arg[1:] if arg.startswith("--") else arg  # QEMU takes --opt for -opt
        option = "-machine" if option == "-M" else option
        if option != "-global" and option not in _QEMU_OPTIONS:
            why = f"{arg!r} is not on the allow-list of safe QEMU options ({_ALLOWED_HELP})"
        elif i + 1 >= len(args):
            why = f"{arg!r} needs a value"
        else:
            why = _check_option_value(option, args[i + 1]) or ""
        if why:
            raise InputError(f"{where}: extra_args[{i}]: {why}; a board that really needs it "
                             "sets [qemu] allow_unsafe_args = true")
        i += 2
    return args


def _qemu(data: dict[str, Any], where: str) -> dict[str, Any]:
    """The checked ``[qemu]`` values, as :class:`Board` keyword arguments."""
    qemu = _section(data, "qemu", where)
    w = f"{where} [qemu]"
    unsafe = _get(qemu, "allow_unsafe_args", bool, w) if "allow_unsafe_args" in qemu else False
    extra = _str_tuple(qemu, "extra_args", w) if "extra_args" in qemu else ()
    return {
        "machine": _get_name(qemu, "machine", w, _QEMU_NAME, "a QEMU machine name ([A-Za-z0-9._-]+)"),
        "cpu": _get_name(qemu, "cpu", w, _QEMU_NAME, "a QEMU CPU name ([A-Za-z0-9._-]+) or \"\"",
                         empty_ok=True) if "cpu" in qemu else "",
        "smp": _get_int(qemu, "smp", w, 1, MAX_SMP),
        "memory_mib": _get_int(qemu, "memory_mib", w, 1),
        "qemu_args": extra if unsafe else check_qemu_args(extra, w),
    }


def _banks(memory: dict[str, Any], where: str) -> tuple[MemoryBank, ...]:
    """``[memory] banks``: sized, below 2**40, sorted by base and not overlapping."""
    banks = []
    for i, bank in enumerate(_get(memory, "banks", list, where)):
        bwhere = f"{where} banks[{i}]"
        if not isinstance(bank, dict):
            raise InputError(f"{bwhere}: must be a table with 'base' and 'size'")
        refuse_unknown(bank, _BANK_KEYS, bwhere)
        base, size = _get_int(bank, "base", bwhere, 0), _get_int(bank, "size", bwhere, 1)
        if base + size > PHYS_LIMIT:
            raise InputError(f"{bwhere}: ends at {base + size:#x}, above the 40-bit physical "
                             f"address space ({PHYS_LIMIT:#x})")
        banks.append(MemoryBank(base, size))
    if not banks:
        raise InputError(f"{where}: 'banks' is empty")
    banks.sort(key=lambda b: b.base)
    for low, high in zip(banks, banks[1:], strict=False):
        if low.base + low.size > high.base:
            raise InputError(f"{where}: banks overlap: {low.base:#x}+{low.size:#x} reaches into "
                             f"the bank at {high.base:#x}")
    return tuple(banks)


def _memory(data: dict[str, Any], memory_mib: int, where: str) -> dict[str, Any]:
    """The checked ``[memory]`` values, as :class:`Board` keyword arguments."""
    memory = _section(data, "memory", where)
    w = f"{where} [memory]"
    max_mib = _get_int(memory, "max_mib", w, 1)
    if memory_mib > max_mib:
        raise InputError(f"{where} [qemu]: memory_mib {memory_mib} is outside 1..{max_mib} "
                         "([memory] max_mib)")
    banks = _banks(memory, w)
    if sum(b.size for b in banks) != memory_mib << 20:
        raise InputError(f"{w}: 'banks' add up to {sum(b.size for b in banks) >> 20} MiB "
                         f"but [qemu] memory_mib is {memory_mib}")
    return {"ram": banks, "max_memory_mib": max_mib,
            "memory_fixed": _get(memory, "fixed", bool, w) if "fixed" in memory else False}


def _loader(data: dict[str, Any], where: str) -> Loader:
    raw = _section(data, "loader", where, required=False)
    w = f"{where} [loader]"
    loader = Loader(**{k: _get_int(raw, k, w, 0 if k == "initrd_offset" else 1) for k in raw})
    if loader.dtb_align & (loader.dtb_align - 1):
        raise InputError(f"{w}: key 'dtb_align' must be a power of two, got {loader.dtb_align}")
    return loader


def _kernel_and_console(data: dict[str, Any], where: str) -> dict[str, Any]:
    """The checked ``[kernel]`` and ``[console]`` values, as :class:`Board` keyword arguments."""
    kernel, console = _section(data, "kernel", where), _section(data, "console", where)
    kw, cw = f"{where} [kernel]", f"{where} [console]"
    fragments = _str_tuple(kernel, "fragments", kw)
    for frag in fragments:
        if not _FRAGMENT_NAME.fullmatch(frag):
            raise InputError(f"{kw}: fragment {frag!r} must be a bare file name ending in .config")
    kernel_args = _str_tuple(console, "kernel_args", cw)
    for arg in kernel_args:
        try:
            validate_cmdline(arg)
        except InputError as exc:
            raise InputError(f"{cw}: kernel_args: {exc}") from exc
    values = {
        "dtb": _get_name(kernel, "dtb", kw, _DTB_NAME, "a bare file name ending in .dtb, or \"\"",
                         empty_ok=True),
        "defconfig": _get_name(kernel, "defconfig", kw, _DEFCONFIG_NAME,
                               "a defconfig target name (e.g. vexpress_defconfig)"),
        "fragments": fragments,
        "kernel_args": kernel_args,
    }
    _get_name(console, "device", cw, _DEVICE_NAME, "a device name (e.g. ttyAMA0)")  # checked, not kept
    return values


def parse_board(name: str, data: dict[str, Any], where: str) -> Board:
    """Build a :class:`Board` from a parsed TOML table (see :class:`Board` for every rule).

    Raises:
        InputError: a section or key is missing, unknown, of the wrong type or out
            of range, a file name is not a bare name, or an extra QEMU argument is
            off the allow-list; the message names ``where`` (the file), the
            section and the key.
    """
    refuse_unknown(data, set(_SECTIONS), where, "section")
    qemu = _qemu(data, where)
    return Board(name=name, **qemu, **_memory(data, qemu["memory_mib"], where),
                 loader=_loader(data, where), **_kernel_and_console(data, where))


def read_input_bytes(path: Path, what: str = "") -> bytes:
    """The bytes of the regular file ``path``, an input the user named (``what`` it is, for the message).

    The path is ``stat``-ed first and anything but a regular file (a FIFO, a
    device, a directory) is refused without being opened: opening a FIFO
    blocks until a writer comes.  The file is then opened non-blocking and
    checked again, so a swap in between cannot block either.

    Raises:
        InputError: ``<path>: not a regular file`` or ``cannot read [what] <path>: <reason>``.
    """
    unreadable = f"cannot read {what + ' ' if what else ''}{path}"
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            raise InputError(f"{path}: not a regular file")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise InputError(f"{unreadable}: {exc.strerror or exc}") from exc
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InputError(f"{path}: not a regular file")
        try:
            return fh.read()
        except OSError as exc:
            raise InputError(f"{unreadable}: {exc.strerror or exc}") from exc


def input_text(path: Path, data: bytes) -> str:
    """``data`` (read from ``path``) as text: UTF-8 without NUL bytes.

    Raises:
        InputError: ``<path>: not UTF-8 text (byte N)`` or ``<path>: holds a NUL byte (a binary file?)``.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (invalid byte at offset {exc.start})") from exc
    if "\0" in text:
        raise InputError(f"{path}: holds a NUL byte at offset {text.index(chr(0))} (a binary file?)")
    return text


def read_input_text(path: Path, what: str = "") -> str:
    """The text of the regular file ``path``: :func:`read_input_bytes` then :func:`input_text`.

    Raises:
        InputError: see both.
    """
    return input_text(path, read_input_bytes(path, what))


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
        InputError: unknown board (the message lists the known ones); the file
            is not a regular file (a FIFO is refused without opening it), not
            UTF-8, a TOML syntax error, or see :func:`parse_board`.
    """
    dirs = dirs or board_dirs()
    path = next((d / f"{name}.toml" for d in dirs if os.path.lexists(d / f"{name}.toml")), None)
    if "/" in name or path is None:
        known = ", ".join(available_boards(dirs)) or "none"
        raise InputError(f"unknown board '{name}' (known boards: {known})")
    try:
        data = tomllib.loads(read_input_text(path, "board"))
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: {exc}") from exc
    return replace(parse_board(name, data, str(path)), file=path)

"""Kernel command lines: validation and the ``cma=`` parameter.

A command line given by the user travels to QEMU's ``-append`` as one argv
entry (never through a shell), but it is still refused when it holds characters
that have no business on a kernel command line: a newline would end the guest's
command line early, quotes change how the kernel splits parameters, and shell
metacharacters are a sign of a mistake (or worse) in a matrix file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.errors import InputError

# Printable ASCII without quotes, backslash and shell metacharacters.
_ALLOWED = re.compile(r"[A-Za-z0-9 _.,:=@/+%\-\[\]]*")
_MAX_LEN = 1024  # COMMAND_LINE_SIZE on arm is 1024 bytes (arch/arm/include/uapi/asm/setup.h)


def validate_cmdline(cmdline: str) -> str:
    """Return ``cmdline`` if it is safe to pass to ``qemu-system-arm -append``.

    Raises:
        InputError: the string holds a newline, a control character, a quote, a
            backslash or a shell metacharacter, or is longer than the ARM
            COMMAND_LINE_SIZE (1024 bytes).
    """
    if len(cmdline) >= _MAX_LEN:
        raise InputError(f"kernel cmdline is {len(cmdline)} bytes; ARM allows at most 1023")
    for ch in cmdline:
        if not _ALLOWED.fullmatch(ch):
            raise InputError(
                f"kernel cmdline {cmdline!r}: character {ch!r} is not allowed "
                "(quotes, newlines and shell metacharacters are refused)"
            )
    return cmdline


def memparse(text: str) -> tuple[int, str]:
    """Parse a size like the kernel's ``memparse()`` (lib/cmdline.c).

    Accepts a C integer (decimal, ``0x`` hex or leading-``0`` octal, as
    ``simple_strtoull`` with base 0) followed by an optional suffix K, M, G, T,
    P or E (either case, each a factor of 1024).  Parsing stops at the first
    character it cannot use, exactly as the kernel does, so ``"lots"`` is 0.

    Returns:
        ``(value_in_bytes, rest_of_text)``.
    """
    match = re.match(r"0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*", text)
    if not match:
        return 0, text
    digits = match.group(0)
    if digits[:2] in ("0x", "0X"):
        value = int(digits, 16)
    elif digits.startswith("0") and len(digits) > 1:
        value = int(digits, 8)
    else:
        value = int(digits, 10)
    rest = text[match.end():]
    shift = {"k": 10, "m": 20, "g": 30, "t": 40, "p": 50, "e": 60}.get(rest[:1].lower())
    if shift is not None:
        value <<= shift
        rest = rest[1:]
    return value, rest


@dataclass(frozen=True)
class CmaParam:
    """What ``cma=`` asked for, as ``early_cma()`` in kernel/dma/contiguous.c reads it.

    Attributes:
        size: requested size in bytes (0 disables the default CMA area).
        base: requested base physical address in bytes, or 0 for "anywhere".
        limit: upper physical address bound in bytes, or 0 for "no limit".
        fixed: True when ``base + size == limit`` (a fixed placement ``size@base``).
    """

    size: int
    base: int = 0
    limit: int = 0

    @property
    def fixed(self) -> bool:
        return self.limit != 0 and self.base + self.size == self.limit


def find_cma_param(cmdline: str) -> str | None:
    """Return the value of the last ``cma=`` on ``cmdline`` (the one the kernel keeps).

    Returns ``None`` when there is no ``cma=`` parameter.  A bare ``cma`` (no
    ``=``) returns ``""``.
    """
    value: str | None = None
    for word in cmdline.split():
        if word == "cma":
            value = ""
        elif word.startswith("cma="):
            value = word[4:]
    return value


def parse_cma_param(value: str) -> CmaParam:
    """Parse a ``cma=`` value the way ``early_cma()`` does (kernel/dma/contiguous.c).

    ``nn[KMG][@start[KMG][-end[KMG]]]``.  Like the kernel, garbage after the
    size is ignored rather than refused, so ``cma=lots`` means a size of 0.
    """
    size, rest = memparse(value)
    if not rest.startswith("@"):
        return CmaParam(size=size)
    base, rest = memparse(rest[1:])
    if not rest.startswith("-"):
        return CmaParam(size=size, base=base, limit=base + size)
    limit, _ = memparse(rest[1:])
    return CmaParam(size=size, base=base, limit=limit)

"""Kernel command lines: validation, and sizes read the way the kernel reads them.

A command line given by the user travels to QEMU's ``-append`` as one argv
entry (never through a shell), but it is still refused when it holds characters
that have no business on a kernel command line: a newline would end the guest's
command line early, quotes change how the kernel splits parameters, and shell
metacharacters are a sign of a mistake (or worse) in a matrix file.

:func:`memparse` reads sizes as the kernel does; the ``cma=`` oracle parses
``cma=`` and the other early parameters with it (``harness.oracle``'s
``parse_early_params``).
"""

from __future__ import annotations

import re

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

from __future__ import annotations

import pytest

from harness.cmdline import memparse, validate_cmdline
from harness.errors import InputError


@pytest.mark.parametrize("good", ["", "cma=32M", "cma=64M@0x70000000-0x80000000 loglevel=8",
                                  "earlycon=exynos4210,0x13800000 console=ttySAC0,115200n8"])
def test_validate_accepts_ordinary_cmdlines(good: str) -> None:
    assert validate_cmdline(good) == good


@pytest.mark.parametrize("bad,char", [("cma=32M;reboot", ";"), ("cma=32M\ninit=/bin/sh", "\n"),
                                      ("cma=$(id)", "$"), ("cma='1G'", "'"), ("a`b`", "`"),
                                      ("cma=1G|x", "|"), ("x\x00", "\x00")])
def test_validate_refuses_metacharacters_naming_them(bad: str, char: str) -> None:
    with pytest.raises(InputError) as exc:
        validate_cmdline(bad)
    assert repr(char) in str(exc.value)


def test_validate_refuses_overlong() -> None:
    with pytest.raises(InputError, match="at most 1023"):
        validate_cmdline("a" * 1024)


@pytest.mark.parametrize("text,value,rest", [
    ("32M", 32 << 20, ""), ("1G", 1 << 30, ""), ("4k", 4096, ""), ("0x1000", 4096, ""),
    ("010", 8, ""), ("0", 0, ""), ("lots", 0, "lots"), ("64Mb", 64 << 20, "b"),
    ("12@0x60000000", 12, "@0x60000000"), ("08", 0, "8"), ("", 0, ""),
])
def test_memparse_matches_the_kernel(text: str, value: int, rest: str) -> None:
    assert memparse(text) == (value, rest)

"""Console logic over a fake transport (the checks and the parser are real)."""

from __future__ import annotations

import io
import re
from collections.abc import Callable

import pexpect
import pytest

from harness.console import Budget, Console, ConsoleTimeout, GuestGone


class FakeChild:
    """Stands in for pexpect.spawn: hands out scripted chunks, answers sent commands."""

    def __init__(self, chunks: list[bytes], answer: Callable[[str, str], list[bytes]] | None = None):
        self.chunks = list(chunks)
        self.answer = answer
        self.sent: list[bytes] = []
        self.eof_when_empty = False

    def read_nonblocking(self, size: int, timeout: float) -> bytes:
        if self.chunks:
            return self.chunks.pop(0)
        if self.eof_when_empty:
            raise pexpect.EOF("gone")
        raise pexpect.TIMEOUT("quiet")

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        text = data.decode()
        m = re.match(r"echo '(\w+)''(\w+)'B; (.*); echo '\w+''\w+'E \$\?\n", text)
        if m and m.group(3) == "true":  # wait_for_shell's first round trip
            marker = m.group(1) + m.group(2)
            self.chunks.append(f"{text}{marker}B\n{marker}E 0\n".encode())
        elif m and self.answer:
            self.chunks += self.answer(m.group(1) + m.group(2), m.group(3))
        return len(data)


BOOT = [b"[    0.000000] Booting Linux\r\n", b"cma-harness: init ready (6.1.0)\r\n"]


def _console(child: FakeChild) -> tuple[Console, io.BytesIO]:
    log = io.BytesIO()
    return Console(child, log), log  # type: ignore[arg-type]


def test_run_returns_output_and_status_despite_interleaved_kernel_lines() -> None:
    def answer(marker: str, cmd: str) -> list[bytes]:
        # The shell echoes the typed line, then the output arrives split, with a
        # kernel record landing inside the end marker.
        return [f"echo '{marker[:5]}''{marker[5:]}'B; {cmd}; echo ...\r\n".encode(),
                f"{marker}B\r\nCmaTotal:  32768 kB\r\n{marker[:3]}".encode(),
                b"[    3.141592] WARNING: CPU: 0 PID: 9 at mm/cma.c:1 f+0x0/0x4\r\n",
                f"{marker[3:]}E 0\r\ncma-harness# ".encode()]

    child = FakeChild(BOOT, answer)
    console, log = _console(child)
    console.wait_for_shell(Budget(5))
    result = console.run("cat /proc/meminfo", Budget(5))
    assert result.output == "CmaTotal:  32768 kB\n"
    assert result.status == 0
    assert [p.kind.value for p in console.transcript.problems] == ["WARNING"]
    assert b"WARNING: CPU: 0" in log.getvalue()  # the log keeps every byte


def test_nonzero_status_and_output_without_trailing_newline() -> None:
    child = FakeChild(BOOT, lambda m, c: [f"{m}B\r\nno newline{m}E 3\r\n".encode()])
    console, _ = _console(child)
    console.wait_for_shell(Budget(5))
    result = console.run("printf 'no newline'; false", Budget(5))
    assert (result.output, result.status) == ("no newline", 3)


def test_echo_of_the_typed_command_never_matches() -> None:
    # Only the echo arrives (the command hangs): the quoted marker must not match.
    child = FakeChild(BOOT, lambda m, c: [f"echo '{m[:5]}''{m[5:]}'B; sleep 99\r\n".encode()])
    console, _ = _console(child)
    console.wait_for_shell(Budget(5))
    with pytest.raises(ConsoleTimeout):
        console.run("sleep 99", Budget(0.05))


def test_guest_death_during_boot_is_reported_with_panic() -> None:
    child = FakeChild([b"[    1.000000] Kernel panic - not syncing: No init found\r\n"])
    child.eof_when_empty = True
    console, _ = _console(child)
    with pytest.raises(GuestGone):
        console.wait_for_shell(Budget(5))
    assert console.transcript.problems[0].kind.value == "panic"


def test_multiline_commands_are_refused() -> None:
    console, _ = _console(FakeChild(BOOT))
    with pytest.raises(ValueError):
        console.run("echo a\nreboot", Budget(1))

"""Console logic over a fake transport (the checks and the parser are real)."""

from __future__ import annotations

import io
import random
import re
from collections.abc import Callable

import pexpect
import pytest

from harness.console import Budget, Console, ConsoleTimeout, GuestGone


class FakeChild:
    """Stands in for pexpect.spawn: hands out scripted chunks, answers sent steps.

    ``answer(child, step_id, command)`` returns the chunks the guest prints for a step;
    :meth:`begin` and :meth:`end` are what the shell prints for the markers of a step,
    as :mod:`harness.script` has them.
    """

    def __init__(self, chunks: list[bytes],
                 answer: Callable[[FakeChild, str, str], list[bytes]] | None = None):
        self.chunks = list(chunks)
        self.answer = answer
        self.sent: list[bytes] = []
        self.eof_when_empty = False
        self.nonce = ""
        self.uptime = 1.0
        self.typing = b""

    def read_nonblocking(self, size: int, timeout: float) -> bytes:
        if self.chunks:
            return self.chunks.pop(0)
        if self.eof_when_empty:
            raise pexpect.EOF("gone")
        raise pexpect.TIMEOUT("quiet")

    def send(self, data: bytes) -> int:
        """Like the tty: a burst that does not end the line is echoed; a whole line is answered."""
        self.typing += data
        if not data.endswith(b"\n"):
            self.chunks.append(data)
            return len(data)
        data, self.typing = self.typing, b""
        self.sent.append(data)
        text = data.decode()
        m = re.match(r"read -r u _ </proc/uptime; printf '\\n@@%s begin %s %s %s\\n' (\w+) \w+ \"([^\"]+)\" "
                     r"\"\$\{u:-0\}\"; (.*); (?:s=\$\?|fi); read -r u _ </proc/uptime; "
                     r"printf '\\n@@%s end", text)
        if m:
            self.nonce = m.group(1)
        if m and m.group(3) == "true":  # wait_for_shell's first round trip
            self.chunks.append(text.encode() + self.begin(m.group(2)) + self.end(m.group(2)))
        elif m and self.answer:
            self.chunks += self.answer(self, m.group(2), m.group(3))
        return len(data)

    def _marker_line(self, text: str) -> bytes:
        self.uptime += 0.25
        # printf '\n...' prints a newline before the marker.
        return f"\r\n@@{self.nonce} {text} {self.uptime:.2f}\r\n".encode()

    def begin(self, step_id: str, kind: str = "command") -> bytes:
        return self._marker_line(f"begin {kind} {step_id}")

    def end(self, step_id: str, status: int = 0) -> bytes:
        return self._marker_line(f"end {step_id} {status}")


BOOT = [b"[    0.000000] Booting Linux\r\n", b"cma-harness: init ready (6.1.0)\r\n"]


def _console(child: FakeChild) -> tuple[Console, io.BytesIO]:
    log = io.BytesIO()
    return Console(child, log), log  # type: ignore[arg-type]


def test_run_returns_output_and_status_despite_interleaved_kernel_lines() -> None:
    def answer(child: FakeChild, marker: str, cmd: str) -> list[bytes]:
        # The shell echoes the typed line, then the output arrives split, with a
        # kernel record landing inside the end marker.
        end = child.end(marker)
        cut = end.index(child.nonce.encode()) + 3
        return [child.sent[-1].replace(b"\n", b"\r\n"),
                child.begin(marker) + b"CmaTotal:  32768 kB\r\n" + end[:cut],
                b"[    3.141592] WARNING: CPU: 0 PID: 9 at mm/cma.c:1 f+0x0/0x4\r\n",
                end[cut:] + b"cma-harness# "]

    child = FakeChild(BOOT, answer)
    console, log = _console(child)
    console.wait_for_shell(Budget(5))
    result = console.run("cat /proc/meminfo", Budget(5))
    assert result.output == "CmaTotal:  32768 kB\n"
    assert result.status == 0
    assert [p.kind.value for p in console.transcript.problems] == ["WARNING"]
    assert b"WARNING: CPU: 0" in log.getvalue()  # the log keeps every byte


def test_nonzero_status_and_output_without_trailing_newline() -> None:
    child = FakeChild(BOOT, lambda ch, m, c: [ch.begin(m) + b"no newline" + ch.end(m, 3)])
    console, _ = _console(child)
    console.wait_for_shell(Budget(5))
    result = console.run("printf 'no newline'; false", Budget(5))
    assert (result.output, result.status) == ("no newline", 3)


def test_echo_of_the_typed_command_never_matches() -> None:
    # Only the echo arrives (the command hangs): the marker's format string must not match.
    child = FakeChild(BOOT, lambda ch, m, c: [ch.sent[-1].replace(b"\n", b"\r\n")])
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


def test_output_ending_like_a_kernel_record_cannot_swallow_the_end_marker() -> None:
    """A record start with no newline takes the rest of its line: that line must not hold the marker."""
    fake = b"[    9.999999] fake record, no newline"
    child = FakeChild(BOOT, lambda ch, m, c: [ch.begin(m) + b"ok\r\n" + fake, ch.end(m)])
    console, _ = _console(child)
    console.wait_for_shell(Budget(5))
    result = console.run("cat /tmp/junk", Budget(0.5))
    # The fake record took the protocol's newline along, so the output's own last one reads as it.
    assert (result.output, result.status) == ("ok", 0)
    assert console.transcript.records[-1] == fake.decode()
    assert console.run("true", Budget(0.5)).status == 0


def test_garbage_bytes_on_the_console_keep_the_dialogue_in_step() -> None:
    """Random bytes, ANSI escapes, NULs, CRs, invalid UTF-8, a fake prompt and fake markers."""
    junk = random.Random(1).randbytes(4096)
    junk += b"\x1b[2J\x00\r\xff\xfe\xc0 cma-harness# \n@@0123456789 end x 0 1.0\n@@%s begin x y 0\n\x1b[0m"

    def answer(child: FakeChild, marker: str, cmd: str) -> list[bytes]:
        if cmd == "noise":  # between two commands: before the next one's begin marker
            child.chunks.append(junk[:2000])
            return [child.begin(marker), child.end(marker), junk[2000:]]
        return [child.begin(marker) + b"CmaTotal: 1 kB\r\n" + junk, child.end(marker, 7)]

    child = FakeChild(BOOT, answer)
    console, log = _console(child)
    console.wait_for_shell(Budget(5))
    assert console.run("noise", Budget(0.5)).output == ""
    result = console.run("cat /proc/meminfo", Budget(0.5))
    assert result.status == 7 and result.output.startswith("CmaTotal: 1 kB\n")
    assert "\x00" in result.output and "\ufffd" in result.output and "\r" not in result.output
    assert console.run("true", Budget(0.5)).status == 0
    assert log.getvalue().count(junk) == 1 and log.getvalue().count(junk[:2000]) == 2


def test_a_utf8_character_split_across_two_reads_is_decoded_whole() -> None:
    child = FakeChild(BOOT, lambda ch, m, c: [ch.begin(m) + b"5 \xc2", b"\xb5s\r\n" + ch.end(m)])
    console, _ = _console(child)
    console.wait_for_shell(Budget(5))
    assert console.run("latency", Budget(0.5)).output == "5 \u00b5s\n"


def test_guest_gone_after_a_panic_names_the_panic() -> None:
    panic = b"[    3.406080] Kernel panic - not syncing: sysrq triggered crash\r\n"
    child = FakeChild(BOOT, lambda ch, m, c: [ch.begin(m) + b"KTAP version 1\r\n", panic])
    child.eof_when_empty = True
    console, _ = _console(child)
    console.wait_for_shell(Budget(5))
    with pytest.raises(GuestGone) as gone:
        console.run("cma-test suite migrate", Budget(5))
    assert str(gone.value) == ("the guest stopped (QEMU exited) after a kernel panic: "
                               "Kernel panic - not syncing: sysrq triggered crash")


@pytest.mark.parametrize("char", ["\x03", "\x04", "\x15", "\x1a", "\x1b", "\x00", "\x7f"])
def test_commands_with_control_characters_are_refused(char: str) -> None:
    """^C, ^D, ^U, ^Z, ESC... in a typed line would kill the command, erase the line or end the shell."""
    console, _ = _console(FakeChild(BOOT))
    with pytest.raises(ValueError, match="control character"):
        console.run(f"cma-debugfs-probe x{char}y 64", Budget(1))


class TimedChild(FakeChild):
    """Records the read timeouts (the budget left) the console asks for."""

    def __init__(self, chunks: list[bytes], answer: Callable[[FakeChild, str, str], list[bytes]]) -> None:
        super().__init__(chunks, answer)
        self.timeouts: list[float] = []

    def read_nonblocking(self, size: int, timeout: float) -> bytes:
        self.timeouts.append(timeout)
        return super().read_nonblocking(size, timeout)


def test_each_nested_step_gets_a_fresh_budget_of_its_kind() -> None:
    from harness.script import BudgetKind, Budgets, Step

    def answer(child: FakeChild, step_id: str, cmd: str) -> list[bytes]:
        return [child.begin(step_id), child.begin("inner", "suite"), b"working\r\n"]

    child = TimedChild(BOOT, answer)
    console, _ = _console(child)
    console.wait_for_shell(Budget(5))
    with pytest.raises(ConsoleTimeout) as hung:
        console.run_step(Step("loop", "for a in x; do ...; done", BudgetKind.COMMAND),
                         Budgets(command=2.0, suite=120.0))
    assert hung.value.step == "inner" and hung.value.seconds == pytest.approx(120.0)
    assert child.timeouts[-1] > 100  # the suite's budget, not the command's
    assert str(hung.value) == "no answer from the guest within 120s"


def test_a_step_skipped_by_its_guard_ends_with_no_status() -> None:
    from harness.script import Budgets, Step

    child = FakeChild(BOOT, lambda ch, s, c: [ch.begin(s) + ch._marker_line(f"end {s} -")])
    console, _ = _console(child)
    console.wait_for_shell(Budget(5))
    record = console.run_step(Step("guarded", "cma-test areas", when="cmah_dev"), Budgets())
    assert record.skipped and record.output == ""


def test_a_long_line_is_typed_in_bursts_each_after_the_echo_of_the_last() -> None:
    """QEMU's exynos4210 UART drops input beyond its 256-byte FIFO: never more than CHUNK at once."""
    from harness.console import CHUNK

    child = FakeChild(BOOT, lambda ch, m, c: [ch.begin(m) + b"ok\r\n" + ch.end(m)])
    bursts: list[bytes] = []
    send = child.send

    def recording(data: bytes) -> int:
        bursts.append(data)
        return send(data)

    child.send = recording  # type: ignore[method-assign]
    console, _ = _console(child)
    console.wait_for_shell(Budget(5))
    assert console.run("echo " + "x" * 1000, Budget(5)).output == "ok\n"
    assert max(len(b) for b in bursts) <= CHUNK and len(bursts) > 6

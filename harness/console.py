"""The guest's serial console, driven with pexpect.

Running is kept apart from parsing: this module moves bytes, tees every byte to
the console log, splits kernel records from user text (``klog.ConsoleSplitter``)
and finds command markers; it decides nothing about CMA.

Command protocol (after labgrid's ShellDriver): each command is sent as
``printf '\\n%sB\\n' 'ab''cd'; CMD; printf '\\n%sE %d\\n' 'ab''cd' $?`` with a fresh
random marker, so the echo of the typed line (which holds the quotes) never
matches, and the exit status arrives in the same line as the end marker.  No
prompt is ever matched: only markers are trusted, so a kernel line between a
marker and a prompt (which loses labgrid its sync) cannot matter.  Each marker
starts a line of its own: output that ends in something looking like the start
of a kernel record (``[    1.000000] ...`` without a newline, e.g. garbage on
the console) can swallow the rest of its line, never the marker.  The newline
printed before the end marker is not part of the command's output.
"""

from __future__ import annotations

import codecs
import os
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pexpect

from harness.errors import BootError
from harness.klog import ConsoleSplitter, Problem, ProblemKind, classify

READY_BANNER = "cma-harness: init ready"
_TIMEOUT_FACTOR_ENV = "CMA_HARNESS_TIMEOUT_FACTOR"
_TIMESTAMP = re.compile(r"^\[ *\d+\.\d+\] ")
# Control characters a tty's line discipline acts on (^C, ^D, ^U, ^W, ^Z, ESC, DEL...):
# in a typed command they would kill it, erase the line, or end the shell.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def timeout_factor() -> float:
    """Global slowdown factor for every timeout (``$CMA_HARNESS_TIMEOUT_FACTOR``, default 1)."""
    try:
        return max(0.1, float(os.environ.get(_TIMEOUT_FACTOR_ENV, "1")))
    except ValueError:
        return 1.0


class Budget:
    """A time budget for one step, in seconds, scaled by :func:`timeout_factor`."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds * timeout_factor()
        self._deadline = time.monotonic() + self.seconds

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self._deadline - time.monotonic())

    def expired(self) -> bool:
        return self.remaining() <= 0


@dataclass(frozen=True)
class CommandResult:
    """One command run in the guest: its output (``\\r`` removed), exit status and duration (s)."""

    command: str
    output: str
    status: int
    duration: float

    @property
    def lines(self) -> list[str]:
        return self.output.splitlines()


@dataclass
class ConsoleTranscript:
    """What the console saw so far: kernel records and the problems among them."""

    records: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


class GuestGone(BootError):
    """The guest stopped: QEMU exited (a panic with ``panic=-1``, or poweroff)."""


class ConsoleTimeout(BootError):
    """The guest did not answer within the step's budget."""


class Console:
    """A pexpect-driven serial console of one QEMU guest.

    Args:
        child: a spawned ``pexpect.spawn`` of QEMU (bytes mode).
        log: binary file every console byte is copied to, as it arrives.
        on_problem: called at once for each panic/Oops/BUG/WARNING record.
    """

    def __init__(self, child: pexpect.spawn[bytes], log: IO[bytes],
                 on_problem: Callable[[Problem], None] | None = None) -> None:
        self.child = child
        self.child.delaybeforesend = None  # pexpect sleeps 50 ms before every send by default
        self.log = log
        self.on_problem = on_problem
        self.splitter = ConsoleSplitter()
        self.transcript = ConsoleTranscript()
        self._consumed = 0  # index into splitter.user already matched
        # One decoder for the whole stream: a UTF-8 character split across two reads is
        # decoded whole; invalid bytes (garbage) become U+FFFD, the log keeps them as they came.
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def _pump(self, budget: Budget) -> None:
        """Read what is available (waiting at most the budget); raise on EOF or timeout."""
        try:
            data = self.child.read_nonblocking(65536, timeout=max(0.01, budget.remaining()))
        except pexpect.TIMEOUT as exc:
            raise ConsoleTimeout(f"no answer from the guest within {budget.seconds:.0f}s",
                                 self.tail()) from exc
        except pexpect.EOF as exc:
            self._feed(self._decoder.decode(b"", final=True))
            self.splitter.flush()
            raise GuestGone(self._gone_message(), self.tail()) from exc
        self.log.write(data)
        self.log.flush()
        self._feed(self._decoder.decode(data))

    def _gone_message(self) -> str:
        """Why the console ended: QEMU exited, after a kernel panic if the console showed one."""
        panic = next((p.line for p in self.transcript.problems if p.kind is ProblemKind.PANIC), "")
        gone = "the guest stopped (QEMU exited)"
        return f"{gone} after a kernel panic: {_TIMESTAMP.sub('', panic).strip()}" if panic else gone

    def _feed(self, text: str) -> None:
        for record in self.splitter.feed(text.replace("\r", "")):
            self.transcript.records.append(record)
            kind = classify(record)
            if kind is not None:
                problem = Problem(kind, record)
                self.transcript.problems.append(problem)
                if self.on_problem:
                    self.on_problem(problem)

    def tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the console log (kernel and user), for error excerpts."""
        self.log.flush()
        name = getattr(self.log, "name", None)
        if isinstance(name, str) and Path(name).is_file():
            text = Path(name).read_bytes()[-20000:].decode("utf-8", errors="replace")
            return "\n".join(text.replace("\r", "").splitlines()[-lines:])
        return ""

    def expect_user(self, pattern: re.Pattern[str], budget: Budget) -> re.Match[str]:
        """Wait until ``pattern`` matches the user text not yet consumed; consume through it."""
        while True:
            m = pattern.search(self.splitter.user, self._consumed)
            if m:
                self._consumed = m.end()
                return m
            self._pump(budget)

    def wait_for_shell(self, budget: Budget) -> float:
        """Wait for /init's banner, then for a first command to answer; return seconds spent.

        The batch shell prints no prompt; a marker round trip proves it reads.

        Raises:
            GuestGone: QEMU exited during boot (e.g. a panic).
            ConsoleTimeout: no shell within the budget.
        """
        start = time.monotonic()
        self.expect_user(re.compile(re.escape(READY_BANNER)), budget)
        self.run("true", budget)
        return time.monotonic() - start

    def run(self, command: str, budget: Budget) -> CommandResult:
        """Run one shell command in the guest and return its output and exit status.

        Raises:
            ValueError: ``command`` contains a newline or another control character.
            ConsoleTimeout, GuestGone: see :meth:`wait_for_shell`.
        """
        if "\n" in command or "\r" in command:
            raise ValueError("guest commands are single lines")
        if m := _CONTROL.search(command):
            raise ValueError(f"guest commands hold no control character, got {m.group(0)!r}")
        marker = secrets.token_hex(5)
        quoted = f"'{marker[:5]}''{marker[5:]}'"
        start = time.monotonic()
        self.child.send(f"printf '\\n%sB\\n' {quoted}; {command}; "
                        f"printf '\\n%sE %d\\n' {quoted} $?\n".encode())
        self.expect_user(re.compile(re.escape(marker) + r"B\n"), budget)
        begin = self._consumed
        # The newline before the marker is the protocol's, not the output's (unless output
        # that looked like a kernel record took it along).
        end = self.expect_user(re.compile(r"\n?" + re.escape(marker) + r"E (\d+)\n"), budget)
        output = self.splitter.user[begin:end.start()]
        return CommandResult(command, output, int(end.group(1)), time.monotonic() - start)

    def poweroff(self, budget: Budget) -> bool:
        """Ask the guest to power off and wait for QEMU to exit; True if it did in time."""
        try:
            self.child.send(b"poweroff -f\n")
            while True:
                self._pump(budget)
        except GuestGone:
            return True
        except (ConsoleTimeout, OSError):
            return False

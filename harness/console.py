"""The guest's serial console, driven with pexpect.

Running is kept apart from parsing: this module moves bytes, tees every byte to
the console log, splits kernel records from user text (``klog.ConsoleSplitter``)
and finds command markers; it decides nothing about CMA.

Command protocol (after labgrid's ShellDriver): each step of a
:class:`~harness.script.CellScript` is sent as one line that prints a begin
marker, runs the command and prints an end marker with the exit status
(:func:`harness.script.step_line`).  The markers are printed with ``printf``
from a format string, so the echo of the typed line never matches, and they
carry a per-job nonce, the step id and the guest's uptime.  No prompt is ever
matched: only markers are trusted, so a kernel line between a marker and a
prompt (which loses labgrid its sync) cannot matter.  Each marker starts a line
of its own: output that ends in something looking like the start of a kernel
record (``[    1.000000] ...`` without a newline, e.g. garbage on the console)
can swallow the rest of its line, never the marker.  The markers are found by
:class:`harness.transcript.StepParser`, the parser the judge uses on the saved
log; every (nested) step gets its own time budget.
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
from harness.klog import ConsoleSplitter, Problem, classify
from harness.script import BudgetKind, Budgets, Step, step_line
from harness.transcript import StepParser, StepRecord, gone_message

READY_BANNER = "cma-harness: init ready"
_TIMEOUT_FACTOR_ENV = "CMA_HARNESS_TIMEOUT_FACTOR"
SHELL_STEP = "shell"  # the first step, ``true``: the shell answers
# Bytes typed in one burst.  QEMU's exynos4210 UART (smdkc210) loses input beyond its
# 256-byte receive FIFO when a line arrives at once, so a longer line is typed in bursts,
# each after the tty echoed the one before (the guest has drained the FIFO).
CHUNK = 192
ECHO_SECONDS = 2.0  # how long to wait for a burst's echo before typing on regardless
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
        """True once no time is left."""
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
        """The output split into lines."""
        return self.output.splitlines()


@dataclass
class ConsoleTranscript:
    """What the console saw so far: kernel records and the problems among them."""

    records: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


class GuestGone(BootError):
    """The guest stopped: QEMU exited (a panic with ``panic=-1``, or poweroff).

    ``step``: the innermost step it stopped in ("" outside any).
    """

    step = ""


class ConsoleTimeout(BootError):
    """The guest did not answer within the step's budget (``seconds``, scaled) in ``step``."""

    step = ""
    seconds = 0.0


class Console:
    """A pexpect-driven serial console of one QEMU guest.

    Args:
        child: a spawned ``pexpect.spawn`` of QEMU (bytes mode).
        log: binary file every console byte is copied to, as it arrives.
        nonce: the markers' nonce (the job's); a fresh random one by default.
    """

    def __init__(self, child: pexpect.spawn[bytes], log: IO[bytes], nonce: str | None = None) -> None:
        self.child = child
        self.child.delaybeforesend = None  # pexpect sleeps 50 ms before every send by default
        self.log = log
        self.nonce = nonce or secrets.token_hex(6)
        self.splitter = ConsoleSplitter()
        self.parser = StepParser(self.nonce)
        self.transcript = ConsoleTranscript()
        self._consumed = 0  # index into splitter.user already matched
        self._adhoc = 0  # ad-hoc commands run so far (:meth:`run`)
        # One decoder for the whole stream: a UTF-8 character split across two reads is
        # decoded whole; invalid bytes (garbage) become U+FFFD, the log keeps them as they came.
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def _pump(self, budget: Budget) -> None:
        """Read what is available (waiting at most the budget); raise on EOF or timeout."""
        try:
            data = self.child.read_nonblocking(65536, timeout=max(0.01, budget.remaining()))
        except pexpect.TIMEOUT as exc:
            timeout = ConsoleTimeout(f"no answer from the guest within {budget.seconds:.0f}s", self.tail())
            timeout.seconds = budget.seconds
            raise timeout from exc
        except pexpect.EOF as exc:
            self._feed(self._decoder.decode(b"", final=True))
            self.splitter.flush()
            raise GuestGone(gone_message(self.transcript.problems), self.tail()) from exc
        self.log.write(data)
        self.log.flush()
        self._feed(self._decoder.decode(data))

    def _feed(self, text: str) -> None:
        for record in self.splitter.feed(text.replace("\r", "")):
            self.transcript.records.append(record)
            kind = classify(record)
            if kind is not None:
                self.transcript.problems.append(Problem(kind, record))

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
        """Wait for /init's banner, then for the step ``shell`` (``true``) to answer; seconds spent.

        The batch shell prints no prompt; a marker round trip proves it reads.
        Banner and round trip share ``budget``.

        Raises:
            GuestGone: QEMU exited during boot (e.g. a panic).
            ConsoleTimeout: no shell within the budget.
        """
        start = time.monotonic()
        try:
            self.expect_user(re.compile(re.escape(READY_BANNER)), budget)
        except (GuestGone, ConsoleTimeout) as exc:
            exc.step = SHELL_STEP
            raise
        self._run(Step(SHELL_STEP, "true", BudgetKind.BOOT), lambda kind: budget)
        return time.monotonic() - start

    def run_step(self, step: Step, budgets: Budgets) -> StepRecord:
        """Send ``step`` and wait for its end marker; each (nested) step gets a budget of its kind.

        A nested step's begin marker starts a fresh budget of the kind it names;
        its end marker one of ``step``'s kind again.  Budgets are scaled by
        :func:`timeout_factor`.

        Raises:
            ValueError: the command holds a newline or another control character,
                or its line is too long for the tty.
            ConsoleTimeout, GuestGone: see :meth:`wait_for_shell`; ``step`` names
                the innermost step the guest stopped in.
        """
        def budget_for(kind: str) -> Budget:
            known = kind in {k.value for k in BudgetKind}
            return Budget(budgets.seconds(BudgetKind(kind) if known else BudgetKind.COMMAND))
        return self._run(step, budget_for)

    def run(self, command: str, budget: Budget) -> CommandResult:
        """Run one ad-hoc shell command in the guest (one budget); its output and exit status.

        Raises:
            ValueError: ``command`` contains a newline or another control character.
            ConsoleTimeout, GuestGone: see :meth:`wait_for_shell`.
        """
        self._adhoc += 1
        start = time.monotonic()
        record = self._run(Step(f"cmd-{self._adhoc}", command), lambda kind: budget)
        return CommandResult(command, record.output, record.status if record.status is not None else -1,
                             time.monotonic() - start)

    def _type(self, text: str) -> None:
        """Send ``text`` in bursts of :data:`CHUNK` bytes, each after the echo of all before it.

        An echo that does not come within :data:`ECHO_SECONDS` (output of a
        command still running interleaved with it) is not waited for longer.

        Raises:
            GuestGone: QEMU exited meanwhile.
        """
        start = len(self.splitter.user)
        for i in range(0, len(text), CHUNK):
            chunk = text[i:i + CHUNK]
            self.child.send(chunk.encode())
            if i + CHUNK >= len(text):
                return
            budget = Budget(ECHO_SECONDS)
            typed = text[:i + CHUNK]
            try:
                while typed not in self.splitter.user[start:] + self.splitter.pending:
                    self._pump(budget)
            except ConsoleTimeout:
                pass

    def _run(self, step: Step, budget_for: Callable[[str], Budget]) -> StepRecord:
        """Send ``step``'s line; follow its markers until it ends (see :meth:`run_step`)."""
        if "\n" in step.command or "\r" in step.command:
            raise ValueError("guest commands are single lines")
        if m := _CONTROL.search(step.command):
            raise ValueError(f"guest commands hold no control character, got {m.group(0)!r}")
        budget = budget_for(step.kind.value)
        try:
            self._type(f"{step_line(step, self.nonce)}\n")
            while True:
                for record in self.parser.scan(self.splitter.user):
                    if record.id == step.id and record.complete:
                        return record
                    if record.id != step.id:
                        budget = budget_for(step.kind.value if record.complete else record.kind)
                self._pump(budget)
        except (GuestGone, ConsoleTimeout) as exc:
            exc.step = self.parser.open[-1].id if self.parser.open else step.id
            raise

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

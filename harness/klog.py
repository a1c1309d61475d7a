"""Kernel log: telling kernel records apart from user output on a shared console.

With ``CONFIG_PRINTK_TIME`` every kernel record on the console starts with a
``[    12.345678] `` timestamp and ends with a newline, and the console driver
writes a record in one go under the port lock, so a record is contiguous in the
stream even when it lands in the middle of a line a user program is writing.
:class:`ConsoleSplitter` cuts such records out wherever they appear, which
leaves the user stream exactly as the program wrote it: a late kernel line can
never split a command marker (labgrid's ShellDriver loses sync in that case).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

# A record: "[" spaces seconds "." 6 digits "] " text up to the newline.
# "(?<!>)": dmesg -r prints "<6>[  1.000000] ..."; those lines are user
# output of a command, not console records.
_RECORD = re.compile(r"(?<!>)\[ *\d+\.\d{6}\] [^\n]*\n")
_RECORD_PREFIX = re.compile(r"(?<!>)\[ *\d*(\.\d{0,6}(\]( [^\n]*)?)?)?\Z")
_TIMESTAMP = re.compile(r"^\[ *(\d+\.\d{6})\] ")


class ProblemKind(Enum):
    """Kinds of kernel trouble, most severe first."""

    PANIC = "panic"
    OOPS = "oops"
    BUG = "BUG"
    WARNING = "WARNING"


# Patterns from the kernel's own printk formats:
#   panic():            "Kernel panic - not syncing: ..."         (kernel/panic.c)
#   __die() on ARM:     "Internal error: Oops: 17 [#1] SMP ARM"   (arch/arm/kernel/traps.c)
#   BUG():              "kernel BUG at mm/cma.c:123!"             (lib/bug.c)
#   "BUG: sleeping function called ...", "BUG: KASAN: ..."        (many places)
#   __warn():           "WARNING: CPU: 0 PID: 1 at mm/cma.c:1 f+0x0/0x0" (kernel/panic.c)
_PROBLEMS = (
    (ProblemKind.PANIC, re.compile(r"Kernel panic - not syncing")),
    (ProblemKind.OOPS, re.compile(r"Internal error: |Unable to handle kernel |\bOops\b")),
    (ProblemKind.BUG, re.compile(r"kernel BUG at |\bBUG: ")),
    (ProblemKind.WARNING, re.compile(r"WARNING: CPU: \d+ PID: \d+ at |WARNING: at ")),
)


@dataclass(frozen=True)
class Problem:
    """A kernel problem line: its kind and the line as printed (timestamp included)."""

    kind: ProblemKind
    line: str


def classify(line: str) -> ProblemKind | None:
    """The :class:`ProblemKind` of one kernel log line, or None for an ordinary line."""
    for kind, pattern in _PROBLEMS:
        if pattern.search(line):
            return kind
    return None


def find_problems(lines: Iterable[str]) -> list[Problem]:
    """Every panic, Oops, BUG and WARNING line in ``lines``, in order."""
    found = []
    for line in lines:
        kind = classify(line)
        if kind is not None:
            found.append(Problem(kind, line.rstrip()))
    return found


def timestamp(line: str) -> float | None:
    """The printk timestamp of a record in seconds since boot, or None."""
    m = _TIMESTAMP.match(line)
    return float(m.group(1)) if m else None


class ConsoleSplitter:
    """Splits console text into kernel records and user text, incrementally.

    Feed text (``\\r`` already removed) as it arrives with :meth:`feed`; it
    returns the kernel records completed by this chunk.  The user text read so
    far accumulates in :attr:`user`, the records in :attr:`records`, and for
    each record :attr:`offsets` holds the offset in :attr:`user` where it was
    cut out.  A possible record start at the end of the input is held back
    until its newline arrives (or it stops looking like one).
    """

    def __init__(self) -> None:
        self.user = ""
        self.records: list[str] = []
        self.offsets: list[int] = []
        self._pending = ""

    def feed(self, text: str) -> list[str]:
        """Consume ``text``; return the complete kernel records found (without newline)."""
        data = self._pending + text
        records: list[str] = []
        out: list[str] = []
        pos = 0
        cut = len(self.user)
        for m in _RECORD.finditer(data):
            out.append(data[pos:m.start()])
            cut += m.start() - pos
            records.append(m.group(0).rstrip("\n"))
            self.offsets.append(cut)
            pos = m.end()
        rest = data[pos:]
        held = _RECORD_PREFIX.search(rest)
        if held:
            out.append(rest[:held.start()])
            self._pending = rest[held.start():]
        else:
            out.append(rest)
            self._pending = ""
        self.user += "".join(out)
        self.records += records
        return records

    @property
    def pending(self) -> str:
        """Text held back as a possible start of a record (not yet in :attr:`user`)."""
        return self._pending

    def flush(self) -> None:
        """Treat any held-back text as user text (call at EOF)."""
        self.user += self._pending
        self._pending = ""

"""The one parser of a cell's console: kernel records, and the steps between markers.

Both the live driver (:class:`harness.console.Console`, as bytes stream in) and
the judge (:func:`parse_log`, on a saved log) use :class:`StepParser`: the
user text (what is left once :class:`~harness.klog.ConsoleSplitter` has cut out
the kernel records) is scanned for the marker lines of :mod:`harness.script`,
and each begin/end pair becomes a :class:`StepRecord` (nested ones become its
children).  A marker line is only trusted once complete (its newline arrived).
The newline printed before an end marker is the protocol's, not the output's.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field

from harness.klog import ConsoleSplitter, Problem, ProblemKind, classify

_TAIL_BYTES = 20000
_TIMESTAMP = re.compile(r"^\[ *\d+\.\d+\] ")
GONE = "the guest stopped (QEMU exited)"


def gone_message(problems: list[Problem]) -> str:
    """Why the console ended: QEMU exited, after a kernel panic if ``problems`` hold one."""
    panic = next((p.line for p in problems if p.kind is ProblemKind.PANIC), "")
    return f"{GONE} after a kernel panic: {_TIMESTAMP.sub('', panic).strip()}" if panic else GONE


@dataclass
class StepRecord:
    """One (nested) step as the console showed it.

    Attributes:
        id: the step id of its markers.
        kind: the budget kind its begin marker named (``command``, ``suite``...).
        begin: guest uptime (s) at its begin marker.
        start: offset in the user text where its output starts.
        end: guest uptime (s) at its end marker; None while it has not ended.
        status: the exit status; None when its guard skipped it (``-``) or it never ended.
        output: its output (nested markers included), set when it ended.
        children: its nested steps, in order.
        complete: its end marker arrived.
        stop: offset in the user text just after its end marker (0 while it has not ended).
    """

    id: str
    kind: str
    begin: float
    start: int
    end: float | None = None
    status: int | None = None
    output: str = ""
    children: list[StepRecord] = field(default_factory=list)
    complete: bool = False
    stop: int = 0

    @property
    def skipped(self) -> bool:
        """The guard skipped it: it ended without running (status ``-``)."""
        return self.complete and self.status is None

    @property
    def seconds(self) -> float:
        """Guest time between its markers (10 ms resolution); 0 while it has not ended."""
        return max(0.0, self.end - self.begin) if self.end is not None else 0.0


def _marker(nonce: str) -> re.Pattern[str]:
    return re.compile(r"\n?@@" + re.escape(nonce) + r" (?:begin (?P<kind>\S+) (?P<bid>\S+)|"
                      r"end (?P<eid>\S+) (?P<status>-|\d+)) (?P<up>\d+(?:\.\d+)?)\n")


class StepParser:
    """Finds marker lines of ``nonce`` in growing user text; keeps the tree of steps.

    Attributes:
        roots: the top-level steps seen so far, in order.
        by_id: every step seen by id (a repeated id: the latest).
        open: the steps begun and not yet ended, outermost first.
    """

    def __init__(self, nonce: str) -> None:
        self._pattern = _marker(nonce)
        self._pos = 0
        self.roots: list[StepRecord] = []
        self.by_id: dict[str, StepRecord] = {}
        self.open: list[StepRecord] = []

    def scan(self, user: str) -> list[StepRecord]:
        """Read the markers completed in ``user`` (all user text so far) since the last call.

        Returns:
            The steps begun or ended by them, in order (a step twice if both).
        """
        touched = []
        while m := self._pattern.search(user, self._pos):
            self._pos = m.end()
            record = self._begin(m) if m.group("bid") else self._end(m, user)
            if record is not None:
                touched.append(record)
        return touched

    def _begin(self, m: re.Match[str]) -> StepRecord:
        record = StepRecord(m.group("bid"), m.group("kind"), float(m.group("up")), m.end())
        (self.open[-1].children if self.open else self.roots).append(record)
        self.open.append(record)
        self.by_id[record.id] = record
        return record

    def _end(self, m: re.Match[str], user: str) -> StepRecord | None:
        """Close the open step ``eid`` (and any step left open inside it); None for an unknown id."""
        ids = [r.id for r in self.open]
        depth = len(ids) - 1 - ids[::-1].index(m.group("eid")) if m.group("eid") in ids else None
        if depth is None:
            return None
        record = self.open[depth]
        del self.open[depth:]
        record.end, record.complete, record.stop = float(m.group("up")), True, m.end()
        record.status = None if m.group("status") == "-" else int(m.group("status"))
        record.output = user[record.start:m.start()]
        return record


@dataclass
class Transcript:
    """A console log parsed whole.

    Attributes:
        user: the user text (kernel records cut out, ``\\r`` removed).
        records: the kernel records, in order (without newline).
        offsets: for each record, the offset in ``user`` where it was cut out.
        problems: the panic/Oops/BUG/WARNING records.
        steps: the steps by id (see :class:`StepParser`).
        roots: the top-level steps, in order.
        tail: the log's last 40 lines (kernel and user), for error excerpts.
    """

    user: str
    records: list[str]
    offsets: list[int]
    problems: list[Problem]
    steps: dict[str, StepRecord]
    roots: list[StepRecord]
    tail: str

    def records_before(self, offset: int) -> list[str]:
        """The kernel records cut out before ``offset`` of the user text."""
        return [r for r, at in zip(self.records, self.offsets, strict=True) if at <= offset]


def log_tail(log: bytes, lines: int = 40) -> str:
    """The last ``lines`` lines of a console log (from its last 20000 bytes), ``\\r`` removed."""
    text = log[-_TAIL_BYTES:].decode("utf-8", errors="replace")
    return "\n".join(text.replace("\r", "").splitlines()[-lines:])


def split_log(log: bytes) -> ConsoleSplitter:
    """The whole log through a :class:`ConsoleSplitter`, as the live console fed it, then flushed."""
    splitter = ConsoleSplitter()
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    splitter.feed(decoder.decode(log, final=True).replace("\r", ""))
    splitter.flush()
    return splitter


def parse_log(log: bytes, nonce: str) -> Transcript:
    """Parse a whole console log: kernel records, and the steps whose markers carry ``nonce``."""
    splitter = split_log(log)
    parser = StepParser(nonce)
    parser.scan(splitter.user)
    problems = [Problem(kind, r) for r in splitter.records if (kind := classify(r)) is not None]
    return Transcript(splitter.user, splitter.records, splitter.offsets, problems, parser.by_id,
                      parser.roots, log_tail(log))

"""One queue of cells over every host's slots: longest first, a lost host's cells run elsewhere.

:func:`run_on_slots` starts one worker thread per :class:`Slot` (a place where
one guest runs: a local slot, or one of an SSH host's).  Each worker takes the
longest cell still queued (:func:`harness.runner.estimated_seconds`), runs it,
and hands the result to the calling thread, which calls ``on_done`` at once.

A slot whose run raises :class:`~harness.remote.HostLost` puts its cell back at
the head of the queue and retires every slot of that host; a cell left when no
slot is alive becomes an infrastructure error naming the lost hosts, never a
silent pass.  :class:`~harness.remote.HostUnusable` (the host is there but
``cell`` could not run the job) is that cell's infrastructure error.
"""

from __future__ import annotations

import concurrent.futures as cf
import queue
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.cellresult import CellResult
from harness.checks import CheckResult, Status
from harness.matrix import Cell
from harness.remote import HostLost, HostUnusable
from harness.runner import CellProgress, estimated_seconds, skipped_result


@dataclass(frozen=True)
class Slot:
    """One guest at a time on one host.

    Attributes:
        host: the host's name (``local`` for this machine).
        run: boots ``cell`` with its log at the path given; raises
            :class:`HostLost` when the host goes away.
    """

    host: str
    run: Callable[[int, Path], CellResult]


def infra_error(cell: Cell, log: Path, host: str, message: str) -> CellResult:
    """A cell that could not run for the hosts' sake: one infrastructure ``<error>``, ``host`` property.

    Writes ``log`` (one line saying why) so the cell has a console log like any other.
    """
    log.write_text(f"not booted: {message}\n")
    check = CheckResult("boot", Status.ERROR, message, infrastructure=True)
    return CellResult(cell, [check], log, 0.0, extra={"host": host})


@dataclass
class _Queue:
    """The shared state of the workers (guarded by ``lock``).

    A worker with nothing to take waits while cells still run elsewhere: a host
    lost with one of them gives it back, and a live slot must be there to take it.
    """

    pending: deque[int]
    running: int = 0
    lost: dict[str, str] = field(default_factory=dict)  # host -> why
    news: list[str] = field(default_factory=list)  # lost hosts not yet reported
    stop: bool = False
    lock: threading.Condition = field(default_factory=threading.Condition)

    def take(self, host: str) -> int | None:
        """The next cell for a slot of ``host``; None when the slot is done (or its host lost)."""
        with self.lock:
            while not (self.stop or host in self.lost):
                if self.pending:
                    self.running += 1
                    return self.pending.popleft()
                if not self.running:
                    break
                self.lock.wait()
            self.lock.notify_all()
            return None

    def ran(self) -> None:
        """A taken cell has its result."""
        with self.lock:
            self.running -= 1
            self.lock.notify_all()

    def halt(self) -> None:
        """Stop every worker (Ctrl-C): nothing more is taken."""
        with self.lock:
            self.stop = True
            self.pending.clear()
            self.lock.notify_all()

    def give_back(self, i: int, host: str, why: str) -> None:
        with self.lock:
            if host not in self.lost:
                self.lost[host] = why
                self.news.append(f"{why}: its cells go to the other hosts")
            self.pending.appendleft(i)
            self.running -= 1
            self.lock.notify_all()

    def take_news(self) -> list[str]:
        with self.lock:
            news, self.news[:] = list(self.news), []
            return news


def _worker(slot: Slot, q: _Queue, logs: Sequence[Path], done: queue.Queue[tuple[int, object]]) -> None:
    while (i := q.take(slot.host)) is not None:
        try:
            result: object = slot.run(i, logs[i])
        except HostLost as exc:
            q.give_back(i, slot.host, str(exc))
            done.put((-1, None))  # wake the collector: the live slots may all be gone
            return
        except HostUnusable as exc:
            result = None
            message = str(exc)
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread, which re-raises
            done.put((i, exc))
            q.ran()
            return
        done.put((i, result if result is not None else ("unusable", slot.host, message)))
        q.ran()


@dataclass
class _Workers:
    """The worker threads, and the slots still to come (hosts being prepared)."""

    q: _Queue
    logs: Sequence[Path]
    done: queue.Queue[tuple[int, object]]
    later: list[cf.Future[list[Slot]]]
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self, slots: Sequence[Slot]) -> None:
        for s in slots:
            t = threading.Thread(target=_worker, args=(s, self.q, self.logs, self.done),
                                 name=f"slot-{s.host}", daemon=True)
            t.start()
            self.threads.append(t)

    def start_ready(self) -> None:
        """Start the slots of every host whose preparation has finished (re-raises its error)."""
        for fut in [f for f in self.later if f.done()]:
            self.later.remove(fut)
            self.start(fut.result())

    def alive(self) -> bool:
        return bool(self.later) or any(t.is_alive() for t in self.threads)


def run_on_slots(cells: Sequence[Cell], logs: Sequence[Path], slots: Sequence[Slot],
                 on_done: Callable[[CellResult], None], progress: CellProgress,
                 previous: dict[str, float], on_stop: Callable[[], None],
                 later: Sequence[cf.Future[list[Slot]]] = ()) -> list[CellResult]:
    """Run ``cells`` (logs at ``logs``) on ``slots``; the results in ``cells``' order.

    ``on_done`` and ``progress`` see each result in the calling thread as it
    comes.  ``previous``: seconds by slug (longest first).  ``later``: slots that
    join when their future is done (a host being prepared while the local slots
    already run; an empty list: the host was left out).  ``on_stop``: kills
    every running guest, here and on the hosts; called when an exception (Ctrl-C
    among them) stops the run, before the workers are joined and it propagates.

    Raises:
        ValueError: no slot now and none to come.
        Whatever a ``later`` future raised.
    """
    if not slots and not later:
        raise ValueError("no slot to run cells on")
    results: dict[int, CellResult] = {}

    def finish(i: int, result: CellResult) -> None:
        results[i] = result
        on_done(result)
        progress.finished(result)

    order = sorted(range(len(cells)), key=lambda i: -estimated_seconds(cells[i], previous))
    for i in order:
        if cells[i].skip:
            finish(i, skipped_result(cells[i], logs[i]))
    q = _Queue(deque(i for i in order if not cells[i].skip))
    workers = _Workers(q, logs, queue.Queue(), list(later))
    try:
        workers.start(slots)
        _collect(cells, logs, workers, finish, results, progress)
    except BaseException:
        q.halt()
        on_stop()
        for w in workers.threads:
            w.join(timeout=30)
        raise
    return [results[i] for i in range(len(cells))]


def _collect(cells: Sequence[Cell], logs: Sequence[Path], workers: _Workers,
             finish: Callable[[int, CellResult], None], results: dict[int, CellResult],
             progress: CellProgress) -> None:
    """Take results until every cell has one; orphans become infrastructure errors."""
    q, done = workers.q, workers.done
    while len(results) < len(cells):
        workers.start_ready()
        try:
            i, got = done.get(timeout=0.2)
        except queue.Empty:
            i, got = -1, None
        for line in q.take_news():
            progress.note(line)
        if isinstance(got, BaseException):
            raise got
        if isinstance(got, CellResult):
            finish(i, got)
        elif isinstance(got, tuple):
            finish(i, infra_error(cells[i], logs[i], got[1], got[2]))
        if not workers.alive() and done.empty():
            with q.lock:
                orphans, lost = list(q.pending), dict(q.lost)
                q.pending.clear()
            why = "; ".join(lost.values()) or "no host could take it"
            for j in orphans:
                finish(j, infra_error(cells[j], logs[j], ",".join(lost) or "none",
                                      f"no host left to run the cell: {why}"))

"""Running one cell: boot the guest, drive its script over the console, judge the log.

The live driver here only moves the cell's script (:mod:`harness.script`)
through the console and records how the guest stopped (an
:class:`~harness.cellresult.Ending`); every testcase is then computed from the
saved console log by :func:`harness.judge.judge`, as it would be for a log
any other executor returned.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import cast

import pexpect

from harness import oracle, qemu
from harness.cellresult import CellResult, Ending, EndKind
from harness.console import Budget, Console, ConsoleTimeout, GuestGone
from harness.errors import BootError
from harness.expectation import Expectation
from harness.job import CellJob
from harness.judge import ReservationCheck, judge
from harness.matrix import Cell
from harness.qemu import BootSpec, qemu_argv
from harness.script import DEBUGFS_PAGES, Budgets, CellScript

__all__ = ["DEBUGFS_PAGES", "CellResult", "ReservationCheck", "allow_guests", "drive", "host_ended",
           "kill_all_guests", "oracle_expectation", "run_cell", "run_job", "running_qemu"]

_live: set[pexpect.spawn[bytes]] = set()
_live_lock = threading.Lock()
_stopping = threading.Event()  # set by kill_all_guests(): a guest started after it dies at once


def allow_guests() -> None:
    """Let :func:`running_qemu` start guests again (a new run after :func:`kill_all_guests`)."""
    _stopping.clear()


def kill_all_guests() -> int:
    """Kill every QEMU started by :func:`running_qemu` that is still running, and any started later.

    For Ctrl-C while cells run in worker threads: the threads' own cleanup only
    runs once their blocking read returns, which killing QEMU makes immediate.
    A worker that was starting a guest at that moment has it killed as soon as
    it is registered, until :func:`allow_guests`.  Returns the number of guests
    still registered.
    """
    with _live_lock:
        _stopping.set()
        children = list(_live)
    for child in children:
        if child.isalive():
            child.kill(signal.SIGKILL)
    return len(children)


@contextlib.contextmanager
def running_qemu(argv: list[str]) -> Iterator[pexpect.spawn[bytes]]:
    """Start QEMU under a pty; on leaving (normally, on error or Ctrl-C) kill it."""
    # encoding=None: a bytes child (the stubs cannot infer it).
    child = cast("pexpect.spawn[bytes]", pexpect.spawn(
        argv[0], argv[1:], timeout=None, preexec_fn=qemu.die_with_parent, encoding=None))
    with _live_lock:
        _live.add(child)
        if _stopping.is_set():
            child.kill(signal.SIGKILL)
    try:
        yield child
    finally:
        with _live_lock:
            _live.discard(child)
        if child.isalive():
            child.terminate(force=True)
        child.close(force=True)


def host_ended(child: pexpect.spawn[bytes], gone: bool, kernel_ran: bool) -> str:
    """Why QEMU is gone if the host, not the guest, ended it; ``""`` otherwise.

    ``gone``: the console reached EOF (QEMU exited); its exit is then awaited up
    to 2 s.  A guest that powers off or panics (``panic=-1`` with ``-no-reboot``)
    makes QEMU exit 0, a verdict on the kernel.  QEMU killed by a signal it did
    not get from the harness, or exiting non-zero before the kernel printed a
    record (a missing or unreadable dtb, zImage or initrd), is infrastructure.
    """
    deadline = time.monotonic() + (2.0 if gone else 0.0)
    while child.isalive() and time.monotonic() < deadline:
        time.sleep(0.02)
    if child.isalive():
        return ""
    if child.signalstatus is not None:
        return f"QEMU was killed by {signal.Signals(child.signalstatus).name}"
    if child.exitstatus and not kernel_ran:
        return f"QEMU exited with status {child.exitstatus} before the kernel ran"
    return ""


def _ending(exc: BootError, child: pexpect.spawn[bytes], kernel_ran: bool,
            boot_seconds: float | None) -> Ending:
    """The :class:`Ending` of a guest that stopped with ``exc`` (the host's part from :func:`host_ended`)."""
    gone = isinstance(exc, GuestGone)
    step = exc.step if isinstance(exc, (GuestGone, ConsoleTimeout)) else ""
    budget = exc.seconds if isinstance(exc, ConsoleTimeout) else 0.0
    return Ending(EndKind.GONE if gone else EndKind.TIMEOUT, step, budget,
                  host_ended(child, gone, kernel_ran), boot_seconds)


def drive(console: Console, script: CellScript, budgets: Budgets, child: pexpect.spawn[bytes]) -> Ending:
    """Wait for the shell, send every step of ``script``, power off; how the guest stopped.

    Stops at the first step that times out or during which QEMU exits; never
    raises for guest trouble.  The ending's ``seconds`` and ``qemu_argv`` are
    left for the caller.
    """
    try:
        boot_seconds = console.wait_for_shell(Budget(budgets.boot))
    except BootError as exc:
        return _ending(exc, child, bool(console.transcript.records), None)
    try:
        for step in script.steps:
            console.run_step(step, budgets)
    except BootError as exc:
        return _ending(exc, child, True, boot_seconds)
    console.poweroff(Budget(budgets.poweroff))
    return Ending(EndKind.POWEROFF, boot_seconds=boot_seconds)


def run_job(job: CellJob, log_path: Path, spec: BootSpec | None = None,
            reservation: ReservationCheck | None = None) -> CellResult:
    """Boot ``job`` on this host, drive its script, judge the log; never raises for guest trouble.

    ``spec``: the job's boot with its files already verified
    (:meth:`harness.job.CellJob.spec`); by default they are verified here.
    ``reservation``: judges ``cma-reservation`` instead of the job's expectation.
    The console log is written to ``log_path`` as it arrives; the result's
    ``ending`` says how the guest stopped (see :func:`harness.judge.judge`).

    Raises:
        InputError: a boot file is missing or differs from the job's SHA-256.
        OSError: the log cannot be written.
    """
    argv = qemu_argv(spec or job.spec())
    start = time.monotonic()
    with log_path.open("wb") as log, running_qemu(argv) as child:
        console = Console(child, log, nonce=job.nonce)
        ending = drive(console, job.script(), job.budgets, child)
    ending = replace(ending, seconds=time.monotonic() - start, qemu_argv=tuple(argv))
    return judge(log_path.read_bytes(), job, ending, log_path, reservation)


def oracle_expectation(prediction: oracle.Prediction) -> Expectation:
    """The ``cma-reservation`` judge against the cma= oracle's ``prediction``.

    A thin wrapper of :meth:`harness.expectation.Expectation.from_oracle`, which
    is callable as a :data:`ReservationCheck`.
    """
    return Expectation.from_oracle(prediction)


def run_cell(cell: Cell, spec: BootSpec, log_path: Path,
             expectation: ReservationCheck | None = None) -> CellResult:
    """Boot ``spec`` and check ``cell`` (:func:`run_job` of a job for this host only).

    ``expectation`` judges the ``cma-reservation`` check (the cma= oracle's
    prediction); without it the cell's hand-written ``expect`` is used.  Never
    raises for guest trouble: see :func:`harness.judge.judge`.
    """
    exp = expectation if isinstance(expectation, Expectation) else (
        Expectation.hand_written(cell.expect) if cell.expect is not None else Expectation.missing())
    job = CellJob.local(cell, spec, exp)
    reservation = None if expectation is None or isinstance(expectation, Expectation) else expectation
    return run_job(job, log_path, spec, reservation)

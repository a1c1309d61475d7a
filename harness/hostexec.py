"""The executor of ``run --hosts``: this machine's ``-j`` slots plus every SSH host's, one queue.

:class:`HostsExecutor` prepares every host at the start of the run, in parallel
(:meth:`harness.remote.RemoteHost.prepare`), while the local slots already run
cells; a host that cannot be reached or is not ready is reported and left out, a
host whose key is not the pinned one stops the run
(:class:`~harness.remote.HostKeyRejected`, exit 2).  Each host's slots join the
one queue when it is ready (:func:`harness.slots.run_on_slots`); a remote cell's
result comes back like a local one's with a ``host`` property.  Ctrl-C kills
the local guests and SIGTERMs every remote ``cma-harness cell`` of the run.
"""

from __future__ import annotations

import concurrent.futures as cf
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from harness import runner
from harness.cache import cache_root
from harness.cell import allow_guests, kill_all_guests
from harness.cellresult import CellResult
from harness.errors import EnvironmentProblem
from harness.executor import LogPath, OnResult, cell_runner
from harness.hosts import Host
from harness.plan import PlannedCell
from harness.remote import HostUnusable, RemoteHost, connect
from harness.slots import Slot, run_on_slots
from harness.wheelhouse import Wheelhouse, wheelhouse

LOCAL = "local"


@dataclass
class HostsExecutor:
    """Cells over ``parallel`` local slots and each host's ``slots``.

    Attributes:
        hosts: the SSH hosts (hosts file order).
        parallel: local slots (``-j``; 0: remote only).
        retries: reruns of a failed cell, on the host it ran on (:func:`harness.runner.with_retries`).
        console: where progress goes.
        previous: seconds each cell took last time, by slug (longest start first).
        ready: the hosts prepared for this run (filled by :meth:`run`).
    """

    hosts: Sequence[Host]
    parallel: int
    retries: int
    console: Console
    previous: Mapping[str, float] = field(default_factory=dict)
    ready: list[RemoteHost] = field(default_factory=list)

    def describe(self, cells: int) -> str:
        """How the cells will run, e.g. ``2 at a time here and on 2 host(s) (3 slots)``."""
        slots = sum(h.slots for h in self.hosts)
        return (f"{self.parallel} at a time here and " if self.parallel else "") + \
            f"on {len(self.hosts)} host(s) ({slots} slot(s))"

    def _prepare_host(self, host: Host, wheels: Wheelhouse, jobs: Sequence[PlannedCell], key: str,
                      say: Callable[[str], None]) -> list[Slot]:
        """Prepare ``host`` (:meth:`RemoteHost.prepare`); its slots, or none when it is left out.

        Raises:
            HostKeyRejected: its key is not the pinned one (stops the run).
        """
        boards = {j.job.board.name: j.job.board_toml for j in jobs}
        arts = [a for j in jobs for a in j.job.boot_files]
        start = time.monotonic()
        remote = RemoteHost(host, key)
        try:
            remote.prepare(wheels, boards, arts)
        except HostUnusable as exc:
            say(f"host {host.name}: left out: {exc}")
            return []
        self.ready.append(remote)
        say(f"host {host.name}: ready, {host.slots} slot(s) ({time.monotonic() - start:.1f}s to prepare)")
        return [self._remote_slot(remote, jobs) for _ in range(host.slots)]

    def _local_slot(self, jobs: Sequence[PlannedCell]) -> Slot:
        def run(i: int, log: Path) -> CellResult:
            job = runner.Job(jobs[i].cell, log, cell_runner(jobs[i]))
            result = runner.apply_xfail(runner.with_retries(job, self.retries))
            result.extra = {"host": LOCAL, **result.extra}
            return result
        return Slot(LOCAL, run)

    def _remote_slot(self, rh: RemoteHost, jobs: Sequence[PlannedCell]) -> Slot:
        def run(i: int, log: Path) -> CellResult:
            job = runner.Job(jobs[i].cell, log, lambda path: rh.run_cell(jobs[i].job, path))
            return runner.with_retries(job, self.retries)  # xfail was applied by 'cell' there
        return Slot(rh.host.name, run)

    def _stop(self) -> None:
        deadline = time.monotonic() + 10
        while kill_all_guests() and time.monotonic() < deadline:
            time.sleep(0.05)
        with cf.ThreadPoolExecutor(max_workers=max(1, len(self.ready))) as pool:
            list(pool.map(lambda rh: rh.stop_cells(), list(self.ready)))

    def run(self, jobs: Sequence[PlannedCell], log_path: LogPath, on_result: OnResult) -> list[CellResult]:
        """See :meth:`harness.executor.Executor.run`.

        The local slots start at once; each host's join as soon as it is prepared
        (with ``-j 0`` the run waits for them, and stops if none is ready).

        Raises:
            HostKeyRejected: a host's key is not the pinned one.
            EnvironmentProblem: the wheels cannot be made; ``-j 0`` and no host ready.
        """
        wheels = wheelhouse(cache_root())
        key = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        allow_guests()
        pool = cf.ThreadPoolExecutor(max_workers=max(1, len(self.hosts)), thread_name_prefix="prepare")
        try:
            with runner.CellProgress(self.console, len(jobs)) as progress:
                later = [pool.submit(self._prepare_host, h, wheels, jobs, key, progress.note)
                         for h in self.hosts]
                if not self.parallel and not any(f.result() for f in later):
                    raise EnvironmentProblem("no host can run cells: every host was left out and -j is 0")
                results = run_on_slots([j.cell for j in jobs], [log_path(j.slug) for j in jobs],
                                       [self._local_slot(jobs) for _ in range(self.parallel)], on_result,
                                       progress, dict(self.previous), self._stop, later)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        self._summary(results)
        return results

    def _summary(self, results: Sequence[CellResult]) -> None:
        """One line per host: cells run there, how many failed, busy seconds."""
        by_host: dict[str, list[CellResult]] = {}
        for r in results:
            by_host.setdefault(r.extra.get("host", LOCAL), []).append(r)
        for host, rs in by_host.items():
            bad = sum(r.status.bad for r in rs)
            self.console.print(f"host {host}: {len(rs)} cell(s), {bad} not passed, "
                               f"{sum(r.seconds for r in rs):.0f}s busy", markup=False)


def check_host_keys(hosts: Sequence[Host]) -> None:
    """Log in to every host once (in parallel) before anything is built: a key that is not
    the pinned one stops the run now, not after the build.  Unreachable hosts pass here
    (:meth:`HostsExecutor.run` reports and leaves them out).

    Raises:
        HostKeyRejected: a host's key is unknown or changed.
        InputError: a key or known_hosts file cannot be read.
    """
    def probe(host: Host) -> None:
        try:
            connect(host).close()
        except HostUnusable:
            pass
    with cf.ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
        for fut in [pool.submit(probe, h) for h in hosts]:
            fut.result()

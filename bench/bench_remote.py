"""Benchmark: what a cell costs on an SSH host against the same cell on this machine.

The unit both executors run is a cell job: the local slot calls
:func:`harness.cell.run_job` on it, a host's slot :meth:`harness.remote.RemoteHost.run_cell`
(send the job, ``python -m harness.cellcmd cell`` there, fetch the log and result).
This benchmark takes the jobs of a real run of the default matrix's cells of one
board, then runs each job here and on one sshd host in a network namespace
(tests/sshd_hosts.py), one at a time, alternating, ``--rounds`` times, and reports
per cell the median wall time of each and the overhead.  The host's preparation
(venv made, boot files pushed: :meth:`~harness.remote.RemoteHost.prepare`) is timed
cold and warm and amortised over the run.  The kernels must be built already.

Usage: .venv/bin/python bench/bench_remote.py [--board vexpress-a9] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from harness.cache import cache_root
from harness.cell import run_job
from harness.hosts import load_hosts
from harness.job import CellJob
from harness.remote import RemoteHost
from harness.wheelhouse import wheelhouse
from tests.sshd_hosts import ssh_hosts, write_hosts_toml

REPO = Path(__file__).parents[1]
CLI = [sys.executable, "-m", "harness.cli"]


def _jobs(board: str, out: Path) -> list[CellJob]:
    """The cell jobs of a real ``run --board BOARD`` of the default matrix (also the warm-up)."""
    proc = subprocess.run([*CLI, "run", "--board", board, "-j", "2", "-o", str(out)], capture_output=True,
                          text=True, cwd=REPO, check=False)
    if proc.returncode != 0:
        sys.exit(f"error: the run of {board} exited {proc.returncode}: {proc.stderr[-500:]}")
    jobs = [CellJob.load(p) for p in sorted((out / "latest" / "logs").glob("*.job.json"))]
    return [j for j in jobs if not j.cell.skip]


def _timed(step: Callable[..., object], *args: object) -> float:
    """Wall seconds of ``step(*args)``."""
    start = time.monotonic()
    step(*args)
    return time.monotonic() - start


def main() -> int:
    """Run the benchmark and print the figures (Markdown)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--board", default="vexpress-a9")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    base = cache_root() / "hosts-test"
    base.mkdir(parents=True, exist_ok=True)
    os.chmod(base, 0o700)
    with tempfile.TemporaryDirectory(dir=base) as tmp, ssh_hosts(1, Path(tmp)) as made:
        root = Path(tmp)
        jobs = _jobs(args.board, root / "run")
        (host,) = load_hosts(write_hosts_toml(made, root / "hosts.toml"))
        wheels = wheelhouse(cache_root())
        arts = [a for j in jobs for a in j.boot_files]
        boards = {j.board.name: j.board_toml for j in jobs}
        prep = [_timed(RemoteHost(host, f"bench{i}").prepare, wheels, boards, arts) for i in range(2)]
        remote = RemoteHost(host, "bench")
        remote.prepare(wheels, boards, arts)
        local_s: dict[str, list[float]] = {}
        remote_s: dict[str, list[float]] = {}
        for r in range(args.rounds):
            for job in jobs:
                log = root / f"{job.cell.slug}.{r}.log"
                local_s.setdefault(job.cell.name, []).append(_timed(run_job, job, log))
                remote_s.setdefault(job.cell.name, []).append(_timed(remote.run_cell, job, log))
    _report(local_s, remote_s, prep, len(jobs), args.rounds)
    return 0


def _report(local_s: dict[str, list[float]], remote_s: dict[str, list[float]], prep: list[float],
            cells: int, rounds: int) -> None:
    print("| cell | here (s) | on the host (s) | overhead |\n|---|---|---|---|")
    for name in local_s:
        lo, re_ = statistics.median(local_s[name]), statistics.median(remote_s[name])
        print(f"| {name} | {lo:.2f} | {re_:.2f} | {re_ - lo:+.2f} s ({100 * (re_ - lo) / lo:+.1f} %) |")
    lo_total = sum(statistics.median(v) for v in local_s.values())
    re_total = sum(statistics.median(v) for v in remote_s.values())
    over = [statistics.median(remote_s[n]) - statistics.median(local_s[n]) for n in local_s]
    print(f"\n{cells} cells, medians of {rounds} rounds: here {lo_total:.1f} s, "
          f"on the host {re_total:.1f} s: {100 * (re_total - lo_total) / lo_total:+.1f} % in all; "
          f"per cell {statistics.median(over):+.2f} s median ({min(over):+.2f} to {max(over):+.2f})")
    print(f"host preparation: cold {prep[0]:.1f} s (venv made, boot files pushed), warm {prep[1]:.1f} s; "
          f"cold, amortised over these {cells} cells: {prep[0] / cells:.2f} s per cell "
          f"({100 * prep[0] / lo_total:.1f} % of their time here)")


if __name__ == "__main__":
    sys.exit(main())

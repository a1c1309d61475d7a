"""Benchmark: what a cell costs on an SSH host against the same cell on this machine.

Starts one sshd host in a network namespace (tests/sshd_hosts.py), then times
``cma-harness run`` of the same cells three ways, one guest at a time each:
locally (``-j 1``), on the host for the first time (``-j 0 --hosts``: the venv is
made, the boot files pushed), and on the host again (venv and files already
there).  The per-cell overhead is (remote wall - local wall) / cells; the
first run's extra, the host's preparation, is amortised over the run's cells.
The kernels must be built already (``make test`` or ``cma-harness build``).

Usage: .venv/bin/python bench/bench_remote.py [--cmdline cma=32M ...] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.cache import cache_root
from tests.sshd_hosts import ssh_hosts, write_hosts_toml

REPO = Path(__file__).parents[1]
CLI = [sys.executable, "-m", "harness.cli"]
MATRIX = REPO / "tests/fixtures/matrices/hosts.toml"


def _run(args: list[str], out: Path) -> float:
    """Wall seconds of one ``cma-harness run`` of the bench matrix; exits on failure."""
    start = time.monotonic()
    proc = subprocess.run([*CLI, "run", "-m", str(MATRIX), "--board", "vexpress-a9", *args, "-o", str(out)],
                          capture_output=True, text=True, cwd=REPO, check=False)
    wall = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit(f"error: run {' '.join(args)} exited {proc.returncode}: {proc.stderr[-500:]}")
    return wall


def main() -> int:
    """Run the benchmark and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="warm rounds of each (median)")
    args = parser.parse_args()
    cells = 3  # the vexpress-a9 cells of tests/fixtures/matrices/hosts.toml
    base = cache_root() / "hosts-test"
    base.mkdir(parents=True, exist_ok=True)
    os.chmod(base, 0o700)
    with tempfile.TemporaryDirectory(dir=base) as tmp, ssh_hosts(1, Path(tmp)) as hosts:
        root = Path(tmp)
        hosts_file = write_hosts_toml(hosts, root / "hosts.toml")
        _run(["-j", "1"], root / "warmup")  # plan, oracle and kernel cache warm for both sides
        first = _run(["-j", "0", "--hosts", str(hosts_file)], root / "first")
        local, remote = [], []
        for i in range(args.rounds):
            local.append(_run(["-j", "1"], root / f"local{i}"))
            remote.append(_run(["-j", "0", "--hosts", str(hosts_file)], root / f"remote{i}"))
    lo, re_ = statistics.median(local), statistics.median(remote)
    per_cell_local = lo / cells
    overhead = (re_ - lo) / cells
    prepare = first - re_
    print(f"| {cells} vexpress-a9 cells, one at a time | wall (s) | per cell (s) |\n|---|---|---|")
    print(f"| local (-j 1), median of {args.rounds} | {lo:.1f} | {per_cell_local:.2f} |")
    print(f"| one SSH host, warm (venv and files there), median of {args.rounds} | {re_:.1f} | "
          f"{re_ / cells:.2f} |")
    print(f"| one SSH host, first run (venv made, files pushed) | {first:.1f} | {first / cells:.2f} |")
    print(f"\nremote overhead per cell, warm: {overhead:+.2f} s ({100 * overhead / per_cell_local:+.1f} %)")
    print(f"host preparation (first run - warm run): {prepare:.1f} s, "
          f"{prepare / cells:.2f} s per cell amortised over these {cells}; "
          f"{prepare / 64:.2f} s per cell over the 64-cell default matrix")
    return 0


if __name__ == "__main__":
    sys.exit(main())

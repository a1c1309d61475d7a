"""Benchmark: what a cell costs on an SSH host against the same cell on this machine.

Starts one sshd host in a network namespace (tests/sshd_hosts.py) and runs the
six cells of tests/fixtures/matrices/hosts.toml one at a time: once on the host
cold (its venv made, the boot files pushed), then ``--rounds`` times each here
(``-j 1``) and on the host (``-j 0 --hosts``, venv and files already there).

Per cell, the remote overhead is the cell's ``remote.seconds`` (its wall time on
this machine, job sent to result back) minus the ``seconds`` the cell took on the
host; it is set against the same cell's seconds in the local runs.  The host's
preparation (the cold run's "ready ... to prepare") is amortised over a run's cells
and quoted for the 6 cells here and the 64 of the default matrix.
The kernels must be built already (``make test`` or ``cma-harness build``).

Usage: .venv/bin/python bench/bench_remote.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import re
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


def _run(args: list[str], out: Path) -> tuple[float, str]:
    """Wall seconds and stdout of one ``cma-harness run`` of the bench matrix; exits on failure."""
    start = time.monotonic()
    proc = subprocess.run([*CLI, "run", "-m", str(MATRIX), *args, "-o", str(out)],
                          capture_output=True, text=True, cwd=REPO, check=False)
    if proc.returncode != 0:
        sys.exit(f"error: run {' '.join(args)} exited {proc.returncode}: {proc.stderr[-500:]}")
    return time.monotonic() - start, proc.stdout


def _cells(out: Path) -> dict[str, tuple[float, float | None]]:
    """``{slug: (seconds, remote.seconds or None)}`` from a run's logs/*.result.json."""
    found = {}
    for path in (out / "latest" / "logs").glob("*.result.json"):
        data = json.loads(path.read_text())
        remote = data["extra"].get("remote.seconds")
        found[path.name.removesuffix(".result.json")] = (data["seconds"], None if remote is None
                                                         else float(remote))
    return found


def _prepared(said: str) -> float:
    """The seconds of "host X: ready, N slot(s) (S s to prepare)" in a run's output."""
    found = re.search(r"ready, \d+ slot\(s\) \(([\d.]+)s to prepare\)", said)
    if found is None:
        sys.exit("error: the run did not say how long the host took to prepare")
    return float(found.group(1))


def main() -> int:
    """Run the benchmark and print the figures (Markdown)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="warm runs of each kind")
    args = parser.parse_args()
    base = cache_root() / "hosts-test"
    base.mkdir(parents=True, exist_ok=True)
    os.chmod(base, 0o700)
    local: dict[str, list[float]] = {}
    overhead: dict[str, list[float]] = {}
    walls: dict[str, list[float]] = {"local": [], "remote": []}
    with tempfile.TemporaryDirectory(dir=base) as tmp, ssh_hosts(1, Path(tmp)) as hosts:
        root = Path(tmp)
        hosts_file = write_hosts_toml(hosts, root / "hosts.toml")
        remote_args = ["-j", "0", "--hosts", str(hosts_file)]
        cold_wall, said = _run(remote_args, root / "cold")
        prepare = _prepared(said)
        for i in range(args.rounds):
            wall, _ = _run(["-j", "1"], root / f"local{i}")
            walls["local"].append(wall)
            for slug, (seconds, _) in _cells(root / f"local{i}").items():
                local.setdefault(slug, []).append(seconds)
            wall, said = _run(remote_args, root / f"remote{i}")
            walls["remote"].append(wall)
            warm_prepare = _prepared(said)
            for slug, (seconds, remote) in _cells(root / f"remote{i}").items():
                overhead.setdefault(slug, []).append((remote or seconds) - seconds)
    print(f"| cell | local seconds (median of {args.rounds}) | remote overhead (s) | overhead |")
    print("|---|---|---|---|")
    ratios = []
    for slug in sorted(local):
        lo, ov = statistics.median(local[slug]), statistics.median(overhead[slug])
        ratios.append(ov / lo)
        print(f"| {slug} | {lo:.2f} | {ov:+.2f} | {100 * ov / lo:+.1f} % |")
    print(f"\nper-cell remote overhead: median {100 * statistics.median(ratios):+.1f} %, "
          f"max {100 * max(ratios):+.1f} %")
    print(f"host preparation: cold {prepare:.1f} s (venv made, boot files pushed), "
          f"warm {warm_prepare:.1f} s; cold amortised: {prepare / 6:.2f} s per cell over these 6, "
          f"{prepare / 64:.2f} s over 64 cells")
    print(f"whole runs, one guest at a time (median wall): local {statistics.median(walls['local']):.1f} s, "
          f"on the host {statistics.median(walls['remote']):.1f} s (cold: {cold_wall:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

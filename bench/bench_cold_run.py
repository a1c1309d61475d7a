"""Benchmark: time to first result of a cold ``make run``, as a new user meets it.

Runs ``make run`` in a checkout with an empty cache (``CMA_HARNESS_CACHE`` pointed at a
fresh directory, so the kernel builds, ccache and the initramfs start from nothing) and
reads its output as it streams.  Not on a terminal, the run prints one line per finished
cell (``[i/N] board:cmdline: STATUS (s)``), so the first such line is the first result.

Reports, in seconds from the start of ``make run``: the first cell's result, the whole
matrix, and the exit status.  With ``--root DIR`` the run happens inside a clean root made
by ``scripts/clean-root.sh`` (the checkout is cloned into it first), so the time includes
installing every package with ``scripts/install-deps.sh``.

Usage: python3 bench/bench_cold_run.py [--repo DIR] [--root DIR] [--cache DIR] [-- RUN-ARGS]

Standard library only: it also runs before ``.venv`` exists.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_CELL_LINE = re.compile(r"^\[(\d+)/(\d+)\] (\S.*): (\w+)")


def _command(args: argparse.Namespace, cache: Path) -> list[str]:
    """argv of the measured run: ``make run`` on the host or inside the clean root."""
    run_args = ["RUN_ARGS=" + " ".join(args.run_args)] if args.run_args else []
    if args.root is None:
        return ["env", f"CMA_HARNESS_CACHE={cache}", "make", "-C", str(args.repo), "run", *run_args]
    clean_root = str(REPO / "scripts" / "clean-root.sh")
    # What a new user installs to fetch and start the project; install-deps does the rest.
    started = time.monotonic()
    subprocess.run([clean_root, "exec", str(args.root), "apt-get", "update", "-q"], check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run([clean_root, "exec", str(args.root), "apt-get", "install", "-y", "-q",
                    "--no-install-recommends", "git", "make"], check=True, stdout=subprocess.DEVNULL)
    print(f"git and make installed in the root in {time.monotonic() - started:.1f}s")
    clone = "/root/cma-harness"
    subprocess.run(["git", "clone", "-q", "--no-local", str(args.repo), str(args.root) + clone], check=True)
    return [clean_root, "exec", str(args.root), "make", "-C", clone, "run", *run_args]


def measure(argv: list[str]) -> dict[str, object]:
    """Run ``argv``, timestamping its output lines; returns the timings in seconds."""
    start = time.monotonic()
    first: float | None = None
    cells = 0
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    for line in proc.stdout:
        now = time.monotonic() - start
        sys.stdout.write(f"{now:7.1f}s {line}")
        sys.stdout.flush()
        if _CELL_LINE.match(line.strip()):
            cells += 1
            if first is None:
                first = now
    rc = proc.wait()
    return {"first_result_s": first, "whole_run_s": time.monotonic() - start,
            "cells": cells, "exit_status": rc}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=REPO, help="the checkout to run (default: this one)")
    parser.add_argument("--root", type=Path, help="a clean root from scripts/clean-root.sh create")
    parser.add_argument("--cache", type=Path, help="the empty cache to use (default: a new temp dir)")
    parser.add_argument("run_args", nargs="*", help="extra arguments for cma-harness run")
    args = parser.parse_args()
    cache = args.cache or Path(tempfile.mkdtemp(prefix="cma-harness-cold-"))
    result = measure(_command(args, cache))
    print(json.dumps({"where": "clean root" if args.root else "host", **result}, indent=2))
    return 0 if result["exit_status"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

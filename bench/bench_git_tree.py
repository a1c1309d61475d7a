"""Benchmark: what ``--kernel-src GIT_TREE`` costs before make runs.

Times :func:`harness.kbuild.resolve_source` (the identity: ``git rev-parse``,
``git diff HEAD``, the untracked files) and :func:`harness.kbuild._unpack` (the copy
of what git tracks into a scratch directory beside the cache's trees, removed after),
``--rounds`` times each; prints the medians and the size of the copy.

Usage: .venv/bin/python bench/bench_git_tree.py TREE [--rounds 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from harness import kbuild
from harness.cache import cache_root
from harness.errors import HarnessError


def _time(what: str, rounds: int, step: Callable[[], object]) -> float:
    """Run ``step`` ``rounds`` times; print and return the median wall time (s)."""
    seconds = []
    for _ in range(rounds):
        start = time.monotonic()
        step()
        seconds.append(time.monotonic() - start)
    median = statistics.median(seconds)
    print(f"{what}: median {median:.2f} s over {rounds} ({', '.join(f'{s:.2f}' for s in seconds)})")
    return median


def main() -> int:
    """Run the benchmark; exit status 2 with one ``error:`` line for a bad tree."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tree", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    try:
        source = kbuild.resolve_source(args.tree)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.tree}: Linux {source.version}, identity {source.identity}, git={source.git}")
    _time("identity (resolve_source)", args.rounds, lambda: kbuild.resolve_source(args.tree))
    home = cache_root() / "trees"
    home.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".bench-copy-", dir=home) as tmp:
        dest = Path(tmp) / "src"

        def copy() -> None:
            shutil.rmtree(dest, ignore_errors=True)
            kbuild._unpack(source, dest)

        _time("copy (_unpack)", args.rounds, copy)
        files = [p for p in dest.rglob("*") if p.is_file() and not p.is_symlink()]
        print(f"copied {len(files)} files, {sum(p.stat().st_size for p in files) / 2**20:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: how long drawing a run takes (what every run adds at its end, and ``cma-harness report``).

Times, for a results directory, each of ``--rounds`` fresh processes doing
``cma-harness report RUN -o <tmp>``: the whole command (Python start, imports,
matplotlib's first figure, every memory map and chart, writing the page), and
reports the median, the page's size and the seconds per cell.

Usage: .venv/bin/python bench/bench_report.py RUN [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.reportmodel import load_view


def main() -> int:
    """Time ``--rounds`` renderings of RUN and print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a results directory")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cells = len(load_view(args.run).cells)
    seconds = []
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "report.html"
        for _ in range(args.rounds):
            start = time.monotonic()
            subprocess.run([sys.executable, "-m", "harness.cli", "report", str(args.run), "-o", str(page)],
                           check=True, capture_output=True)
            seconds.append(time.monotonic() - start)
        size = page.stat().st_size
    median = statistics.median(seconds)
    print(f"{cells} cells: report in {median:.2f} s (median of {args.rounds}: "
          f"{', '.join(f'{s:.2f}' for s in seconds)}), {median / cells * 1000:.0f} ms per cell, "
          f"page {size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

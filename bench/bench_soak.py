"""Soak: many cells on one board with a noisy kernel log; count desyncs and lost results.

Runs ``cma-harness run`` on a generated matrix of N cells (default 500), all on one
board with ``cma=64M ignore_loglevel`` (every kernel message goes to the serial console,
interleaving with the harness's command output) plus a dotted ``cmaharness.soak=<i>``
parameter that the kernel ignores and that makes each cell distinct.

Reports, from the results directory the run published:
- cells planned, testsuites in junit.xml, ``cells/*.xml`` files: a lost result is any
  difference between the three;
- console desyncs: testcases whose error says the guest did not answer or that the
  output could not be read (the console lost the command markers);
- other failures and errors, by testcase name;
- wall time in seconds.

Usage: .venv/bin/python bench/bench_soak.py [--cells N] [--board NAME] [-j N]
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from junitparser import Error, Failure, JUnitXml

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "harness.cli"]
_DESYNC = re.compile(r"no answer from the guest|marker|lacks|could not be read", re.I)


def _matrix(path: Path, board: str, cells: int) -> None:
    lines = [f'"cma=64M ignore_loglevel cmaharness.soak={i}"' for i in range(cells)]
    path.write_text(f'name = "soak"\nboards = ["{board}"]\ncmdlines = [\n  ' + ",\n  ".join(lines) + "\n]\n")


def _tally(run: Path) -> dict[str, int | dict[str, int]]:
    """What the published run ``run`` holds: suites, cell files, desyncs, other problems."""
    xml = JUnitXml.fromfile(str(run / "junit.xml"))
    desyncs, problems = 0, collections.Counter[str]()
    suites = 0
    for suite in xml:
        suites += 1
        for case in suite:
            for result in case.result:
                if isinstance(result, (Error, Failure)):
                    if _DESYNC.search(result.message or ""):
                        desyncs += 1
                    problems[case.name] += 1
    return {"testsuites": suites, "cell_files": len(list((run / "cells").glob("*.xml"))),
            "console_desyncs": desyncs, "problems": dict(problems)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=500)
    parser.add_argument("--board", default="vexpress-a9")
    parser.add_argument("-j", "--jobs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cma-soak-") as tmp:
        matrix, results = Path(tmp) / "soak.toml", Path(tmp) / "results"
        _matrix(matrix, args.board, args.cells)
        start = time.monotonic()
        proc = subprocess.run([*CLI, "run", "-m", str(matrix), "-j", str(args.jobs), "-o", str(results)],
                              cwd=REPO, capture_output=True, text=True, check=False)
        took = time.monotonic() - start
        if proc.returncode not in (0, 1):
            print(proc.stderr[-3000:], file=sys.stderr)
            return 2
        tally = _tally(results / "latest")
    lost = args.cells - min(int(str(tally["cell_files"])), int(str(tally["testsuites"])))
    report = {"cells_planned": args.cells, **tally, "lost_results": lost,
              "exit_status": proc.returncode, "seconds": round(took, 1)}
    print(json.dumps(report, indent=2))
    clean = lost == 0 and tally["console_desyncs"] == 0 and proc.returncode == 0
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())

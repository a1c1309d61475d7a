"""Integration: ``cma-harness bisect`` names the patch, and the commit, that broke CMA.

Both tests bisect the cma_clear_bitmap() off-by-one (``tests/fixtures/patches/0005-...``
on 6.1, its 7.x port on 7.2) hidden in the middle of five candidates: two harmless
patches before it and two after (``tests/fixtures/bisect/0005``, ``0006``, ``0008``,
``0009``: comment fixes in ``kernel/dma/contiguous.c`` and ``mm/cma.c``), with the
predicate ``vexpress-a9:cma=32M::cma-debugfs*`` (the debugfs alloc/free round trip,
which the leak breaks) on the one cell of ``tests/fixtures/bisect/matrix.toml``.  The
kernels are really built and booted, through the harness's own build and run code.

* The series form bisects ``tests/fixtures/bisect/series`` (the project's series, then
  the five) from ``--good 0004`` on Debian's 6.1: the good end is the kernel ``make test``
  built first (cached), every other step an incremental build of the shared tree.
* The git form takes the 7.2 git work tree of ``tests/test_git_tree.py`` at its user
  commit (whose kernel that test builds too), commits the five patches on top with
  ``git am`` and bisects ``--good <user commit> --bad HEAD`` with ``git bisect run``:
  every tested commit is built on the good end's tree (the commit's diff, then the
  series), which switches in place: incremental builds, as in the series form.

Each test asserts that the answer is the broken patch or commit, that the verdicts of
the steps are consistent with it (every step before it good, every step from it bad),
and that the reports are there and valid; it prints its wall time and its steps.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.junit_schema import assert_valid_junit
from tests.test_git_tree import git, user_tree  # noqa: F401 (the fixture bisect_tree builds on)
from tests.test_integration import CLI, REPO

pytestmark = pytest.mark.integration

FIXTURES = REPO / "tests" / "fixtures"
SERIES = FIXTURES / "bisect" / "series"
MATRIX = FIXTURES / "bisect" / "matrix.toml"
PREDICATE = "vexpress-a9:cma=32M::cma-debugfs*"
SUBJECT = "mm: cma: clear every bitmap bit a released range spans"
BAD_PATCH = "0007-mm-cma-clear-every-bitmap-bit-a-released-range-spans.patch"
BAD_7X = FIXTURES / "patches" / "7.x-mm-cma-clear-every-bitmap-bit-a-released-range-spans.patch"
HARMLESS = sorted((FIXTURES / "bisect").glob("000[5689]-*.patch"))


def _bisect(out: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """``cma-harness bisect`` on the bisect matrix and predicate; its process and wall time (s)."""
    started = time.monotonic()
    argv = [*CLI, "bisect", "-m", str(MATRIX), "-t", PREDICATE, "-j", "1", "-o", str(out), *args]
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=3600)
    return proc, time.monotonic() - started


def _check_answer(proc: subprocess.CompletedProcess[str], out: Path, name: str,
                  position: int) -> dict[str, Any]:
    """Assert the bisect named ``name`` (the candidate at ``position``) consistently; its bisect.json."""
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    final = (out / "latest").resolve()
    summary: dict[str, Any] = json.loads((final / "bisect.json").read_text())
    assert summary["first_bad"] == {"name": name, "subject": SUBJECT, "position": position}
    steps = summary["steps"]
    for step in steps:  # each verdict agrees with the answer: before it good, from it on bad
        assert step["verdict"] == ("bad" if step["position"] >= position else "good"), step
    assert [s["role"] for s in steps[:2]] == ["good end", "bad end"]
    assert {s["position"] for s in steps} >= {position - 1, position}  # the answer was seen on both sides
    assert assert_valid_junit(final / "bisect.xml").tests == len(steps)
    markdown = (final / "bisect.md").read_text()
    assert "**First bad" in markdown and name in markdown and "cma-debugfs[reserved]" in markdown
    regressions = (final / "compare" / "compare.md").read_text()
    assert "cma-debugfs[reserved]" in regressions and "regression" in regressions
    print(f"first bad: {name}; {len(steps)} steps in {summary['seconds']} s")
    for step in steps:
        print(f"  step {step['number']}: position {step['position']} {step['verdict']}, "
              f"build {step['build_seconds']:.1f} s, boot {step['run_seconds']:.1f} s")
    return summary


def test_a_series_bisect_names_the_patch_that_broke_cma(tmp_path: Path) -> None:
    proc, seconds = _bisect(tmp_path / "res", "--series", str(SERIES), "--good", "0004")
    print(proc.stdout[-3000:])
    _check_answer(proc, tmp_path / "res", BAD_PATCH, 3)
    print(f"series bisect: {seconds:.0f} s wall time")


@pytest.fixture(scope="module")
def bisect_tree(user_tree: tuple[Path, str]) -> Iterator[tuple[Path, str, str]]:  # noqa: F811 (imported)
    """test_git_tree's 7.2.13 tree at its user commit, then the five candidates as commits.

    Yields the tree, the user commit (the good end) and the broken commit.
    """
    tree, user = user_tree
    broken = ""
    try:
        for patch in [*HARMLESS[:2], BAD_7X, *HARMLESS[2:]]:
            git(tree, "am", "-q", str(patch))
            broken = broken or (git(tree, "rev-parse", "HEAD").strip() if patch == BAD_7X else "")
        yield tree, user, broken
    finally:
        git(tree, "reset", "-q", "--hard", user)


def test_a_git_bisect_names_the_commit_that_broke_cma(bisect_tree: tuple[Path, str, str],
                                                      tmp_path: Path) -> None:
    tree, user, broken = bisect_tree
    head = git(tree, "rev-parse", "HEAD").strip()
    proc, seconds = _bisect(tmp_path / "res", "--kernel-src", str(tree), "--good", user, "--bad", "HEAD")
    print(proc.stdout[-3000:])
    summary = _check_answer(proc, tmp_path / "res", broken, 3)
    assert summary["context"]["good end"] == user and summary["context"]["bad end"] == head
    assert git(tree, "rev-parse", "HEAD").strip() == head  # the user's tree was left alone
    assert git(tree, "status", "--porcelain") == ""
    assert len(git(tree, "worktree", "list").splitlines()) == 1  # the scratch work tree is gone
    final = (tmp_path / "res" / "latest").resolve()
    assert f"first bad commit: [{broken}]" in (final / "git-bisect.log").read_text()
    for step in summary["steps"]:  # one kernel tree, the good end's; each commit its diff, then the series
        kernel = json.loads((final / step["runs"][-1] / "run.json").read_text())["kernels"]["vexpress-a9"]
        first = kernel["patches"][0]["name"]
        assert kernel["source_identity"] == f"git:{user}"
        assert first == (f"commit-{step['label'][:12]}.patch" if step["position"] else
                         "0001-dma-contiguous-log-how-early_cma-read-the-cma-parame.patch"), (step, first)
    print(f"git bisect: {seconds:.0f} s wall time")

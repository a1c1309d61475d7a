"""The git form of ``cma-harness bisect``: ``git bisect run`` with the harness as its predicate.

``bisect --kernel-src TREE --good REV [--bad REV]`` (TREE a git work tree, REV
anything ``git rev-parse`` takes; ``--bad`` defaults to ``HEAD``):

1. ``git worktree add --detach`` makes a scratch work tree of TREE at the good end, in
   the cache (``<cache>/bisect/worktrees/<bisect-id>``); TREE's own files (and its
   uncommitted changes) are never touched;
2. the good and the bad end are stepped first, in this process: the good end must
   pass the predicate and the bad end fail it (else one ``error:`` line, exit 2);
3. ``git bisect start --no-checkout BAD GOOD`` and ``git bisect run <python> -m
   harness.bisectgit step STATE`` let git choose each commit (``BISECT_HEAD``); the
   step builds it as :mod:`harness.bisectcommit` says (the scratch tree at the good
   end, the commit's diff, then the series for its version and the ``--patch`` files:
   one shared kernel tree, switched in place, rebuilt incrementally), boots the
   predicate's cells and exits 0 (good), 1 (bad) or 125 (skip: a patch does not
   apply, the kernel does not build, a cell does not boot for a reason the predicate
   does not name, or the step is noisy); a harness error (a full disk...) exits 255,
   which makes git abort, and is reported as one ``error:`` line;
4. the first bad commit is read from git's ``refs/bisect/*`` (or, when skipped commits
   leave several, all of them); ``git bisect log`` is kept as ``git-bisect.log``;
   ``git bisect reset`` and ``git worktree remove`` clean up, also after an error or
   Ctrl-C.

git runs the predicate with every argument shell-quoted (``git bisect run`` quotes
its arguments), and every git command here is an argument list: no user string goes
through a shell.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from rich.console import Console

from harness import plan
from harness.bisect import Candidate, Outcome, make_predicate, steps_left
from harness.bisectcommit import commit_inputs
from harness.bisectstep import (
    BisectProgress,
    Setup,
    StepRecord,
    StepRunner,
    StepSpec,
    check_bad_end,
    check_good_end,
    load_records,
)
from harness.boards import load_board
from harness.cache import cache_root
from harness.errors import EnvironmentProblem, HarnessError, InputError
from harness.kbuild import stop_group
from harness.matrix import load_matrix

STATE = "git-bisect.json"  # the step's settings, in the bisect directory
ERROR = "git-step-error.txt"  # a step's harness error, for the command to report
LOG = "git-bisect.log"
ABORT = 255  # makes git bisect run stop (any exit status above 127 does)


def git(tree: Path, *args: str, check: bool = True) -> str:
    """``git -C tree args`` (an argument list, no shell), its stdout stripped.

    Raises:
        InputError: git failed and ``check`` (the first line of its stderr is quoted).
        EnvironmentProblem: git is not installed.
    """
    try:
        proc = subprocess.run(["git", "-C", str(tree), *args], capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise EnvironmentProblem("git is not installed: apt-get install git") from exc
    if check and proc.returncode != 0:
        said = (proc.stderr.strip().splitlines() or ["no output"])[0]
        raise InputError(f"{tree}: git {' '.join(args[:2])} failed: {said[:300]}")
    return proc.stdout.strip()


def is_git_tree(path: Path) -> bool:
    """Whether ``path`` is a directory at the top of a git work tree."""
    return path.is_dir() and (path / ".git").exists()


def commit_of(tree: Path, rev: str) -> str | None:
    """The full hash of the commit ``rev`` names in ``tree``, or None when it names none."""
    if rev.startswith("-"):
        return None  # not an option of rev-parse
    return git(tree, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", check=False) or None


@dataclass(frozen=True)
class GitBisect:
    """A git bisect: the tree, its two ends (full hashes) and the commits in between.

    Attributes:
        kernel: the command's kernel inputs (``source`` is the user's tree).
        good, bad: the ends' commits.
        candidates: ``good..bad`` oldest first (``git rev-list --reverse --topo-order``),
            each a commit hash and its subject: position k is the k-th of them.
    """

    kernel: plan.KernelInputs
    good: str
    bad: str
    candidates: tuple[Candidate, ...]

    def position(self, commit: str) -> int | None:
        """Where ``commit`` is among the candidates (1..n), 0 for the good end, None elsewhere."""
        if commit == self.good:
            return 0
        return next((i for i, c in enumerate(self.candidates, 1) if c.name == commit), None)


def plan_git(kernel: plan.KernelInputs, good: str, bad: str | None) -> GitBisect:
    """The commits between ``--good`` and ``--bad`` of the tree ``kernel.source`` (nothing is built).

    Raises:
        InputError: a revision that names no commit, a good end that is not an ancestor
            of the bad end, or no commit between them.
    """
    tree = kernel.source
    ends = []
    for option, rev in (("--good", good), ("--bad", bad or "HEAD")):
        commit = commit_of(tree, rev)
        if commit is None:
            raise InputError(f"{option} {rev}: not a commit of {tree}")
        ends.append(commit)
    ancestor = subprocess.run(["git", "-C", str(tree), "merge-base", "--is-ancestor", *ends],
                              capture_output=True, check=False).returncode == 0
    if ends[0] == ends[1] or not ancestor:
        raise InputError(f"--good {good} is not an ancestor of --bad {bad or 'HEAD'} in {tree}: "
                         "no commit between them to bisect")
    listing = git(tree, "rev-list", "--reverse", "--topo-order", "--format=%H %s", "--no-commit-header",
                  f"{ends[0]}..{ends[1]}")
    candidates = tuple(Candidate(*(line.split(" ", 1) + [""])[:2]) for line in listing.splitlines() if line)
    return GitBisect(kernel, ends[0], ends[1], candidates)


def subject_of(tree: Path, commit: str) -> str:
    """The subject line of ``commit``."""
    return git(tree, "log", "-1", "--format=%s", commit)


def _state(setup: Setup, gb: GitBisect, testcases: Sequence[str]) -> dict[str, object]:
    """What the step process needs, as JSON data (paths absolute)."""
    k = gb.kernel
    return {"matrix": str(setup.matrix.path.resolve()), "testcases": list(testcases),
            "series": str(k.series.resolve()), "patches": [str(p.resolve()) for p in k.patches],
            "build_jobs": k.build_jobs, "jobs": setup.jobs, "repeats": setup.repeats,
            "bisect_dir": str(setup.bisect_dir.resolve()), "good": gb.good, "bad": gb.bad,
            "candidates": [[c.name, c.subject] for c in gb.candidates]}


def outcome_from_refs(worktree: Path, gb: GitBisect) -> Outcome | None:
    """Where git's bisect ended, in positions; None when it did not finish (commits left to test).

    Decided: ``refs/bisect/bad`` is the only commit left (``rev-list bad --not
    good...``).  Undecided: every other commit left was skipped.
    """
    listing = git(worktree, "for-each-ref", "--format=%(refname) %(objectname)", "refs/bisect/")
    refs = dict(line.split(" ", 1) for line in listing.splitlines())
    bad = refs.get("refs/bisect/bad")
    if bad is None:
        return None
    goods = [sha for ref, sha in refs.items() if ref.startswith("refs/bisect/good-")]
    left = git(worktree, "rev-list", bad, "--not", *goods).split()
    skipped = {sha for ref, sha in refs.items() if ref.startswith("refs/bisect/skip-")}
    if any(sha != bad and sha not in skipped for sha in left):
        return None
    positions = sorted(p for p in (gb.position(sha) for sha in left) if p is not None)
    if not positions:
        return None
    return Outcome(positions[0] - 1, positions[-1], tuple(positions[:-1]))


def _run_git_bisect(worktree: Path, state: Path) -> int:
    """``git bisect run`` of the step in ``worktree``, in a session of its own (so that an
    interruption stops git, the step and its guests together); its exit status."""
    argv = ["git", "-C", str(worktree), "bisect", "run", sys.executable, "-m", "harness.bisectgit", "step",
            str(state)]
    proc = subprocess.Popen(argv, start_new_session=True, text=True)
    try:
        return proc.wait()
    except BaseException:
        stop_group(proc)
        raise


def commit_spec(gb: GitBisect, worktree: Path, commit: str, role: str = "") -> StepSpec:
    """The step of ``commit``, built on ``worktree`` (at the good end; see :mod:`harness.bisectcommit`).

    Raises:
        InputError: git failed, or the series does not parse for the commit's version.
        OSError: the cache cannot be written.
    """
    kernel = plan.KernelInputs(worktree, gb.kernel.series, gb.kernel.patches, gb.kernel.build_jobs)
    inputs, left_out = commit_inputs(kernel, gb.good, commit)
    note = f"left out of its diff (binary, or not UTF-8 text): {', '.join(left_out)}" if left_out else ""
    return StepSpec(gb.position(commit), commit, subject_of(worktree, commit), inputs, role, note)


def _ends(gb: GitBisect, runner: StepRunner, worktree: Path) -> None:
    """Step the good end, then the bad end.

    Raises:
        InputError: see :func:`harness.bisectstep.check_good_end` and ``check_bad_end``.
    """
    n = len(gb.candidates)
    good = runner.run(commit_spec(gb, worktree, gb.good, "good end"), 1 + steps_left(0, n))
    check_good_end(good, runner, "--good")
    check_bad_end(runner.run(commit_spec(gb, worktree, gb.bad, "bad end"), steps_left(0, n)), "--bad")


def _finish(worktree: Path, gb: GitBisect, setup: Setup, status: int) -> Outcome:
    """The outcome after ``git bisect run`` exited with ``status``; ``git bisect log`` kept.

    Raises:
        HarnessError: a step's harness error (its message), or git stopped early.
    """
    error = setup.bisect_dir / ERROR
    if error.is_file():
        raise EnvironmentProblem(error.read_text(encoding="utf-8").strip())
    (setup.bisect_dir / LOG).write_text(git(worktree, "bisect", "log", check=False) + "\n")
    outcome = outcome_from_refs(worktree, gb)
    if outcome is None:
        raise EnvironmentProblem(f"git bisect run stopped before the end (exit status {status}); "
                                 f"see {setup.bisect_dir / LOG}")
    return outcome


def bisect_git(gb: GitBisect, setup: Setup, testcases: Sequence[str], console: Console) -> Outcome:
    """Check both ends, then let ``git bisect run`` search with the step as its predicate.

    Raises:
        InputError: an end that does not behave (see :func:`_ends`).
        HarnessError: a step's harness error, or git stopped early.
        KeyboardInterrupt: interrupted (git, the step and its guests are stopped).
    """
    worktree = cache_root() / "bisect" / "worktrees" / setup.bisect_dir.name.strip(".")
    worktree.parent.mkdir(parents=True, exist_ok=True)
    console.print(f"checking {gb.good[:12]} out into a scratch work tree {worktree}", markup=False)
    # no hook of the user's repository runs (post-checkout would, for a new work tree)
    git(gb.kernel.source, "-c", "core.hooksPath=/dev/null", "worktree", "add", "--detach", "--quiet",
        str(worktree), gb.good)
    try:
        with BisectProgress(console) as progress:
            _ends(gb, StepRunner(setup, progress), worktree)
        state = setup.bisect_dir / STATE
        state.write_text(json.dumps(_state(setup, gb, testcases), indent=1) + "\n")
        git(worktree, "bisect", "start", "--no-checkout", gb.bad, gb.good)
        status = 0
        if outcome_from_refs(worktree, gb) is None:  # else git decided at once: one commit between the ends
            status = _run_git_bisect(worktree, state)
            console.print()  # git's last line ("bisect found first bad commit") ends without a newline
        return _finish(worktree, gb, setup, status)
    finally:
        git(worktree, "bisect", "reset", check=False)
        git(gb.kernel.source, "worktree", "remove", "--force", str(worktree), check=False)
        shutil.rmtree(worktree, ignore_errors=True)
        git(gb.kernel.source, "worktree", "prune", check=False)


# -- the step process: python -m harness.bisectgit step STATE --------------------------------------


def _strings(data: dict[str, object], key: str) -> list[str]:
    """``data[key]``, a list, as strings.

    Raises:
        KeyError, TypeError: no such key, or not a list.
    """
    value = data[key]
    if not isinstance(value, list):
        raise TypeError(f"{key} must be a list")
    return [str(v) for v in value]


def _step_setup(data: dict[str, object]) -> tuple[Setup, GitBisect]:
    """The setup and the bisect (its kernel's source: this directory), from the state file's data.

    Raises:
        InputError: the matrix or a board cannot be read.
        KeyError, TypeError, ValueError: a bad state file.
    """
    mat = load_matrix(Path(str(data["matrix"])))
    predicate = make_predicate(_strings(data, "testcases"), mat)
    boards = {c.board: load_board(c.board) for c in predicate.cells}
    setup = Setup(predicate, mat, boards, Path(str(data["bisect_dir"])), int(str(data["jobs"])),
                  int(str(data["repeats"])))
    patches = tuple(Path(p) for p in _strings(data, "patches"))
    kernel = plan.KernelInputs(Path.cwd(), Path(str(data["series"])), patches, int(str(data["build_jobs"])))
    raw = data["candidates"]
    if not isinstance(raw, list):
        raise TypeError("candidates must be a list")
    candidates = tuple(Candidate(str(pair[0]), str(pair[1])) for pair in raw)
    return setup, GitBisect(kernel, str(data["good"]), str(data["bad"]), candidates)


def _git_steps_left() -> int:
    """git's estimate of the steps after this one (``git rev-list --bisect-vars``), 0 if unknown."""
    goods = git(Path.cwd(), "for-each-ref", "--format=%(refname)", "refs/bisect/good-*", check=False).split()
    out = git(Path.cwd(), "rev-list", "--bisect-vars", "refs/bisect/bad", "--not", *goods, check=False)
    steps = [line.split("=", 1)[1] for line in out.splitlines() if line.startswith("bisect_steps=")]
    return int(steps[0]) if steps and steps[0].isdigit() else 0


def run_step(state: Path, console: Console) -> StepRecord:
    """Build, boot and judge the commit checked out in the current directory; its record.

    Raises:
        HarnessError: the state file, the matrix, the host or the cache.
    """
    data = json.loads(state.read_text(encoding="utf-8"))
    setup, gb = _step_setup(data)
    commit, here = git(Path.cwd(), "rev-parse", "BISECT_HEAD"), Path.cwd()
    with BisectProgress(console, [r.seconds for r in load_records(setup.bisect_dir)]) as progress:
        runner, left = StepRunner(setup, progress), _git_steps_left()
        try:
            spec = commit_spec(gb, here, commit)
        except InputError as exc:  # e.g. the series has no patch for this commit's kernel version
            return runner.skip(StepSpec(gb.position(commit), commit, subject_of(here, commit), gb.kernel),
                               str(exc), left)
        return runner.run(spec, left)


def _sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """``python -m harness.bisectgit step STATE``: git bisect run's predicate.

    Exit status: 0 good, 1 bad, 125 skip (skipped or noisy), 255 a harness error (its
    message also goes to ``<bisect dir>/git-step-error.txt``), 130 interrupted.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] != "step":
        print("usage: python -m harness.bisectgit step STATE.json", file=sys.stderr)
        return ABORT
    signal.signal(signal.SIGTERM, _sigterm)
    state = Path(args[1])
    try:
        record = run_step(state, Console(highlight=False, soft_wrap=True))
    except (HarnessError, KeyError, TypeError, ValueError, OSError) as exc:
        message = str(exc) if isinstance(exc, HarnessError) else f"bisect step: bad state {state}: {exc!r}"
        print(f"cma-harness: error: {message}", file=sys.stderr)
        (state.parent / ERROR).write_text(message + "\n", encoding="utf-8")
        return ABORT
    except KeyboardInterrupt:
        return 130
    return {"good": 0, "bad": 1}.get(record.verdict.value, 125)


if __name__ == "__main__":
    sys.exit(main())

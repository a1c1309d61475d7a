"""``cma-harness bisect`` without QEMU or a build.

The predicate (terms, globs, cells, verdicts of a run), the search (first bad, skips,
noisy steps, one-patch ranges), the series form's ends and prefix series, the git
form's commits and refs on a small real git repository, the step runner with fakes
in place of the build (:func:`harness.plan.plan_run`) and the cells' run
(:func:`harness.run.execute`: a fake that writes a real junit.xml), the output files,
and the command line's bad input.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from junitparser import Error, Failure, JUnitXml, Skipped, TestCase, TestSuite
from rich.console import Console

from harness import bisectgit, cli, plan, run
from harness.bisect import (
    Candidate,
    Outcome,
    Predicate,
    Term,
    Verdict,
    combine,
    judge_run,
    make_predicate,
    matches,
    next_position,
    parse_term,
    search,
    steps_left,
)
from harness.bisectcommit import commit_diff, commit_inputs
from harness.bisectreport import Summary, write_outputs
from harness.bisectseries import SeriesBisect, bisect_series, plan_series, prefix_series
from harness.bisectstep import BisectProgress, Setup, StepRunner, StepSpec, load_records
from harness.boards import load_board
from harness.compare import CaseResult, Run
from harness.errors import InputError, PatchError
from harness.matrix import load_matrix, parse_matrix
from harness.outcome import Status
from harness.progress import Reporter
from harness.series import parse_series
from tests.conftest import FIXTURES, REPO, kernel_tree
from tests.junit_schema import assert_valid_junit

SERIES = FIXTURES / "bisect" / "series"
MATRIX = FIXTURES / "bisect" / "matrix.toml"
CELL = "vexpress-a9:cma=32M"
PREDICATE = f"{CELL}::cma-debugfs*"
DEBUGFS = "cma-debugfs[reserved]"
BAD = "0007-mm-cma-clear-every-bitmap-bit-a-released-range-spans.patch"
SUBJECT = "mm: cma: clear every bitmap bit a released range spans"
GIT_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_AUTHOR_NAME": "A",
           "GIT_AUTHOR_EMAIL": "a@example.org", "GIT_COMMITTER_NAME": "A",
           "GIT_COMMITTER_EMAIL": "a@example.org"}


def _matrix(text: str) -> Any:
    return parse_matrix(tomllib.loads(text), Path("m.toml"), ("vexpress-a9", "virt"))


MATRIX_TEXT = """
name = "m"
boards = ["vexpress-a9", "virt"]
cmdlines = ["cma=32M", "cma=64M"]
[[cells]]
cmdline = "cma=64M"
boards = ["virt"]
xfail = "known"
[[cells]]
cmdline = "cma=lots"
boards = ["vexpress-a9"]
skip = "never"
"""


# -- the predicate -------------------------------------------------------------------------------


def test_a_term_is_a_cell_and_a_testcase_split_at_the_last_separator() -> None:
    assert parse_term("vexpress-a9:cma=64M::cma-test/alloc-free/*") == Term("vexpress-a9:cma=64M",
                                                                            "cma-test/alloc-free/*")
    assert parse_term(" *:cma=1::2:: boot ") == Term("*:cma=1::2", "boot")
    assert str(parse_term("a:b::c")) == "a:b::c"


@pytest.mark.parametrize("text", ["boot", "::boot", "vexpress-a9:cma=64M::", "", " :: "])
def test_a_malformed_term_is_one_input_error(text: str) -> None:
    with pytest.raises(InputError, match=r"--testcase .*: expected CELL::TESTCASE"):
        parse_term(text)


def test_a_pattern_matches_its_own_text_and_as_a_glob() -> None:
    assert matches("cma-debugfs[reserved]", "cma-debugfs[reserved]")  # [...] is a glob class too
    assert not matches("cma-debugfs[reserved]", "cma-debugfs[region-mfc-left]")
    assert matches("cma-test/*", "cma-test/alloc-free/area-restored")
    assert matches("*:cma=64M", "virt:cma=64M") and not matches("*:cma=64M", "virt:cma=64Mb")


def test_the_predicate_takes_the_cells_its_terms_match_with_their_xfail_cleared() -> None:
    mat = _matrix(MATRIX_TEXT)
    pred = make_predicate(["*:cma=64M::boot", "vexpress-a9:cma=32M::cma-debugfs*"], mat)
    assert [c.name for c in pred.cells] == ["vexpress-a9:cma=32M", "vexpress-a9:cma=64M", "virt:cma=64M"]
    assert all(c.xfail == "" for c in pred.cells)
    assert pred.terms_of(pred.cells[0]) == (Term("vexpress-a9:cma=32M", "cma-debugfs*"),)


def test_a_term_matching_no_cell_or_only_skipped_cells_is_refused() -> None:
    mat = _matrix(MATRIX_TEXT)
    with pytest.raises(InputError, match=r"--testcase 'smdkc210:\*::boot': matches no cell of matrix m.toml "
                                         r"\(its cells: vexpress-a9:cma=32M, "):
        make_predicate(["smdkc210:*::boot"], mat)
    with pytest.raises(InputError, match=r"marks 'vexpress-a9:cma=lots' skip \(never\): it never runs"):
        make_predicate(["*:cma=lots::boot"], mat)
    with pytest.raises(InputError, match="give the predicate with --testcase"):
        make_predicate([], mat)


def _run(cases: dict[tuple[str, str], tuple[Status, str]], infra: str = "") -> Run:
    return Run(Path("junit.xml"), {k: CaseResult(k[0], k[1], s, m, infrastructure=k[1] == infra)
                                   for k, (s, m) in cases.items()}, {})


def _pred(*terms: str) -> Predicate:
    return make_predicate(list(terms), _matrix(MATRIX_TEXT))


OK = (Status.PASS, "")


def test_a_run_is_good_when_every_named_testcase_passes() -> None:
    j = judge_run(_pred(PREDICATE), _run({(CELL, "boot"): OK, (CELL, "cma-debugfs[reserved]"): OK}))
    assert (j.verdict, [c.outcome for c in j.cases]) == (Verdict.GOOD, ["passed"])


@pytest.mark.parametrize("status", [Status.FAIL, Status.ERROR])
def test_a_failing_or_erring_testcase_makes_the_run_bad(status: Status) -> None:
    j = judge_run(_pred(PREDICATE), _run({(CELL, "boot"): OK, (CELL, DEBUGFS): (status, "saw 65")}))
    assert j.verdict is Verdict.BAD and "cma-debugfs[reserved]" in j.reason and "saw 65" in j.reason


def test_a_testcase_absent_from_a_booted_cell_is_bad() -> None:
    j = judge_run(_pred(PREDICATE), _run({(CELL, "boot"): OK}))
    assert j.verdict is Verdict.BAD and j.cases[0].outcome == "absent"


def test_a_cell_that_did_not_boot_is_a_skip_unless_the_predicate_names_boot() -> None:
    cases = {(CELL, "boot"): (Status.ERROR, "no shell")}
    assert judge_run(_pred(PREDICATE), _run(cases)).verdict is Verdict.SKIP
    assert "did not boot" in judge_run(_pred(PREDICATE), _run(cases)).reason
    assert judge_run(_pred(f"{CELL}::boot"), _run(cases)).verdict is Verdict.BAD


def test_an_infrastructure_error_or_a_cell_without_results_is_a_skip() -> None:
    infra = _run({(CELL, "boot"): (Status.ERROR, "QEMU was killed")}, infra="boot")
    assert "infrastructure error" in judge_run(_pred(f"{CELL}::boot"), infra).reason
    assert judge_run(_pred(f"{CELL}::boot"), _run({})).reason == f"{CELL}: the cell produced no testcase"


def test_testcases_that_were_all_skipped_are_a_skip() -> None:
    j = judge_run(_pred(PREDICATE), _run({(CELL, "boot"): OK, (CELL, DEBUGFS): (Status.SKIP, "")}))
    assert j.verdict is Verdict.SKIP and "every testcase was skipped" in j.reason


def test_a_failure_in_one_cell_is_bad_whatever_another_cell_did() -> None:
    cases = {(CELL, "boot"): (Status.FAIL, "panic"), ("vexpress-a9:cma=64M", "boot"): OK,
             ("vexpress-a9:cma=64M", "cma-debugfs[reserved]"): (Status.FAIL, "x")}
    assert judge_run(_pred("vexpress-a9:*::cma-debugfs*"), _run(cases)).verdict is Verdict.BAD


def test_repeats_that_disagree_are_noisy() -> None:
    assert combine([Verdict.BAD, Verdict.BAD]) is Verdict.BAD
    assert combine([Verdict.GOOD, Verdict.BAD]) is Verdict.NOISY
    assert combine([Verdict.GOOD, Verdict.SKIP]) is Verdict.NOISY
    with pytest.raises(ValueError):
        combine([])


# -- the search ----------------------------------------------------------------------------------


@pytest.mark.parametrize("n", range(1, 13))
def test_the_search_finds_every_first_bad_position_in_log2_steps(n: int) -> None:
    for first_bad in range(1, n + 1):
        probed: list[int] = []

        def probe(position: int, left: int, first_bad: int = first_bad,
                  probed: list[int] = probed) -> Verdict:
            probed.append(position)
            assert 0 < position < n and left >= 0
            return Verdict.BAD if position >= first_bad else Verdict.GOOD

        outcome = search(n, probe)
        assert (outcome.first_bad, outcome.suspects) == (first_bad, (first_bad,))
        assert len(probed) <= math.ceil(math.log2(n)) and len(set(probed)) == len(probed)


def test_a_one_patch_range_needs_no_step_between_the_ends() -> None:
    assert search(1, lambda p, left: pytest.fail("no step to take")) == Outcome(0, 1, ())


@pytest.mark.parametrize("untestable", [Verdict.SKIP, Verdict.NOISY])
def test_a_skipped_or_noisy_step_is_never_guessed(untestable: Verdict) -> None:
    verdicts = {2: untestable, 3: Verdict.BAD, 1: Verdict.GOOD}
    probed: list[int] = []

    def probe(position: int, left: int) -> Verdict:
        probed.append(position)
        return verdicts[position]

    outcome = search(5, probe)
    assert probed == [2, 3, 1]  # the middle, then the untested position nearest it
    assert (outcome.first_bad, outcome.suspects, outcome.untestable) == (None, (2, 3), (2,))


def test_when_every_step_is_skipped_every_candidate_is_a_suspect() -> None:
    outcome = search(4, lambda p, left: Verdict.SKIP)
    assert (outcome.first_bad, outcome.suspects, outcome.untestable) == (None, (1, 2, 3, 4), (1, 2, 3))
    with pytest.raises(ValueError):
        search(0, lambda p, left: Verdict.GOOD)


def test_the_next_position_and_the_steps_left() -> None:
    assert next_position(0, 5, ()) == 2 and next_position(0, 5, (2,)) == 3 and next_position(2, 3, ()) is None
    assert [steps_left(0, n) for n in (1, 2, 3, 5, 9)] == [0, 1, 2, 3, 4]
    assert steps_left(0, 5, (1, 2, 3, 4)) == 0


# -- the series form -----------------------------------------------------------------------------


def _inputs(tmp_path: Path, series: Path = SERIES, patches: tuple[Path, ...] = ()) -> plan.KernelInputs:
    tree = tmp_path / "linux"
    return plan.KernelInputs(tree if tree.is_dir() else kernel_tree(tmp_path), series, patches, 1)


def _rep() -> Reporter:
    return Reporter(Console(quiet=True))


def test_the_candidates_are_the_patches_between_the_ends_with_their_subjects(tmp_path: Path) -> None:
    sb = plan_series(_inputs(tmp_path), "0004", None, _rep())
    assert [c.name[:4] for c in sb.candidates] == ["0005", "0006", "0007", "0008", "0009"]
    assert sb.candidates[2] == Candidate(BAD, SUBJECT)
    assert sb.candidates[3].subject == "mm: cma: fix the grammar of cma_declare_contiguous_nid()'s kernel-doc"
    assert sb.label(0) == "6.1/0004-ARM-dts-exynos-smdkv310-turn-the-MFC-regions-into-CM.patch"
    assert (sb.label(3), sb.inputs(5).series) == (BAD, SERIES)
    last = "0009-dma-contiguous-fix-the-grammar-of-dma_contiguous_res"  # a prefix of the file name
    same = plan_series(_inputs(tmp_path), sb.label(0), last, _rep())
    assert same.candidates == sb.candidates


def test_a_prefix_series_has_the_names_and_contents_of_the_series_so_the_same_build_keys(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CMA_HARNESS_CACHE", str(tmp_path / "cache"))
    full = parse_series(SERIES, "6.1")
    for k in (0, 3, 7):
        prefix = parse_series(prefix_series(full, k), "6.1")
        assert [(p.name, p.strip, p.sha256) for p in prefix.patches] == [
            (p.name, p.strip, p.sha256) for p in full.patches[:k]]
    project = parse_series(REPO / "kernel-patches" / "series", "6.1")
    assert parse_series(prefix_series(full, 4), "6.1").digest == project.digest


def test_the_ends_are_named_by_name_file_name_prefix_or_none(tmp_path: Path) -> None:
    assert plan_series(_inputs(tmp_path), "none", "0001", _rep()).candidates[0].name.startswith("0001-")
    for good, bad, error in [("0010", None, r"--good 0010: no patch of the series and --patch files is"),
                             ("000", None, r"--good 000: 9 patches of the series"),
                             ("0007", "0005", r"--bad 0005-.* is not after --good 0007-.*: no patch between"),
                             (None, None, r"where is the good end\? give --good PATCH")]:
        with pytest.raises(InputError, match=error):
            plan_series(_inputs(tmp_path), good, bad, _rep())


def test_with_patch_files_the_good_end_is_the_series_and_they_are_the_candidates(tmp_path: Path) -> None:
    extra = tuple(sorted((FIXTURES / "bisect").glob("000[56]-*.patch")))
    sb = plan_series(_inputs(tmp_path, REPO / "kernel-patches" / "series", extra), None, None, _rep())
    assert [c.name for c in sb.candidates] == [f"extra/{p.name}" for p in extra]
    assert sb.inputs(0).patches == () and sb.inputs(1).patches == extra[:1]
    assert sb.inputs(2).series == REPO / "kernel-patches" / "series"


# -- steps: the real runner, with a fake build and a fake run ------------------------------------


def _case(name: str, outcome: str) -> TestCase:
    case = TestCase(name, classname=CELL)
    if outcome != "pass":
        case.result = [{"fail": Failure, "error": Error, "skip": Skipped}[outcome]("saw 65")]
    return case


def _applied(kernel: plan.KernelInputs) -> int:
    lines = [ln for ln in kernel.series.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    return len(lines) + len(kernel.patches)


Scenario = Callable[[int, int], str]
"""(patches applied, repeat) -> the cma-debugfs testcase's outcome: pass, fail, error, skip or nobuild."""


@pytest.fixture
def fake_steps(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[list[Scenario]]:
    """plan.plan_run and run.execute replaced: the test sets ``scenario[0]``."""
    monkeypatch.setenv("CMA_HARNESS_CACHE", str(tmp_path / "cache"))
    scenario: list[Scenario] = [lambda applied, attempt: "pass"]
    seen: dict[Path, int] = {}

    def plan_run(sel: plan.Selection, rep: Reporter, host_check: Any, build: Any) -> Any:
        if scenario[0](_applied(sel.request.kernel), 0) == "nobuild":
            raise PatchError("patch 0006-foo.patch does not apply: 1 out of 1 hunk FAILED",
                             "--- a/x\n+++ b/x")
        return plan.RunPlan(sel.request, sel.matrix, (), {}, ())

    def execute(planned: plan.RunPlan, executor: Any, out: Any, err: Any) -> int:
        root = planned.request.results
        seen[root] = seen.get(root, 0) + 1
        outcome = scenario[0](_applied(planned.request.kernel), seen[root])
        suite = TestSuite(CELL)
        for case in (_case("boot", "pass"), _case("cma-debugfs[reserved]", outcome)):
            suite.add_testcase(case)
        xml = JUnitXml()
        xml.add_testsuite(suite)
        (root / f"run{seen[root]}").mkdir(parents=True)
        xml.write(str(root / f"run{seen[root]}" / "junit.xml"))
        (root / "latest").unlink(missing_ok=True)
        (root / "latest").symlink_to(f"run{seen[root]}")
        return 0

    monkeypatch.setattr(plan, "plan_run", plan_run)
    monkeypatch.setattr(run, "execute", execute)
    yield scenario


def _setup(tmp_path: Path, repeats: int = 1, testcase: str = PREDICATE) -> Setup:
    mat = load_matrix(MATRIX)
    pred = make_predicate([testcase], mat)
    return Setup(pred, mat, {"vexpress-a9": load_board("vexpress-a9")}, tmp_path / "bisect", 1, repeats)


def _bisect(tmp_path: Path, scenario: Scenario, fake: list[Scenario], repeats: int = 1,
            testcase: str = PREDICATE) -> tuple[SeriesBisect, Setup, Outcome]:
    fake[0] = scenario
    sb = plan_series(_inputs(tmp_path), "0004", None, _rep())
    setup = _setup(tmp_path, repeats, testcase)
    with BisectProgress(Console(quiet=True)) as progress:
        return sb, setup, bisect_series(sb, StepRunner(setup, progress))


def _broken_from(position: int) -> Scenario:
    return lambda applied, attempt: "fail" if applied - 4 >= position else "pass"


def test_a_series_bisect_checks_both_ends_then_finds_the_first_bad_patch(
        tmp_path: Path, fake_steps: list[Scenario]) -> None:
    sb, setup, outcome = _bisect(tmp_path, _broken_from(3), fake_steps)
    assert outcome.first_bad == 3 and sb.candidates[2].name == BAD
    records = load_records(setup.bisect_dir)
    assert [(r.position, r.role, r.verdict) for r in records] == [
        (0, "good end", Verdict.GOOD), (5, "bad end", Verdict.BAD), (2, "", Verdict.GOOD),
        (3, "", Verdict.BAD)]
    assert (records[3].cases[0].key, records[3].cases[0].message) == (f"{CELL}::{DEBUGFS}", "saw 65")
    steps = sorted((setup.bisect_dir / "steps").iterdir())
    assert steps[3].name == "04-" + BAD.removesuffix(".patch")


def test_a_patch_that_does_not_apply_is_a_skip_with_its_reason(tmp_path: Path,
                                                               fake_steps: list[Scenario]) -> None:
    def scenario(applied: int, attempt: int) -> str:
        return "nobuild" if applied == 6 else _broken_from(3)(applied, attempt)
    sb, setup, outcome = _bisect(tmp_path, scenario, fake_steps)
    skipped = [r for r in load_records(setup.bisect_dir) if r.verdict is Verdict.SKIP]
    assert [r.position for r in skipped] == [2]
    assert skipped[0].reason == "patch 0006-foo.patch does not apply: 1 out of 1 hunk FAILED (--- a/x)"
    assert (outcome.first_bad, outcome.suspects) == (None, (2, 3))


def test_a_step_whose_repeats_disagree_is_noisy_and_reported(tmp_path: Path,
                                                             fake_steps: list[Scenario]) -> None:
    def scenario(applied: int, attempt: int) -> str:
        if applied == 6:
            return "fail" if attempt == 2 else "pass"
        return _broken_from(3)(applied, attempt)
    sb, setup, outcome = _bisect(tmp_path, scenario, fake_steps, repeats=3)
    noisy = [r for r in load_records(setup.bisect_dir) if r.position == 2]
    assert [(r.verdict, r.verdicts) for r in noisy] == [(Verdict.NOISY, (Verdict.GOOD, Verdict.BAD))]
    assert "the same kernel gave good, bad on 2 runs" in noisy[0].reason and len(noisy[0].runs) == 2
    assert outcome.first_bad is None and 2 in outcome.untestable
    steady = [r for r in load_records(setup.bisect_dir) if r.position == 5]
    assert steady[0].verdicts == (Verdict.BAD,) * 3


@pytest.mark.parametrize(("scenario", "error"), [
    (lambda applied, attempt: "pass", r"--bad 0009-.*: the predicate passes at the bad end: nothing between"),
    (lambda applied, attempt: "fail", r"--good 6.1/0004-.*: the predicate already fails at the good end: 1 "),
    (lambda applied, attempt: "error" if applied == 4 else "fail", r"already fails at the good end"),
])
def test_ends_that_do_not_pass_then_fail_are_refused(tmp_path: Path, fake_steps: list[Scenario],
                                                     scenario: Scenario, error: str) -> None:
    with pytest.raises(InputError, match=error):
        _bisect(tmp_path, scenario, fake_steps)


def test_a_testcase_glob_that_matches_nothing_at_the_good_end_is_named(
        tmp_path: Path, fake_steps: list[Scenario]) -> None:
    with pytest.raises(InputError, match=rf"--testcase '{CELL}::cma-debugfz\*': matches no testcase at the "
                                         r"good end \(its cell has: boot, cma-debugfs\[reserved\]\)"):
        _bisect(tmp_path, _broken_from(3), fake_steps, testcase=f"{CELL}::cma-debugfz*")


# -- the outputs ---------------------------------------------------------------------------------


def _summary(sb: SeriesBisect, setup: Setup, outcome: Outcome) -> Summary:
    return Summary("series", setup.predicate, sb.candidates, tuple(load_records(setup.bisect_dir)), outcome,
                   (("series", str(SERIES)),), 12.5)


def test_the_reports_name_the_first_bad_patch_and_the_testcases_before_and_at_it(
        tmp_path: Path, fake_steps: list[Scenario]) -> None:
    sb, setup, outcome = _bisect(tmp_path, _broken_from(3), fake_steps)
    summary = _summary(sb, setup, outcome)
    comparison = write_outputs(summary, setup.bisect_dir)
    assert comparison is not None and [c.name for c in comparison.regressions] == ["cma-debugfs[reserved]"]
    md = (setup.bisect_dir / "bisect.md").read_text()
    assert f"**First bad patch: `{BAD}`** — {SUBJECT} (candidate 3 of 5)" in md
    assert f"| `{CELL}::cma-debugfs[reserved]` | passed | failure: saw 65 |" in md
    assert "| 4 | 3 | `" + BAD + "` | bad |" in md and "regression: 1" in md
    totals = assert_valid_junit(setup.bisect_dir / "bisect.xml")
    assert (totals.tests, totals.failures, totals.errors, totals.skipped) == (4, 2, 0, 0)
    data = json.loads((setup.bisect_dir / "bisect.json").read_text())
    assert data["first_bad"] == {"name": BAD, "subject": SUBJECT, "position": 3} and len(data["steps"]) == 4
    assert (setup.bisect_dir / "compare" / "compare.html").is_file()


def test_an_undecided_bisect_lists_its_suspects_and_compares_nothing(
        tmp_path: Path, fake_steps: list[Scenario]) -> None:
    def scenario(applied: int, attempt: int) -> str:
        return "nobuild" if applied == 6 else _broken_from(3)(applied, attempt)
    sb, setup, outcome = _bisect(tmp_path, scenario, fake_steps)
    assert write_outputs(_summary(sb, setup, outcome), setup.bisect_dir) is None
    md = (setup.bisect_dir / "bisect.md").read_text()
    assert "**Undecided:** skipped or noisy steps leave 2 patches that may be the first bad one: " in md
    assert not (setup.bisect_dir / "compare").exists()
    totals = assert_valid_junit(setup.bisect_dir / "bisect.xml")
    assert (totals.tests, totals.skipped) == (5, 1)


# -- the git form on a small real repository -----------------------------------------------------


def _git(tree: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(tree), *args], env={**os.environ, **GIT_ENV}, check=True,
                          capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, list[str]]:
    """A kernel-like git tree with six commits; the hashes, oldest first."""
    tree = kernel_tree(tmp_path)
    _git(tree, "init", "-q")
    commits = []
    for i in range(6):
        (tree / "mm.c").write_text(f"int v = {i};\n")
        _git(tree, "add", "-A")
        _git(tree, "commit", "-q", "-m", f"change {i}")
        commits.append(_git(tree, "rev-parse", "HEAD"))
    return tree, commits


def test_the_git_candidates_are_the_commits_between_the_ends(repo: tuple[Path, list[str]]) -> None:
    tree, commits = repo
    gb = bisectgit.plan_git(plan.KernelInputs(tree, SERIES, (), 1), commits[1], None)
    assert [c.name for c in gb.candidates] == commits[2:] and gb.candidates[0].subject == "change 2"
    assert (gb.good, gb.bad) == (commits[1], commits[5])
    assert (gb.position(commits[4]), gb.position(commits[1]), gb.position("f" * 40)) == (3, 0, None)
    with pytest.raises(InputError, match=r"--good HEAD is not an ancestor of --bad HEAD~2 .*: no commit"):
        bisectgit.plan_git(plan.KernelInputs(tree, SERIES, (), 1), "HEAD", "HEAD~2")
    with pytest.raises(InputError, match=r"--bad nope: not a commit of "):
        bisectgit.plan_git(plan.KernelInputs(tree, SERIES, (), 1), "HEAD~1", "nope")


def test_git_bisect_refs_give_the_first_bad_commit_or_the_skipped_suspects(
        repo: tuple[Path, list[str]]) -> None:
    tree, commits = repo
    gb = bisectgit.plan_git(plan.KernelInputs(tree, SERIES, (), 1), commits[0], None)
    _git(tree, "bisect", "start", "--no-checkout", commits[5], commits[0])
    assert bisectgit.outcome_from_refs(tree, gb) is None  # nothing decided yet
    for sha, word in ((commits[2], "good"), (commits[3], "bad")):
        _git(tree, "bisect", word, sha)
    assert bisectgit.outcome_from_refs(tree, gb) == Outcome(2, 3, ())
    _git(tree, "bisect", "reset")
    _git(tree, "bisect", "start", "--no-checkout", commits[5], commits[0])
    for sha, word in ((commits[1], "good"), (commits[2], "skip"), (commits[3], "bad")):
        # the last one says "We cannot bisect more!" (exit status 2): only a skipped commit is left
        subprocess.run(["git", "-C", str(tree), "bisect", word, sha], capture_output=True, check=False)
    outcome = bisectgit.outcome_from_refs(tree, gb)
    assert outcome is not None and (outcome.first_bad, outcome.suspects) == (None, (2, 3))


def test_a_commit_is_its_diff_then_the_series_and_binary_or_latin1_files_are_left_out(
        repo: tuple[Path, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CMA_HARNESS_CACHE", str(tmp_path / "cache"))
    tree, commits = repo
    (tree / "logo.bin").write_bytes(b"\x00\x01\x02")
    (tree / "latin1.c").write_bytes("/* caf\xe9 */\n".encode("latin-1"))
    (tree / "mm.c").write_text("int v = 42;\n")
    _git(tree, "add", "-A")
    _git(tree, "commit", "-q", "-m", "mixed")
    head = _git(tree, "rev-parse", "HEAD")
    diff, left_out = commit_diff(tree, commits[5], head)
    assert sorted(left_out) == ["latin1.c", "logo.bin"]
    assert b"+int v = 42;" in diff and b"logo.bin" in diff.split(b"\ndiff --git", 1)[0]
    kernel = plan.KernelInputs(tree, SERIES, (), 1)
    assert commit_inputs(kernel, head, head) == (kernel, ())
    inputs, _ = commit_inputs(kernel, commits[5], head)
    patches = parse_series(inputs.series, "6.1").patches
    assert patches[0].name == f"commit-{head[:12]}.patch" and patches[0].path.read_bytes() == diff
    assert [p.name for p in patches[1:]] == [p.name for p in parse_series(SERIES, "6.1").patches]
    fresh = tmp_path / "fresh"  # GNU patch applies it to the good end's files
    _git(tree, "worktree", "add", "-q", "--detach", str(fresh), commits[5])
    subprocess.run(["patch", "-p1", "--batch", "--fuzz=0", "-d", str(fresh), "-i", str(patches[0].path)],
                   check=True, capture_output=True)
    assert (fresh / "mm.c").read_text() == "int v = 42;\n"


def test_the_git_step_exits_255_on_bad_usage(tmp_path: Path) -> None:
    assert bisectgit.main(["step"]) == 255
    (tmp_path / "state.json").write_text("{}")
    assert bisectgit.main(["step", str(tmp_path / "state.json")]) == 255
    assert "bad state" in (tmp_path / "git-step-error.txt").read_text()


# -- the command line ----------------------------------------------------------------------------


def test_bad_input_is_one_error_line_and_leaves_the_results_root_alone(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    for argv, error in [
        (["-t", "smdkc210:*::boot"], "--testcase 'smdkc210:*::boot': matches no cell of matrix"),
        (["-t", "boot"], "--testcase 'boot': expected CELL::TESTCASE"),
        (["-t", PREDICATE, "--repeats", "0"], "--repeats, -j/--jobs and --build-jobs must be at least 1"),
        (["-t", PREDICATE, "--good", "0042"], "--good 0042: no patch of the series and --patch files"),
    ]:
        status = cli.main(["bisect", "-m", str(MATRIX), "--series", str(SERIES), "--kernel-src",
                           str(_inputs(tmp_path).source), "-o", str(out), *argv])
        err = capsys.readouterr().err.strip().splitlines()
        assert status == 2 and len(err) == 1 and err[0].startswith(f"cma-harness: error: {error}"), err
        assert not out.exists()


def test_a_good_end_that_fails_exits_2_and_leaves_nothing(
        tmp_path: Path, fake_steps: list[Scenario], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("harness.bisectcmd.preflight", lambda boards: None)
    fake_steps[0] = lambda applied, attempt: "fail"
    out = tmp_path / "out"
    argv = ["bisect", "-m", str(MATRIX), "--series", str(SERIES), "--kernel-src", str(kernel_tree(tmp_path)),
            "--good", "0004", "-t", PREDICATE, "-o", str(out)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the predicate already fails at the good end" in err[0]
    assert list(out.iterdir()) == []  # the unpublished directory is gone
    fake_steps[0] = _broken_from(3)
    assert cli.main(argv) == 0
    said = capsys.readouterr().out
    assert f"first bad patch: {BAD} ({SUBJECT})" in said and "4 step(s) in" in said
    assert (out / "latest" / "bisect.md").is_file()
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no .partial left


def test_a_bad_repeats_value_is_refused_by_the_setup(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="at least 1"):
        _setup(tmp_path, repeats=0)



def test_a_step_whose_kernel_cannot_be_described_is_recorded_as_a_skip(tmp_path: Path) -> None:
    setup = _setup(tmp_path)
    spec = StepSpec(3, "c0ffee", "a commit", _inputs(tmp_path))
    with BisectProgress(Console(quiet=True)) as progress:
        record = StepRunner(setup, progress).skip(spec, "patch 0002-x.patch not found", 1)
    assert (record.verdict, record.reason, record.number, record.runs) == (
        Verdict.SKIP, "patch 0002-x.patch not found", 1, ())
    assert load_records(setup.bisect_dir) == [record]


def test_a_git_bisect_of_one_commit_steps_the_ends_and_needs_no_git_bisect_run(
        repo: tuple[Path, list[str]], tmp_path: Path, fake_steps: list[Scenario]) -> None:
    tree, commits = repo
    fake_steps[0] = lambda applied, attempt: "fail" if applied > 4 else "pass"  # the commit's diff is a 5th
    kernel = plan.KernelInputs(tree, REPO / "kernel-patches" / "series", (), 1)
    gb = bisectgit.plan_git(kernel, commits[4], None)
    setup = _setup(tmp_path)
    assert bisectgit.bisect_git(gb, setup, [PREDICATE], Console(quiet=True)) == Outcome(0, 1, ())
    records = load_records(setup.bisect_dir)
    assert [(r.role, r.label, r.verdict) for r in records] == [
        ("good end", commits[4], Verdict.GOOD), ("bad end", commits[5], Verdict.BAD)]
    assert f"# first bad commit: [{commits[5]}] change 5" in (setup.bisect_dir / "git-bisect.log").read_text()
    assert len(_git(tree, "worktree", "list").splitlines()) == 1  # the scratch work tree is gone
    assert _git(tree, "for-each-ref", "refs/bisect/") == ""  # and its bisect state

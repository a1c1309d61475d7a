"""Bisecting a regression: the predicate, a step's verdict, and the search for the first bad state.

A bisect looks for the first *candidate* (a patch of a series, or a commit of a
git tree) after which a *predicate* fails.  The candidates are numbered 1..n; a
*position* k (0..n) is the kernel with the first k candidates applied, so
position 0 is the good end and position n the bad end.

The predicate is one or more testcases given as ``CELL::TESTCASE`` (``--testcase``),
each a glob: ``CELL`` over the matrix's cell names (``board:cmdline``, ``(default)``
for an empty cmdline), ``TESTCASE`` over the cell's testcase names.  A pattern also
matches a name equal to it, so ``cma-debugfs[reserved]`` names that testcase even
though ``[...]`` is a glob character class.  A step is judged from a finished run of
the predicate's cells (:func:`judge_run`):

* ``bad``: a testcase the predicate names failed (failure or error), or is absent
  from a cell that booted;
* ``skip``: the verdict cannot be had for reasons the predicate does not name: a
  cell that did not boot (unless the predicate names ``boot``), an infrastructure
  error, a cell without results, testcases that were all skipped; and (decided by
  the step runner) a patch that does not apply or a kernel that does not build;
* ``good``: every testcase the predicate names passed;
* ``noisy``: repeats of the same step gave different verdicts (:func:`combine`):
  reported, never taken as good or bad.

:func:`search` runs the binary search itself on any step function (the series
form; the git form lets ``git bisect run`` search, with the same step runner as
its predicate script).  Nothing here builds or boots: see :mod:`harness.bisectstep`.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from harness.compare import CaseResult, Run
from harness.errors import InputError
from harness.matrix import Cell, Matrix
from harness.outcome import Status

SEPARATOR = "::"
BOOT = "boot"


class Verdict(StrEnum):
    """A step's verdict on the predicate (see the module docstring)."""

    GOOD = "good"
    BAD = "bad"
    SKIP = "skip"
    NOISY = "noisy"


def matches(pattern: str, name: str) -> bool:
    """Whether glob ``pattern`` matches ``name`` (case-sensitive), or equals it literally."""
    return name == pattern or fnmatch.fnmatchcase(name, pattern)


@dataclass(frozen=True)
class Term:
    """One ``CELL::TESTCASE`` of the predicate: two globs, as the user wrote them."""

    cell: str
    testcase: str

    def __str__(self) -> str:
        return f"{self.cell}{SEPARATOR}{self.testcase}"


def parse_term(text: str) -> Term:
    """A predicate term from ``--testcase`` text ``CELL::TESTCASE`` (split at the last ``::``).

    Raises:
        InputError: ``--testcase <text>: expected CELL::TESTCASE (...)``: no ``::``, or an
            empty side.
    """
    cell, sep, testcase = text.rpartition(SEPARATOR)
    if not sep or not cell.strip() or not testcase.strip():
        raise InputError(f"--testcase {text!r}: expected CELL::TESTCASE, e.g. "
                         "'vexpress-a9:cma=64M::cma-test/alloc-free/*' (each side a glob)")
    return Term(cell.strip(), testcase.strip())


@dataclass(frozen=True)
class Predicate:
    """The testcases that pass at the good end and fail at the bad end.

    Attributes:
        terms: the ``CELL::TESTCASE`` terms, in the order given.
        cells: the matrix cells the terms match (matrix order), each with its ``xfail``
            mark removed, so that a failure stays a failure.
    """

    terms: tuple[Term, ...]
    cells: tuple[Cell, ...]

    def terms_of(self, cell: Cell) -> tuple[Term, ...]:
        """The terms whose cell glob matches ``cell``."""
        return tuple(t for t in self.terms if matches(t.cell, cell.name))

    def describe(self) -> str:
        """The terms, comma-separated, as given."""
        return ", ".join(map(str, self.terms))


def _refuse_cells(term: Term, cells: Sequence[Cell], matrix: Matrix) -> None:
    """Refuse a term matching no cell, or only cells the matrix does not run.

    Raises:
        InputError: naming the term, the matrix and (some of) its cells.
    """
    if not cells:
        names = [c.name for c in matrix.cells]
        shown = ", ".join(names[:8]) + (f" ... ({len(names)} cells)" if len(names) > 8 else "")
        raise InputError(f"--testcase {str(term)!r}: matches no cell of matrix {matrix.path} "
                         f"(its cells: {shown})")
    if all(c.skip for c in cells):
        raise InputError(f"--testcase {str(term)!r}: the matrix {matrix.path} marks {cells[0].name!r} "
                         f"skip ({cells[0].skip}): it never runs")


def make_predicate(texts: Sequence[str], matrix: Matrix) -> Predicate:
    """Parse the ``--testcase`` texts and find the cells of ``matrix`` they need.

    Raises:
        InputError: no term, a malformed term (:func:`parse_term`), a term whose cell
            glob matches no cell of ``matrix`` or only cells it skips.
    """
    if not texts:
        raise InputError("bisect: give the predicate with --testcase CELL::TESTCASE (repeatable)")
    terms = tuple(parse_term(t) for t in texts)
    chosen: set[str] = set()
    for term in terms:
        cells = [c for c in matrix.cells if matches(term.cell, c.name)]
        _refuse_cells(term, cells, matrix)
        chosen.update(c.name for c in cells if not c.skip)
    return Predicate(terms, tuple(replace(c, xfail="") for c in matrix.cells if c.name in chosen))


@dataclass(frozen=True)
class CaseState:
    """One testcase the predicate names, at one step.

    Attributes:
        cell, testcase: the testsuite (cell) and testcase names.
        outcome: its JUnit word (``passed``, ``failure``, ``error``, ``skipped``), or
            ``absent`` when the cell booted without it.
        message: its message (a failure's says what was expected and seen).
    """

    cell: str
    testcase: str
    outcome: str
    message: str = ""

    @property
    def key(self) -> str:
        """``cell::testcase``."""
        return f"{self.cell}{SEPARATOR}{self.testcase}"

    @property
    def bad(self) -> bool:
        """Failed, erred or absent."""
        return self.outcome in (Status.FAIL.junit_word, Status.ERROR.junit_word, ABSENT)


ABSENT = "absent"


@dataclass(frozen=True)
class Judgement:
    """The predicate's verdict on one run: ``verdict``, why (``reason``), and its testcases."""

    verdict: Verdict
    reason: str
    cases: tuple[CaseState, ...]


def _state(case: CaseResult) -> CaseState:
    return CaseState(case.suite, case.name, case.outcome.junit_word, case.message)


def _cell_problem(cell: Cell, cases: Mapping[str, CaseResult], terms: Sequence[Term]) -> str:
    """Why ``cell``'s run says nothing of the predicate ("" when it does).

    No testcase at all, an infrastructure error, or a boot that failed while no term
    names ``boot``.
    """
    if not cases:
        return f"{cell.name}: the cell produced no testcase"
    infra = next((c for c in cases.values() if c.infrastructure), None)
    if infra is not None:
        return f"{cell.name}: infrastructure error in {infra.name}: {infra.message}"
    boot = cases.get(BOOT)
    if (boot is not None and boot.outcome is not Status.PASS
            and not any(matches(t.testcase, BOOT) for t in terms)):
        return f"{cell.name}: did not boot ({boot.outcome.junit_word}: {boot.message})"
    return ""


def _cell_states(cell: Cell, cases: Mapping[str, CaseResult], terms: Sequence[Term]) -> list[CaseState]:
    """The states of the testcases ``terms`` name in ``cell`` (an ``absent`` one for a term
    that matches none)."""
    states: dict[str, CaseState] = {}
    for term in terms:
        found = [c for name, c in cases.items() if matches(term.testcase, name)]
        for case in found:
            states.setdefault(case.name, _state(case))
        if not found:
            states.setdefault(term.testcase, CaseState(cell.name, term.testcase, ABSENT,
                                                       f"no testcase matches {term.testcase!r}"))
    return list(states.values())


def judge_run(predicate: Predicate, run: Run) -> Judgement:
    """The predicate's verdict on one finished run of its cells (see the module docstring).

    ``bad`` wins over ``skip``: a testcase that failed in one cell is a failure
    whatever another cell did.
    """
    states: list[CaseState] = []
    problems: list[str] = []
    for cell in predicate.cells:
        cases = {name: c for (suite, name), c in run.cases.items() if suite == cell.name}
        terms = predicate.terms_of(cell)
        problem = _cell_problem(cell, cases, terms)
        if problem:
            problems.append(problem)
            continue
        for state in _cell_states(cell, cases, terms):
            states.append(state)
    bad = [s for s in states if s.bad]
    if bad:
        return Judgement(Verdict.BAD, f"{len(bad)} testcase(s) fail: " + "; ".join(
            f"{s.key} ({s.outcome}{': ' + s.message if s.message else ''})" for s in bad[:3]), tuple(states))
    skipped = [s for s in states if s.outcome == Status.SKIP.junit_word]
    if not problems and skipped and len(skipped) == len(states):
        problems.append(f"every testcase was skipped ({skipped[0].key}: {skipped[0].message})")
    if problems:
        return Judgement(Verdict.SKIP, "; ".join(problems), tuple(states))
    return Judgement(Verdict.GOOD, f"{len(states)} testcase(s) pass", tuple(states))


def unmatched_terms(predicate: Predicate, run: Run) -> list[str]:
    """One line per term none of whose cells holds a testcase the term matches in ``run``:
    ``--testcase T: matches no testcase at the good end (its cell has: ...)``.

    Checked at the good end: a testcase glob with a typo would otherwise make every
    step "absent", hence bad.  Terms are quoted in messages: a term's ``::name`` and the
    colon after it would read as an emoji code to a rich console.
    """
    out = []
    for term in predicate.terms:
        cells = [c for c in predicate.cells if matches(term.cell, c.name)]
        names = [name for (suite, name) in run.cases if any(suite == c.name for c in cells)]
        if not any(matches(term.testcase, n) for n in names):
            shown = ", ".join(names[:12]) + (" ..." if len(names) > 12 else "")
            out.append(f"--testcase {str(term)!r}: matches no testcase at the good end "
                       f"(its cell has: {shown or 'no testcase'})")
    return out


def combine(verdicts: Sequence[Verdict]) -> Verdict:
    """One step's verdict from its repeats: theirs when all agree, else ``noisy``.

    A repeat that was skipped among good or bad ones makes the step noisy too: the
    same kernel did not give the same answer.

    Raises:
        ValueError: no verdict.
    """
    if not verdicts:
        raise ValueError("a step needs at least one verdict")
    return verdicts[0] if all(v is verdicts[0] for v in verdicts) else Verdict.NOISY


# -- the search ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """A patch or commit under suspicion: its name (a patch's name in its series, a
    commit's hash) and subject ("" when it has none)."""

    name: str
    subject: str



@dataclass(frozen=True)
class Outcome:
    """Where the search ended.

    Attributes:
        good: the last position known good (0 at least).
        bad: the first position known bad (n at most).
        untestable: positions in between that were skipped or noisy, lowest first.

    The first bad candidate is ``bad`` when no untested position is left between
    ``good`` and ``bad`` (:attr:`first_bad`); else it is one of :attr:`suspects`.
    """

    good: int
    bad: int
    untestable: tuple[int, ...]

    @property
    def first_bad(self) -> int | None:
        """The first bad candidate's number (1..n), or None when skips leave several."""
        return self.bad if self.bad - self.good == 1 else None

    @property
    def suspects(self) -> tuple[int, ...]:
        """Every candidate that may be the first bad one: ``good+1 .. bad``."""
        return tuple(range(self.good + 1, self.bad + 1))


def next_position(good: int, bad: int, untestable: Iterable[int]) -> int | None:
    """The position to test next: the one strictly between ``good`` and ``bad``, not
    untestable, nearest the middle (the lower one on a tie); None when none is left."""
    skip = set(untestable)
    middle = (good + bad) / 2
    left = [p for p in range(good + 1, bad) if p not in skip]
    return min(left, key=lambda p: (abs(p - middle), p)) if left else None


def steps_left(good: int, bad: int, untestable: Iterable[int] = ()) -> int:
    """Steps a bisection of ``good..bad`` still needs, as git estimates it: ceil(log2) of the
    positions left to test plus one (0 when none is left)."""
    skip = set(untestable)
    left = sum(1 for p in range(good + 1, bad) if p not in skip)
    return math.ceil(math.log2(left + 1)) if left else 0


Probe = Callable[[int, int], Verdict]
"""``probe(position, left)`` runs the step at ``position`` (``left``: steps estimated after it)
and returns its verdict."""


def search(n: int, probe: Probe) -> Outcome:
    """Binary search for the first bad candidate of ``1..n``, positions 0 and n already known.

    Position 0 must be good and position n bad (checked before, by the caller).
    ``probe`` is called once per tested position; a skipped or noisy position is
    never tested again, and the search moves to the untested position nearest the
    middle, as ``git bisect skip`` does.

    Raises:
        ValueError: ``n`` < 1.
    """
    if n < 1:
        raise ValueError("there must be at least one candidate")
    good, bad = 0, n
    untestable: list[int] = []
    while (position := next_position(good, bad, untestable)) is not None:
        verdict = probe(position, max(0, steps_left(good, bad, untestable) - 1))
        if verdict is Verdict.GOOD:
            good = position
        elif verdict is Verdict.BAD:
            bad = position
        else:
            untestable.append(position)
    return Outcome(good, bad, tuple(sorted(p for p in untestable if good < p < bad)))

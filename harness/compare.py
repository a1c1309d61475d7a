"""Comparing two runs: which testcases regressed, got fixed, appeared or vanished.

A *run* is a results directory holding ``junit.xml`` (as written by
:class:`harness.results.ResultsDir`) or a JUnit XML file.  Every testcase is
keyed by ``(testsuite name, testcase name)``; the testsuite name is the matrix
cell (``board:cmdline``).  Each key present in either run gets exactly one
:class:`Category`:

========================  ==========================================================
``regression``            passed in base; failure or error in new.  Also: any
                          outcome in base, absent in new when the new run holds
                          no testcase at all, or when the new run has the cell
                          but the cell holds no testcase (a lost cell, below)
``fix``                   failure or error in base; passed in new
``new-failure``           absent (or skipped) in base; failure or error in new
``new-test``              absent in base; passed or skipped in new
``removed``               in base; absent in new (its cell is absent too, or
                          other testcases of the cell are there)
``still-failing``         failure or error in both
``flaky``                 passed or skipped in new, but only on a retry (see below)
``unchanged-pass``        passed in new, passed (or was skipped) in base
``skipped``               skipped in new, present in base
========================  ==========================================================

Flaky: the runner marks a cell that passed only on a retry with the testsuite
properties ``retry.flaky = "true"`` and ``retry.attempts = N``; a single
testcase may carry a ``<properties>`` child with ``flaky = "true"``, or its suite
the property ``testcase.<testcase name>.flaky = "true"`` (where merge moves it:
junit-10.xsd allows no ``<properties>`` in a ``<testcase>``).  A flaky
marker never hides a failure: a failing case stays a regression /
still-failing / new-failure.

A run that produced nothing must never look green: when the new run holds no
testcase while the base has some (a run that crashed, a junit.xml left empty),
or a cell of the new run holds no testcase while the base's same cell has some,
every base testcase of those *lost* cells is a ``regression`` ("absent in new:
...no testcase"), so the exit status is 1 and compare.xml lists each one as a
failure.  An empty *base* is still bad input (nothing to compare against).

Only ``regression`` makes :attr:`Comparison.has_regressions` true; the exit
status policy (:func:`exit_status`) is 1 with a regression, else 0.  Metric
deltas and new failures of tests without a passing baseline are reported, never
counted as regressions.
"""

from __future__ import annotations

import fnmatch
import math
import re
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from junitparser import Error, Failure, JUnitXml, JUnitXmlError, Properties, Skipped

from harness.errors import InputError
from harness.outcome import Status

JUNIT_NAME = "junit.xml"
INFRASTRUCTURE_ERROR = "infrastructure"
"""The ``type`` of an ``<error>`` the host caused (harness.results writes it)."""
DEFAULT_TOLERANCE = 0.25
_MAX_DETAILS = 4000
_POSITION_SUFFIX = re.compile(r":? *line \d+, column \d+$")


_RESULT_STATUS = {Error: Status.ERROR, Failure: Status.FAIL, Skipped: Status.SKIP}
"""The :class:`Status` of each JUnit result element; a testcase without one passed."""

_WORST_RESULT_ORDER = {Status.PASS: 0, Status.SKIP: 1, Status.FAIL: 2, Status.ERROR: 3}
"""Which of a testcase's result elements counts: error > failure > skipped > passed.

Not :attr:`Status.rank` (which puts pass above skip): a testcase carrying a
``<skipped>`` element is skipped, whatever else it carries short of a failure.
"""


class Category(StrEnum):
    """How a testcase changed from base to new (see the module docstring)."""

    REGRESSION = "regression"
    FIX = "fix"
    NEW_FAILURE = "new-failure"
    NEW_TEST = "new-test"
    REMOVED = "removed"
    STILL_FAILING = "still-failing"
    FLAKY = "flaky"
    UNCHANGED_PASS = "unchanged-pass"
    SKIPPED = "skipped"


Key = tuple[str, str]
"""``(testsuite name, testcase name)``."""


@dataclass(frozen=True)
class CaseResult:
    """One testcase of one run.

    Attributes:
        suite: testsuite (cell) name; name: testcase name.
        outcome: the worst result the testcase carries (see :data:`_WORST_RESULT_ORDER`);
            reports show it as :attr:`Status.junit_word` (``passed``, ``failure``...).
        message: the result's ``message`` attribute, or for a pass the first line
            of ``<system-out>``; "" when there is none.
        details: the result's text (or ``<system-out>``), at most 4000 characters.
        flaky: the testcase or its suite carries a flaky marker.
        seconds: the testcase's ``time`` attribute, 0.0 when absent.
        infrastructure: an ``<error type="infrastructure">``: the host, not the guest,
            ended the cell (QEMU killed, a lab's error).
    """

    suite: str
    name: str
    outcome: Status
    message: str = ""
    details: str = ""
    flaky: bool = False
    seconds: float = 0.0
    infrastructure: bool = False


@dataclass(frozen=True)
class SuiteInfo:
    """One testsuite (matrix cell) of a run: its properties and retry marker.

    ``attempts`` is ``retry.attempts`` (boots tried), None when not recorded;
    ``seconds`` the suite's ``time`` (a cell's wall time; junitparser sums its
    testcases' when the attribute is absent).
    """

    name: str
    hostname: str
    properties: dict[str, str]
    flaky: bool = False
    attempts: int | None = None
    seconds: float | None = None


@dataclass(frozen=True)
class Run:
    """A loaded run: ``source`` is the junit.xml file read; cases and suites in file order."""

    source: Path
    cases: dict[Key, CaseResult]
    suites: dict[str, SuiteInfo]


@dataclass(frozen=True)
class MetricRule:
    """A numeric property to compare: a glob on the property name, an absolute floor.

    A change is news when ``|new - base| > floor`` *and* ``|new - base| > tolerance * |base|``;
    ``floor`` is in the metric's own unit (µs, pages, seconds, MiB).
    """

    pattern: str
    floor: float = 0.0

    def matches(self, name: str) -> bool:
        return fnmatch.fnmatchcase(name, self.pattern)


# ``before.*`` counters repeat the previous suite's ``after.*`` values (they are
# cumulative over a boot), so only the ``after`` side is compared.
DEFAULT_METRICS: tuple[MetricRule, ...] = (
    MetricRule("*.latency_us.median", floor=20.0),
    MetricRule("*.after.*alloc_pages_fail", floor=0.0),
    MetricRule("boot.seconds", floor=0.5),
    MetricRule("cma.reserved_mib", floor=0.0),
)


@dataclass(frozen=True)
class MetricDelta:
    """A numeric suite property that moved beyond tolerance.

    ``relative`` is ``(new - base) / |base|`` (0.25 = +25 %), None when base is 0.
    """

    suite: str
    name: str
    base: float
    new: float

    @property
    def delta(self) -> float:
        return self.new - self.base

    @property
    def relative(self) -> float | None:
        return None if self.base == 0 else self.delta / abs(self.base)


@dataclass(frozen=True)
class CaseChange:
    """One key's classification; ``base``/``new`` are None where the key is absent.

    ``note`` says why, when the category alone does not (a lost cell), else "".
    """

    suite: str
    name: str
    category: Category
    base: CaseResult | None
    new: CaseResult | None
    note: str = ""

    @property
    def reason(self) -> str:
        """A short human reason, e.g. ``"passed -> failure"`` or ``"absent in new"``."""
        before = self.base.outcome.junit_word if self.base else "absent"
        after = self.new.outcome.junit_word if self.new else "absent"
        text = f"{before} -> {after}"
        if self.category is Category.FLAKY:
            text += " (passed only on retry)"
        if self.note:
            text += f" ({self.note})"
        return text


@dataclass(frozen=True)
class Comparison:
    """The result of :func:`compare`: every key classified, cells missing, metric deltas.

    ``changes`` holds one :class:`CaseChange` per key, grouped by cell in
    ``suites`` order; within a cell base-file order, then new-only testcases in
    new-file order.  The per-category properties
    (``regressions``, ``fixes``, ...) are tuples filtered from it in that order.
    ``suites`` is every cell name in the same order; ``suites_only_in_base``
    are cells of the base matrix that the new run lacks, ``suites_only_in_new``
    the reverse.  ``flaky_suites`` maps each new-run cell marked flaky to
    ``retry.attempts`` (None when not recorded).  ``lost_suites`` are the base
    cells with testcases of which the new run holds none although it should
    (see the module docstring); their testcases are regressions.
    ``tolerance`` is relative (0.25 = 25 %).
    """

    base: Path
    new: Path
    tolerance: float
    changes: tuple[CaseChange, ...]
    suites: tuple[str, ...] = ()
    suites_only_in_base: tuple[str, ...] = ()
    suites_only_in_new: tuple[str, ...] = ()
    flaky_suites: dict[str, int | None] = field(default_factory=dict)
    metric_deltas: tuple[MetricDelta, ...] = ()
    lost_suites: tuple[str, ...] = ()

    def of(self, category: Category) -> tuple[CaseChange, ...]:
        """The changes of one category, in ``changes`` order."""
        return tuple(c for c in self.changes if c.category is category)

    @property
    def regressions(self) -> tuple[CaseChange, ...]:
        return self.of(Category.REGRESSION)

    @property
    def fixes(self) -> tuple[CaseChange, ...]:
        return self.of(Category.FIX)

    @property
    def new_failures(self) -> tuple[CaseChange, ...]:
        return self.of(Category.NEW_FAILURE)

    @property
    def new_tests(self) -> tuple[CaseChange, ...]:
        return self.of(Category.NEW_TEST)

    @property
    def removed(self) -> tuple[CaseChange, ...]:
        return self.of(Category.REMOVED)

    @property
    def still_failing(self) -> tuple[CaseChange, ...]:
        return self.of(Category.STILL_FAILING)

    @property
    def flaky(self) -> tuple[CaseChange, ...]:
        return self.of(Category.FLAKY)

    @property
    def unchanged_pass(self) -> tuple[CaseChange, ...]:
        return self.of(Category.UNCHANGED_PASS)

    @property
    def skipped(self) -> tuple[CaseChange, ...]:
        return self.of(Category.SKIPPED)

    @property
    def has_regressions(self) -> bool:
        return any(c.category is Category.REGRESSION for c in self.changes)

    def counts(self) -> dict[Category, int]:
        """Number of testcases per category; every category present, in declaration order."""
        counts = dict.fromkeys(Category, 0)
        for change in self.changes:
            counts[change.category] += 1
        return counts

    def summary(self) -> str:
        """One line, e.g. ``"regression: 1, unchanged-pass: 88; 1 metric delta(s)"``."""
        parts = [f"{cat.value}: {n}" for cat, n in self.counts().items() if n]
        text = ", ".join(parts) or "no testcases"
        if self.metric_deltas:
            text += f"; {len(self.metric_deltas)} metric delta(s)"
        if self.suites_only_in_base or self.suites_only_in_new:
            text += (f"; cells only in base: {len(self.suites_only_in_base)}, "
                     f"only in new: {len(self.suites_only_in_new)}")
        if self.lost_suites:
            text += f"; cells with no testcase in new: {len(self.lost_suites)}"
        return text


def exit_status(comparison: Comparison) -> int:
    """The ``compare`` command's exit status: 1 when there is a regression, else 0.

    A new run (or cell) that holds no testcase while the base had some counts
    as regressed (see the module docstring), so it is 1, never 0.  (Bad input,
    :class:`~harness.errors.InputError`, is the CLI's 2.)
    """
    return 1 if comparison.has_regressions else 0


# -- loading -------------------------------------------------------------------------------------


def junit_file(path: Path) -> Path:
    """The junit.xml of ``path``: the file itself, or ``<dir>/junit.xml``.

    Only a regular file is ever returned: a FIFO, a device or a socket (given,
    or as a directory's junit.xml) is refused here, before anything opens it.

    Raises:
        InputError: ``path`` does not exist, is neither a regular file nor a
            directory, is an empty directory, or a directory without a regular
            junit.xml (the message lists what it holds).
    """
    if not path.exists():
        raise InputError(f"{path}: no such file or results directory")
    if not path.is_dir():
        if not path.is_file():
            raise InputError(f"{path}: not a regular file or results directory")
        return path
    candidate = path / JUNIT_NAME
    if candidate.is_file():
        return candidate
    if candidate.exists():
        raise InputError(f"{candidate}: not a regular file")
    entries = sorted(p.name for p in path.iterdir())
    if not entries:
        raise InputError(f"{path}: results directory is empty (no {JUNIT_NAME}; did the run finish?)")
    hint = f"; did you mean {path / 'latest'}?" if (path / "latest" / JUNIT_NAME).is_file() else ""
    shown = ", ".join(entries[:8]) + (", ..." if len(entries) > 8 else "")
    raise InputError(f"{path}: no {JUNIT_NAME} in this results directory (it holds: {shown}){hint}")


def _bad_time(elem: Any) -> str | None:
    """The ``time`` attribute of ``elem`` when it is not a finite number (as junitparser reads it)."""
    text = elem.get("time")
    if text is None or text == "":
        return None
    try:
        value = float(text.replace(",", ""))
    except ValueError:
        return str(text)
    return None if math.isfinite(value) else str(text)


def _check_times(xml: Any, file: Path) -> None:
    """Refuse a document whose root, a testsuite or a testcase has a ``time`` that is no number.

    Raises:
        InputError: ``<file>: testsuite 'S' testcase 'C': time='zz' is not a number of seconds``.
    """
    root = xml._elem  # junitparser keeps the element; its FloatAttr would raise ValueError later
    if root.tag == "testsuites" and (bad := _bad_time(root)) is not None:
        raise InputError(f"{file}: <testsuites>: time={bad!r} is not a number of seconds")
    for suite in root.iter("testsuite"):
        where = f"testsuite {suite.get('name', '')!r}"
        if (bad := _bad_time(suite)) is not None:
            raise InputError(f"{file}: {where}: time={bad!r} is not a number of seconds")
        for case in suite.findall("testcase"):
            if (bad := _bad_time(case)) is not None:
                raise InputError(f"{file}: {where} testcase {case.get('name', '')!r}: "
                                 f"time={bad!r} is not a number of seconds")


def parse_junit(file: Path) -> JUnitXml:
    """Parse one JUnit XML file with junitparser.

    Raises:
        InputError: not a regular file (refused before opening: a FIFO would
            block), unreadable, truncated or corrupt XML (the message is
            ``<file>:<line>:<column>: ...`` from the parser's error position), a
            root element other than ``<testsuites>``/``<testsuite>``, or a
            ``time`` attribute that is not a finite number.
    """
    try:
        if not stat.S_ISREG(file.stat().st_mode):
            raise InputError(f"{file}: not a regular file")
        xml = JUnitXml.fromfile(str(file))
    except SyntaxError as exc:  # xml.etree ParseError and lxml XMLSyntaxError both derive from it
        line, column = getattr(exc, "position", None) or (exc.lineno or 0, exc.offset or 0)
        reason = _POSITION_SUFFIX.sub("", str(exc.msg or exc))
        raise InputError(f"{file}:{line}:{column}: truncated or corrupt JUnit XML: {reason}") from exc
    except JUnitXmlError as exc:
        raise InputError(f"{file}: not JUnit XML (root element is not <testsuites> or <testsuite>)") \
            from exc
    except OSError as exc:
        raise InputError(f"{file}: cannot read: {exc.strerror or exc}") from exc
    _check_times(xml, file)
    return xml


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _is_true(value: str | None) -> bool:
    return (value or "").strip().lower() in ("true", "1", "yes")


def _case_flaky(case: Any) -> bool:
    props = case.child(Properties)
    return props is not None and any(p.name == "flaky" and _is_true(p.value) for p in props)


def _case_result(suite: str, name: str, case: Any, suite_flaky: bool) -> CaseResult:
    outcome, message, details = Status.PASS, "", _text(case.system_out)
    infrastructure = False
    for result in case.result:
        found = next((o for cls, o in _RESULT_STATUS.items() if isinstance(result, cls)), Status.PASS)
        if _WORST_RESULT_ORDER[found] > _WORST_RESULT_ORDER[outcome]:
            outcome, message = found, _text(result.message)
            details = _text(result.text) or details
            infrastructure = found is Status.ERROR and result.type == INFRASTRUCTURE_ERROR
    if outcome is Status.PASS:
        message = details.strip().split("\n", 1)[0]
    return CaseResult(suite, name, outcome, message, details[:_MAX_DETAILS],
                      suite_flaky or _case_flaky(case), float(case.time or 0.0), infrastructure)


def _suite_info(suite: Any) -> SuiteInfo:
    props = {_text(p.name): _text(p.value) for p in suite.properties()}
    flaky = _is_true(props.get("retry.flaky")) or _is_true(props.get("flaky"))
    attempts_text = props.get("retry.attempts", "")
    attempts = int(attempts_text) if attempts_text.strip().isdigit() else None
    seconds = None if suite.time is None else float(suite.time)
    return SuiteInfo(_text(suite.name), _text(suite.hostname), props, flaky, attempts, seconds)


def load_run(path: Path, *, allow_empty: bool = False) -> Run:
    """Load a run from a results directory or a junit.xml path.

    A testcase name repeated within one suite gets ``" #2"``, ``" #3"``... so
    every key stays distinct.  ``allow_empty`` accepts a file holding no
    testcase (the new side of a comparison: a run that produced nothing).

    Raises:
        InputError: see :func:`junit_file` and :func:`parse_junit`; also a file
            holding no testcase at all, unless ``allow_empty`` (comparing
            against it would be meaningless).
    """
    file = junit_file(path)
    xml = parse_junit(file)
    cases: dict[Key, CaseResult] = {}
    suites: dict[str, SuiteInfo] = {}
    for suite in xml:
        info = _suite_info(suite)
        suites.setdefault(info.name, info)
        for case in suite:
            name, n = _text(case.name), 1
            while (info.name, name) in cases:
                n += 1
                name = f"{_text(case.name)} #{n}"
            flaky = info.flaky or _is_true(info.properties.get(f"testcase.{_text(case.name)}.flaky"))
            cases[(info.name, name)] = _case_result(info.name, name, case, flaky)
    if not cases and not allow_empty:
        raise InputError(f"{file}: holds no testcases (an empty or aborted run?)")
    return Run(file, cases, suites)


# -- classifying ---------------------------------------------------------------------------------


def classify(base: CaseResult | None, new: CaseResult | None) -> Category:
    """The category of one key; ``None`` means absent from that run.

    Raises:
        ValueError: both sides absent.
    """
    if new is None:
        if base is None:
            raise ValueError("a key must be present in at least one run")
        return Category.REMOVED
    if new.outcome.bad:
        if base is None or base.outcome is Status.SKIP:
            return Category.NEW_FAILURE
        return Category.STILL_FAILING if base.outcome.bad else Category.REGRESSION
    if new.flaky:
        return Category.FLAKY
    if base is None:
        return Category.NEW_TEST
    if new.outcome is Status.SKIP:
        return Category.SKIPPED
    return Category.FIX if base.outcome.bad else Category.UNCHANGED_PASS


def number(text: str | None) -> float | None:
    """``text`` as a finite float, None when it is absent or no finite number."""
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def metric_deltas(base: Run, new: Run, tolerance: float,
                  rules: Sequence[MetricRule] = DEFAULT_METRICS) -> list[MetricDelta]:
    """Numeric properties of cells present in both runs that moved beyond tolerance.

    A property counts when its name matches a rule (the first matching rule's
    floor applies) and parses as a finite number on both sides; others are ignored.
    """
    out: list[MetricDelta] = []
    for name, base_suite in base.suites.items():
        new_suite = new.suites.get(name)
        if new_suite is None:
            continue
        for prop, base_text in base_suite.properties.items():
            rule = next((r for r in rules if r.matches(prop)), None)
            old, now = number(base_text), number(new_suite.properties.get(prop))
            if rule is None or old is None or now is None:
                continue
            change = abs(now - old)
            if change > rule.floor and change > tolerance * abs(old):
                out.append(MetricDelta(name, prop, old, now))
    return out


def _ordered_suites(base: Run, new: Run) -> tuple[str, ...]:
    return tuple(dict.fromkeys([*base.suites, *new.suites]))


def lost_suites(base: Run, new: Run) -> tuple[str, ...]:
    """Base cells holding testcases of which ``new`` holds none although it should.

    That is every base cell with testcases when ``new`` holds no testcase at
    all, else the base cells that ``new`` has as (empty) testsuites.  A cell
    absent from a non-empty new run is not lost: a filtered run (``--board``)
    leaves cells out on purpose, they are ``removed``.
    """
    with_cases = {suite for suite, _ in new.cases}
    in_base = dict.fromkeys(suite for suite, _ in base.cases)
    if not with_cases:
        return tuple(in_base)
    return tuple(s for s in in_base if s in new.suites and s not in with_cases)


def _change(key: Key, old: CaseResult | None, now: CaseResult | None,
            lost: tuple[str, ...], note: str) -> CaseChange:
    if now is None and old is not None and key[0] in lost:
        return CaseChange(key[0], key[1], Category.REGRESSION, old, now, note)
    return CaseChange(key[0], key[1], classify(old, now), old, now)


def compare(base: Run, new: Run, tolerance: float = DEFAULT_TOLERANCE,
            rules: Sequence[MetricRule] = DEFAULT_METRICS) -> Comparison:
    """Classify every key of ``base`` and ``new``; list missing cells and metric deltas.

    ``tolerance`` is relative (0.25 = 25 %).  The testcases of lost cells
    (:func:`lost_suites`) are regressions.

    Raises:
        InputError: a negative or non-finite tolerance.
    """
    if not (math.isfinite(tolerance) and tolerance >= 0):
        raise InputError(f"tolerance must be a number >= 0 (0.25 = 25%), got {tolerance}")
    suites = _ordered_suites(base, new)
    rank = {name: i for i, name in enumerate(suites)}
    keys = sorted(dict.fromkeys([*base.cases, *new.cases]), key=lambda k: rank[k[0]])  # stable
    lost = lost_suites(base, new)
    note = "the new run holds no testcase" if not new.cases else "its cell holds no testcase in new"
    changes = tuple(_change(key, base.cases.get(key), new.cases.get(key), lost, note) for key in keys)
    return Comparison(
        base=base.source, new=new.source, tolerance=tolerance, changes=changes,
        suites_only_in_base=tuple(s for s in base.suites if s not in new.suites),
        suites_only_in_new=tuple(s for s in new.suites if s not in base.suites),
        flaky_suites={s.name: s.attempts for s in new.suites.values() if s.flaky},
        metric_deltas=tuple(metric_deltas(base, new, tolerance, rules)),
        suites=suites, lost_suites=lost,
    )


def compare_paths(base: Path, new: Path, tolerance: float = DEFAULT_TOLERANCE,
                  rules: Sequence[MetricRule] = DEFAULT_METRICS) -> Comparison:
    """Load two runs (results directories or junit.xml files) and :func:`compare` them.

    A ``new`` run holding no testcase is loaded, not refused: every base
    testcase is then a regression (see the module docstring).

    Raises:
        InputError: either input missing, without junit.xml, truncated or
            corrupt, ``base`` holding no testcase (see :func:`load_run`), or a
            bad tolerance.
    """
    return compare(load_run(base), load_run(new, allow_empty=True), tolerance, rules)


def parse_metric_rule(text: str) -> MetricRule:
    """A rule from a CLI argument ``PATTERN`` or ``PATTERN=FLOOR`` (e.g. ``boot.seconds=0.5``).

    Raises:
        InputError: empty pattern, or a floor that is not a number >= 0.
    """
    pattern, sep, floor_text = text.rpartition("=") if "=" in text else (text, "", "")
    floor = number(floor_text) if sep else 0.0
    if not pattern.strip() or floor is None or floor < 0:
        raise InputError(f"metric rule {text!r}: expected PATTERN or PATTERN=FLOOR (FLOOR a number >= 0)")
    return MetricRule(pattern.strip(), floor)


def rules_from_args(args: Iterable[str] | None) -> tuple[MetricRule, ...]:
    """:data:`DEFAULT_METRICS` when ``args`` is empty/None, else the parsed rules.

    Raises:
        InputError: see :func:`parse_metric_rule`.
    """
    parsed = tuple(parse_metric_rule(a) for a in args or ())
    return parsed or DEFAULT_METRICS

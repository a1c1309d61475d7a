"""Checking a JUnit XML file the way a CI server would read it.

:func:`assert_valid_junit` validates a file against ``tests/junit-10.xsd`` (the
Jenkins xunit plugin's schema, vendored unchanged: see ``junit-10.xsd.SOURCE``)
and then :func:`totals_by_readers` reads its totals with three independent
readers, which must agree:

* ``xml.etree``: the ``<testcase>``, ``<failure>``, ``<error>`` and ``<skipped>``
  elements counted by hand, also compared with the count attributes every
  ``<testsuite>`` and the root declare;
* junitparser (the library the harness writes with): its object model, case by case;
* junit2html (``junit2htmlreport.parser``), an unrelated reader.  It folds an
  ``<error>`` into "failed", so it is compared on failures + errors.
"""

from __future__ import annotations

import functools
import hashlib
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import xmlschema
from junit2htmlreport.parser import Junit
from junitparser import Error, Failure, JUnitXml, Skipped

SCHEMA_FILE = Path(__file__).with_name("junit-10.xsd")
SCHEMA_SHA256 = "a1a816f58d1bf95ebabf371994df0b9246dee66ea9572fbec4f9296f1b2c0ff6"
_MAX_SHOWN = 10


@dataclass(frozen=True)
class Totals:
    """Testcases in a JUnit document and how many carry a failure, an error, a skip."""

    tests: int
    failures: int
    errors: int
    skipped: int

    def __add__(self, other: Totals) -> Totals:
        return Totals(self.tests + other.tests, self.failures + other.failures,
                      self.errors + other.errors, self.skipped + other.skipped)


@functools.cache
def junit_schema() -> xmlschema.XMLSchema:
    """The vendored junit-10.xsd, parsed once.

    Raises:
        AssertionError: the file's SHA-256 is not the one recorded in junit-10.xsd.SOURCE.
    """
    digest = hashlib.sha256(SCHEMA_FILE.read_bytes()).hexdigest()
    assert digest == SCHEMA_SHA256, f"{SCHEMA_FILE} was changed (sha256 {digest})"
    return xmlschema.XMLSchema(SCHEMA_FILE)


def schema_errors(path: Path) -> list[str]:
    """Every way ``path`` breaks junit-10.xsd, as ``"<reason> (at <xpath>)"``; [] when valid.

    Raises:
        xmlschema.XMLResourceError: ``path`` is not well-formed XML (or unreadable).
    """
    return [f"{e.reason} (at {e.path})" for e in junit_schema().iter_errors(str(path))]


def _suites(root: ET.Element) -> list[ET.Element]:
    return [root] if root.tag == "testsuite" else root.findall("testsuite")


def _count(cases: list[ET.Element], tag: str) -> int:
    return sum(len(case.findall(tag)) for case in cases)


def _declared(suite: ET.Element) -> Totals:
    return Totals(*(int(suite.get(a, "0")) for a in ("tests", "failures", "errors", "skipped")))


def etree_totals(path: Path) -> Totals:
    """The totals counted element by element with ``xml.etree``.

    Raises:
        AssertionError: the root is neither ``<testsuites>`` nor ``<testsuite>``, or a
            ``<testsuite>`` (or the root) declares counts that differ from its elements.
    """
    root = ET.parse(path).getroot()
    assert root.tag in ("testsuites", "testsuite"), f"{path}: root element <{root.tag}> is not JUnit"
    total = Totals(0, 0, 0, 0)
    for suite in _suites(root):
        cases = suite.findall("testcase")
        own = Totals(len(cases), _count(cases, "failure"), _count(cases, "error"), _count(cases, "skipped"))
        assert _declared(suite) == own, f"{path}: testsuite {suite.get('name')!r} declares " \
                                        f"{_declared(suite)}, holds {own}"
        total += own
    if root.tag == "testsuites":
        declared = (int(root.get("tests", "0")), int(root.get("failures", "0")), int(root.get("errors", "0")))
        assert declared == (total.tests, total.failures, total.errors), \
            f"{path}: <testsuites> declares tests/failures/errors {declared}, holds {total}"
    return total


def junitparser_totals(path: Path) -> Totals:
    """The totals as junitparser's object model gives them, testcase by testcase."""
    cases = [case for suite in JUnitXml.fromfile(str(path)) for case in suite]

    def count(kind: type) -> int:
        return sum(isinstance(r, kind) for case in cases for r in case.result)

    return Totals(len(cases), count(Failure), count(Error), count(Skipped))


def junit2html_totals(path: Path) -> tuple[int, int, int]:
    """``(tests, failures + errors, skipped)`` as junit2html reads them (it folds errors into failed)."""
    cases = [case for suite in Junit(str(path)) for case in suite.all()]
    return len(cases), sum(bool(c.failed()) for c in cases), sum(bool(c.skipped) for c in cases)


def totals_by_readers(path: Path) -> Totals:
    """The totals of ``path``, the same by every reader (see the module docstring).

    Returns:
        The :class:`Totals` counted with ``xml.etree``.

    Raises:
        AssertionError: the readers disagree (the message shows each reading), or a
            count attribute disagrees with the elements (see :func:`etree_totals`).
    """
    by_hand = etree_totals(path)
    parsed = junitparser_totals(path)
    other = junit2html_totals(path)
    folded = (by_hand.tests, by_hand.failures + by_hand.errors, by_hand.skipped)
    assert parsed == by_hand and other == folded, \
        f"{path}: xml.etree {by_hand}, junitparser {parsed}, junit2html (tests, failed, skipped) {other}"
    return by_hand


def assert_valid_junit(path: Path) -> Totals:
    """Assert ``path`` is valid junit-10.xsd JUnit and every reader reads the same totals.

    Returns:
        Its :class:`Totals` (see :func:`totals_by_readers`).

    Raises:
        AssertionError: a schema violation (the first ten are listed), or see
            :func:`totals_by_readers`.
        xmlschema.XMLResourceError: ``path`` is not well-formed XML.
    """
    errors = schema_errors(path)
    assert not errors, f"{path} breaks junit-10.xsd:\n  " + "\n  ".join(errors[:_MAX_SHOWN])
    return totals_by_readers(path)

"""The one outcome of a check, a KTAP test or a testcase: :class:`Status`.

Every layer speaks it: the KTAP parser (:mod:`harness.ktap`), the checks
(:mod:`harness.checks`), the cell's result, the JUnit writer and the run
comparison (:mod:`harness.compare`, which shows it as :attr:`Status.junit_word`).  Ranked
explicitly, error > fail > pass > skip, and zero outcomes are an error, never a
pass.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum


class Status(Enum):
    """Outcome of one check; :attr:`rank` orders them error > fail > pass > skip."""

    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"
    SKIP = "skip"

    @property
    def rank(self) -> int:
        """0 (skip) to 3 (error): the higher, the more severe."""
        return _RANK[self]

    @property
    def bad(self) -> bool:
        """True for FAIL and ERROR: the outcome fails a cell."""
        return self in (Status.FAIL, Status.ERROR)

    @property
    def junit_word(self) -> str:
        """The JUnit word for it, as ``compare`` reports show it: passed, skipped, failure, error."""
        return _JUNIT_WORD[self]


_RANK = {Status.SKIP: 0, Status.PASS: 1, Status.FAIL: 2, Status.ERROR: 3}
_JUNIT_WORD = {Status.PASS: "passed", Status.SKIP: "skipped", Status.FAIL: "failure", Status.ERROR: "error"}


def worst(statuses: Iterable[Status]) -> Status:
    """The most severe status; an empty input is ``ERROR`` (zero checks never pass)."""
    ranked = sorted(statuses, key=lambda s: s.rank)
    return ranked[-1] if ranked else Status.ERROR

"""A KTAP parser following Documentation/dev-tools/ktap.rst.

Accepts ``KTAP version 1`` (and ``TAP version 13/14``) documents: a version
line, a plan ``1..N``, result lines ``ok|not ok N [name] [# DIRECTIVE [reason]]``,
diagnostic lines ``# ...``, and nested subtests indented by four spaces whose
own result line follows them at the parent's indentation.  Unknown lines are
ignored, as the spec allows.  Diagnostic lines belong to the next result line
at the same depth.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from harness.outcome import Status

_VERSION = re.compile(r"^(?:K?TAP) version \d+$")
_PLAN = re.compile(r"^1\.\.(\d+)")
_RESULT = re.compile(r"^(ok|not ok) (\d+)(?: -)?(?: ([^#]*?))?\s*(?:#\s*(.*))?$")
_DIRECTIVE = re.compile(r"^(SKIP|TODO|XFAIL)\b\s*(.*)$", re.IGNORECASE)


@dataclass
class KtapTest:
    """One test: its number, name, status, directive reason, diagnostics and subtests.

    ``status`` is the one outcome enum (:class:`harness.outcome.Status`):
    ``ok`` is PASS, ``not ok`` FAIL, ``# SKIP`` SKIP, and a test the plan promised
    that never reported ERROR.  ``not ok ... # TODO`` (or ``# XFAIL``) is a known
    failure, not counted as one: SKIP with ``known_failure`` set.
    """

    number: int
    name: str
    status: Status
    reason: str = ""
    diagnostics: list[str] = field(default_factory=list)
    subtests: list[KtapTest] = field(default_factory=list)
    known_failure: bool = False


@dataclass
class _Frame:
    tests: list[KtapTest] = field(default_factory=list)
    plan: int | None = None
    diagnostics: list[str] = field(default_factory=list)


def _status(ok: bool, directive: str | None) -> tuple[Status, str, bool]:
    """(status, directive reason, known failure) of one result line."""
    m = _DIRECTIVE.match(directive or "")
    if m:
        kind = m.group(1).upper()
        if kind == "SKIP":
            return Status.SKIP, m.group(2), False
        return (Status.PASS if ok else Status.SKIP), m.group(2), not ok
    return (Status.PASS if ok else Status.FAIL), "", False


def _close(frame: _Frame) -> list[KtapTest]:
    """The frame's tests plus an ERROR test for each planned test that never reported."""
    tests = frame.tests
    if frame.plan is not None and len(tests) < frame.plan:
        for n in range(len(tests) + 1, frame.plan + 1):
            tests.append(KtapTest(n, f"test {n}", Status.ERROR,
                                  f"planned 1..{frame.plan} but test {n} never reported",
                                  list(frame.diagnostics)))
        frame.diagnostics = []
    return tests


def parse_ktap(lines: Iterable[str]) -> list[KtapTest]:
    """Parse KTAP text into the top-level tests (each with its subtests).

    Trailing text after a plan that fell short becomes ERROR tests (a crashed or
    hung suite), so zero results never read as success.
    """
    stack: list[_Frame] = [_Frame()]
    for raw in lines:
        line = raw.rstrip()
        stripped = line.lstrip(" ")
        depth = (len(line) - len(stripped)) // 4
        if not stripped:
            continue
        while len(stack) < depth + 1:
            stack.append(_Frame())
        if _VERSION.match(stripped):
            continue
        if m := _PLAN.match(stripped):
            stack[depth].plan = int(m.group(1))
        elif stripped.startswith("# Subtest:"):
            continue  # names the nested block; its result line names it again
        elif stripped.startswith("#"):
            stack[depth].diagnostics.append(stripped.lstrip("# ").rstrip())
        elif m := _RESULT.match(stripped):
            subtests: list[KtapTest] = []
            trailing: list[str] = []  # diagnostics after a block's last result: the parent's
            while len(stack) > depth + 1:
                inner = stack.pop()
                subtests = _close(inner) if inner.tests or inner.plan else subtests
                trailing = inner.diagnostics + trailing
            status, reason, known = _status(m.group(1) == "ok", m.group(4))
            frame = stack[depth]
            frame.tests.append(KtapTest(int(m.group(2)), (m.group(3) or "").strip() or
                                        f"test {m.group(2)}", status, reason,
                                        frame.diagnostics + trailing, subtests, known))
            frame.diagnostics = []
    while len(stack) > 1:
        inner = stack.pop()
        orphans = _close(inner)
        if orphans:  # a nested block whose parent result never came: the parent crashed
            number = len(stack[-1].tests) + 1
            stack[-1].tests.append(KtapTest(
                number, f"test {number}", Status.ERROR,
                "its subtests ran but it never printed its own result line (crash or hang?)",
                stack[-1].diagnostics, orphans))
            stack[-1].diagnostics = []
    return _close(stack[0])


@dataclass(frozen=True)
class FlatTest:
    """A test flattened for JUnit: ``path`` joins the names of its ancestors with ``/``."""

    path: str
    status: Status
    reason: str
    diagnostics: tuple[str, ...]
    known_failure: bool = False


def flatten(tests: Iterable[KtapTest], prefix: str = "") -> Iterator[FlatTest]:
    """Every test and subtest, depth first, parents after their children."""
    for test in tests:
        path = f"{prefix}{test.name}"
        yield from flatten(test.subtests, f"{path}/")
        yield FlatTest(path, test.status, test.reason, tuple(test.diagnostics), test.known_failure)


def diagnostic_metrics(diagnostics: Iterable[str]) -> dict[str, str]:
    """Measurement diagnostics as flat metrics.

    ``latency_us min=1 median=2 max=3`` gives ``{"latency_us.min": "1", ...}``;
    ``duration_ms=1234`` gives ``{"duration_ms": "1234"}``.  Free text is ignored.
    """
    metrics = {}
    for line in diagnostics:
        words = line.split()
        if not words:
            continue
        prefix = ""
        if "=" not in words[0]:
            prefix, words = words[0] + ".", words[1:]
        if words and all(re.fullmatch(r"[\w.]+=\S+", w) for w in words):
            for w in words:
                k, _, v = w.partition("=")
                metrics[f"{prefix}{k}"] = v
    return metrics


def subtree_diagnostics(test: KtapTest) -> list[str]:
    """The diagnostics of ``test`` and all its subtests, in order."""
    lines = [d for sub in test.subtests for d in subtree_diagnostics(sub)]
    return lines + test.diagnostics

"""A bisect's results directory and what it says: Markdown, JUnit, and ``compare``.

``<root>/<bisect-id>/`` (``<root>/.<bisect-id>.partial`` until it is complete, then
renamed; ``<root>/latest`` points at the newest) holds:

* ``steps/NN-<label>/``: each step's record (``step.json``) and its runs, each a
  complete results directory of ``cma-harness run`` (``<run-id>/``: junit.xml, logs...);
* ``bisect.md``: the first bad patch or commit with its subject (or the suspects, when
  skipped or noisy steps leave several), the candidates, the log of steps with build and
  boot times and verdicts, the predicate's testcases at the first bad step beside their
  state just before, and the comparison's summary;
* ``bisect.xml``: JUnit, one testcase per step (good: passed; bad: a failure carrying
  the failing testcases; skip: skipped with the reason; noisy: an error), built with
  junitparser;
* ``bisect.json``: the same facts as data;
* ``compare/``: ``compare.{xml,md,html}`` of the last good step's run against the first
  bad step's, as ``cma-harness compare`` writes them (:func:`harness.compare.compare_paths`,
  :func:`harness.report.write_reports` with :func:`harness.htmlreport.compare_sections`);
* ``git-bisect.log`` (git form): ``git bisect log``.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from junitparser import Error, Failure, JUnitXml, Skipped, TestCase, TestSuite

from harness import compare, report, results
from harness.bisect import Candidate, CaseState, Outcome, Predicate, Verdict
from harness.bisectstep import StepRecord
from harness.cache import sync_dir
from harness.errors import EnvironmentProblem


class BisectDir:
    """A bisect's results directory, written while unpublished and renamed when complete.

    Raises (constructor):
        InputError: ``root`` cannot take results (:func:`harness.results.check_results_root`).
        EnvironmentProblem: the directory cannot be made.
    """

    def __init__(self, root: Path) -> None:
        results.check_results_root(root)
        self.root = root
        self.bisect_id = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)
        self.partial = root / f".{self.bisect_id}.partial"
        self.final = root / self.bisect_id
        try:
            self.partial.mkdir(parents=True)
        except OSError as exc:
            raise EnvironmentProblem(f"cannot create {self.partial}: {exc.strerror or exc}") from exc

    def discard(self) -> None:
        """Remove the unpublished directory and everything in it."""
        shutil.rmtree(self.partial, ignore_errors=True)

    def publish(self) -> Path:
        """Rename it to ``<root>/<bisect-id>`` and point ``<root>/latest`` at it; the final path.

        Raises:
            EnvironmentProblem: the rename or the link failed.
        """
        try:
            self.partial.rename(self.final)
            sync_dir(self.root)
            results.point_latest(self.root, self.bisect_id)
        except OSError as exc:
            raise EnvironmentProblem(f"cannot publish {self.final}: {exc.strerror or exc}") from exc
        return self.final


@dataclass(frozen=True)
class Summary:
    """A finished bisect.

    Attributes:
        form: ``series`` or ``git``.
        predicate: what was judged.
        candidates: the patches or commits of positions 1..n.
        records: every step, in the order run.
        outcome: where the search ended (positions).
        context: ``(what, value)`` rows for the report: source, series, ends, matrix...
        seconds: the bisect's wall time.
    """

    form: str
    predicate: Predicate
    candidates: tuple[Candidate, ...]
    records: tuple[StepRecord, ...]
    outcome: Outcome
    context: tuple[tuple[str, str], ...]
    seconds: float

    @property
    def noun(self) -> str:
        """``patch`` or ``commit``."""
        return "commit" if self.form == "git" else "patch"

    @property
    def first_bad(self) -> Candidate | None:
        """The first bad candidate, or None when skipped or noisy steps leave several."""
        bad = self.outcome.first_bad
        return self.candidates[bad - 1] if bad is not None else None

    @property
    def suspects(self) -> tuple[Candidate, ...]:
        """Every candidate that may be the first bad one."""
        return tuple(self.candidates[p - 1] for p in self.outcome.suspects)

    def step_at(self, position: int, verdict: Verdict) -> StepRecord | None:
        """The last step at ``position`` with ``verdict``, if any."""
        found = [r for r in self.records if r.position == position and r.verdict is verdict]
        return found[-1] if found else None

    @property
    def pair(self) -> tuple[StepRecord, StepRecord] | None:
        """The last good step and the first bad step around the first bad candidate, if found."""
        if self.outcome.first_bad is None:
            return None
        good, bad = self.step_at(self.outcome.good, Verdict.GOOD), self.step_at(self.outcome.bad, Verdict.BAD)
        return (good, bad) if good is not None and bad is not None else None


def _md(text: str) -> str:
    """``text`` fit for a Markdown table cell: one line, pipes escaped, at most 300 characters."""
    one = " ".join(text.split()).replace("|", "\\|")
    return one if len(one) <= 300 else one[:297] + "..."


def _seconds(s: float) -> str:
    return f"{s:.0f} s" if s < 90 else f"{s / 60:.1f} min"


def _headline(s: Summary) -> str:
    first = s.first_bad
    if first is not None:
        subject = f" — {_md(first.subject)}" if first.subject else ""
        where = f"candidate {s.outcome.bad} of {len(s.candidates)}"
        return f"**First bad {s.noun}: `{first.name}`**{subject} ({where})"
    plural = "patches" if s.noun == "patch" else "commits"
    return (f"**Undecided:** skipped or noisy steps leave {len(s.suspects)} {plural} that may be the first "
            "bad one: " + ", ".join(f"`{c.name}`" for c in s.suspects))


def _candidate_rows(s: Summary) -> list[str]:
    rows = ["| # | " + s.noun + " | subject | verdict |", "| --- | --- | --- | --- |"]
    for i, c in enumerate(s.candidates, 1):
        seen = [r for r in s.records if r.position == i]
        verdict = ", ".join(f"{r.verdict} (step {r.number})" for r in seen) or "not tested"
        if s.outcome.first_bad == i:
            verdict = f"**{verdict}: first bad**"
        rows.append(f"| {i} | `{c.name}` | {_md(c.subject)} | {verdict} |")
    return rows


def _step_rows(s: Summary) -> list[str]:
    rows = ["| step | position | " + s.noun + " | verdict | build | boot | why |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in s.records:
        where = ("?" if r.position is None else str(r.position)) + (f" ({r.role})" if r.role else "")
        rows.append(f"| {r.number} | {where} | `{r.label}` | {r.verdict} | {_seconds(r.build_seconds)} | "
                    f"{_seconds(r.run_seconds)} | {_md(r.reason)} |")
    return rows


def _case_rows(good: StepRecord, bad: StepRecord) -> list[str]:
    before = {c.key: c for c in good.cases}
    rows = [f"| testcase | step {good.number}: `{good.label}` (last good) | step {bad.number}: `{bad.label}` "
            "(first bad) |", "| --- | --- | --- |"]
    for case in sorted(bad.cases, key=lambda c: (not c.bad, c.key)):
        old = before.get(case.key)
        rows.append(f"| `{case.key}` | {_md(_said(old) if old else 'absent')} | {_md(_said(case))} |")
    return rows


def _said(case: CaseState) -> str:
    """``outcome: message`` (the message of a pass only when it is all there is)."""
    return f"{case.outcome}: {case.message}" if case.message and case.bad else case.outcome


def render_markdown(s: Summary, comparison: compare.Comparison | None) -> str:
    """``bisect.md``: headline, context, candidates, steps, testcases at the first bad step, comparison."""
    builds, boots = sum(r.build_seconds for r in s.records), sum(r.run_seconds for r in s.records)
    cells = ", ".join(c.name for c in s.predicate.cells)
    lines = ["# cma-harness bisect", "", _headline(s), "", "| | |", "| --- | --- |",
             f"| predicate | `{_md(s.predicate.describe())}` (cells: {_md(cells)}) |",
             *(f"| {what} | {_md(value)} |" for what, value in s.context),
             f"| steps | {len(s.records)} in {_seconds(s.seconds)} "
             f"(builds {_seconds(builds)}, boots {_seconds(boots)}) |",
             "", "## Candidates", "", *_candidate_rows(s), "", "## Steps", "", *_step_rows(s)]
    pair = s.pair
    if pair is not None:
        lines += ["", "## The predicate's testcases at the first bad step and just before", "",
                  *_case_rows(*pair)]
    if comparison is not None and pair is not None:
        lines += ["", "## compare: last good step against first bad step", "",
                  f"{_md(comparison.summary())}: `compare/compare.md`, `compare/compare.html`, "
                  f"`compare/compare.xml` (base: `{pair[0].runs[-1]}`, new: `{pair[1].runs[-1]}`)."]
    return "\n".join(lines) + "\n"


def _step_case(r: StepRecord) -> TestCase:
    case = TestCase(results.xml_safe(f"step {r.number}: {r.label}"), classname="bisect",
                    time=round(r.seconds, 3))
    message = results.xml_safe(r.reason)
    if r.verdict is Verdict.BAD:
        case.result = [Failure(message, type_="PredicateFailed")]
    elif r.verdict is Verdict.SKIP:
        case.result = [Skipped(message)]
    elif r.verdict is Verdict.NOISY:
        case.result = [Error(message, type_="Noisy")]
    case.system_out = results.xml_safe(
        f"{r.role or 'step'} at position {r.position}: {r.label} {r.subject}\n"
        f"verdict {r.verdict}: {r.reason}\n"
        f"build {r.build_seconds:.1f} s, boot {r.run_seconds:.1f} s, "
        f"repeats: {', '.join(r.verdicts) or '-'}\n"
        + "".join(f"run: {run}\n" for run in r.runs))
    return case


def build_junit(s: Summary) -> JUnitXml:
    """``bisect.xml``: one testsuite ``cma-harness bisect``, one testcase per step (see the module)."""
    suite = TestSuite("cma-harness bisect")
    first = s.first_bad
    for name, value in (("bisect.form", s.form), ("bisect.predicate", s.predicate.describe()),
                        ("bisect.first_bad", first.name if first else ""),
                        ("bisect.first_bad.subject", first.subject if first else ""),
                        ("bisect.suspects", " ".join(c.name for c in s.suspects)),
                        ("bisect.candidates", str(len(s.candidates))), ("bisect.steps", str(len(s.records)))):
        suite.add_property(name, results.xml_safe(value))
    for r in s.records:
        suite.add_testcase(_step_case(r))
    suite.time = round(s.seconds, 3)
    xml = JUnitXml("cma-harness bisect")
    xml.add_testsuite(suite)
    xml.update_statistics()
    return xml


def summary_data(s: Summary) -> dict[str, object]:
    """``bisect.json``: the summary as data."""
    first = s.first_bad
    return {"form": s.form, "predicate": [str(t) for t in s.predicate.terms],
            "cells": [c.name for c in s.predicate.cells], "context": dict(s.context),
            "candidates": [{"name": c.name, "subject": c.subject} for c in s.candidates],
            "first_bad": None if first is None else {"name": first.name, "subject": first.subject,
                                                     "position": s.outcome.bad},
            "suspects": [c.name for c in s.suspects], "seconds": round(s.seconds, 1),
            "steps": [json.loads(r.to_json()) for r in s.records]}


def write_outputs(s: Summary, directory: Path) -> compare.Comparison | None:
    """Write ``compare/`` (when a first bad step and the good step before it exist), ``bisect.json``,
    ``bisect.md`` and ``bisect.xml`` into ``directory``; the comparison, if made.

    Raises:
        InputError: a run's junit.xml cannot be read, or compare/ cannot be written.
        EnvironmentProblem: a file cannot be written.
    """
    comparison = None
    if s.pair is not None:
        from harness import htmlreport  # matplotlib: imported only where a comparison is drawn

        good, bad = s.pair
        comparison = compare.compare_paths(directory / good.runs[-1], directory / bad.runs[-1])
        report.write_reports(comparison, directory / "compare", htmlreport.compare_sections(comparison))
    results.save(directory / "bisect.json", (json.dumps(summary_data(s), indent=1) + "\n").encode())
    results.save(directory / "bisect.md", render_markdown(s, comparison).encode())
    results.save(directory / "bisect.xml", results.junit_bytes(build_junit(s)))
    return comparison


def verdict_lines(s: Summary, final: Path) -> Sequence[str]:
    """What the command prints at the end: the answer, the steps, where the reports are."""
    first = s.first_bad
    if first is not None:
        head = f"first bad {s.noun}: {first.name}" + (f" ({first.subject})" if first.subject else "")
    else:
        head = f"undecided: the first bad {s.noun} is one of " + ", ".join(c.name for c in s.suspects)
    return [head, f"{len(s.records)} step(s) in {_seconds(s.seconds)} over {len(s.candidates)} candidate(s)",
            f"report: {final / 'bisect.md'}", f"JUnit: {final / 'bisect.xml'}"]

"""Rendering a :class:`~harness.compare.Comparison`, and merging runs.

Three renderings of one comparison, written side by side by :func:`write_reports`:

``compare.xml`` (JUnit, built with junitparser)
    One ``<testsuite>`` per matrix cell, named like the cell and holding the
    cell's testcases under their own names and ``classname`` = cell, so a CI
    server sees the same test identities (and history) as in the runs'
    junit.xml.  Only a regression is a ``<failure type="Regression">`` (its
    message and text carry the base and new messages); every other category is
    a pass or a ``<skipped>`` whose message gives the reason ("still failing
    (known)", "removed", ...).  A CI job reading it turns red on regressions
    only.  Suite properties: ``compare.cell`` (``both``, ``only-in-base``,
    ``only-in-new``), ``compare.<category>`` counts, and one
    ``delta.<metric>`` per metric delta of the cell.
``compare.md``
    Verdict, a count per category, missing and flaky cells, one section per
    category (unchanged passes only counted), then the metric deltas.
``compare.html``
    The same content as a self-contained page: inline CSS, no scripts, no
    external assets (a Content-Security-Policy forbids them), every text
    HTML-escaped; ``cma-harness compare`` adds the base and new memory maps of
    each changed cell and a chart of the metric deltas
    (:func:`harness.htmlreport.compare_sections`).

:func:`merge` combines JUnit files of several runs or hosts into one document.
"""

from __future__ import annotations

import contextlib
import copy
import html
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from junitparser import Failure, JUnitXml, Skipped, TestCase, TestSuite

from harness.cache import sync_dir, write_temp
from harness.compare import (
    CaseChange,
    Category,
    Comparison,
    MetricDelta,
    exit_status,
    junit_file,
    parse_junit,
)
from harness.errors import InputError
from harness.outcome import Status
from harness.results import junit_bytes, update_totals, xml_safe

MAX_ROWS = 200
"""Rows per category in the Markdown and HTML reports; compare.xml always holds every testcase."""
_MAX_CELL_CHARS = 300


# -- JUnit ---------------------------------------------------------------------------------------


def _skip_reason(change: CaseChange, side: str) -> str | None:
    """The ``<skipped>`` message for a change, None when it is rendered as a pass.

    ``side`` is the cell's ``compare.cell`` value (``both``, ``only-in-base``, ``only-in-new``).
    """
    new, base = change.new, change.base
    new_msg = f": {new.message}" if new and new.message else ""
    match change.category:
        case Category.STILL_FAILING:
            return f"still failing (known){new_msg}"
        case Category.NEW_FAILURE:
            return f"new failure, no passing baseline{new_msg}"
        case Category.REMOVED:
            return "removed: " + ("the whole cell is absent" if side == "only-in-base" else "absent") \
                + " in the new run"
        case Category.SKIPPED:
            was = "in both runs" if base and base.outcome is Status.SKIP else "in the new run"
            return f"skipped {was}{new_msg}"
        case Category.NEW_TEST | Category.FLAKY if new and new.outcome is Status.SKIP:
            return f"{change.category.value}, skipped{new_msg}"
    return None


def _regression(change: CaseChange) -> Failure:
    base, new = change.base, change.new
    base_outcome, base_msg = (base.outcome.junit_word, base.message) if base else ("absent", "")
    new_outcome, new_msg, details = ((new.outcome.junit_word, new.message, new.details) if new
                                     else ("absent", change.note, ""))
    failure = Failure(xml_safe(f"regression: {base_outcome} in base, {new_outcome} in new: {new_msg}"),
                      type_="Regression")
    failure.text = xml_safe(f"base ({base_outcome}): {base_msg}\nnew ({new_outcome}): {new_msg}\n\n{details}"
                            .rstrip())
    return failure


def _report_case(change: CaseChange, suite: str, side: str) -> Any:
    case = TestCase(change.name, classname=suite, time=change.new.seconds if change.new else 0.0)
    if change.category is Category.REGRESSION:
        case.result = [_regression(change)]
        return case
    reason = _skip_reason(change, side)
    if reason is not None:
        case.result = [Skipped(xml_safe(reason))]
    else:
        case.system_out = xml_safe(f"{change.category.value}: {change.reason}")
    return case


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def _fmt_change(d: MetricDelta) -> str:
    rel = d.relative
    return f"{d.delta:+.6g} (base 0)" if rel is None else f"{rel * 100:+.1f}%"


def _cell_side(c: Comparison, suite: str) -> str:
    if suite in c.suites_only_in_base:
        return "only-in-base"
    return "only-in-new" if suite in c.suites_only_in_new else "both"


def build_junit_report(c: Comparison) -> JUnitXml:
    """The comparison as a JUnit document: one suite per cell (see the module docstring).

    Counts on every ``<testsuite>`` and the root agree with their children
    (``tests`` = classified keys, ``failures`` = regressions, ``errors`` = 0).
    """
    xml = JUnitXml("cma-harness compare")
    by_suite: dict[str, list[CaseChange]] = {name: [] for name in c.suites}
    for change in c.changes:
        by_suite.setdefault(change.suite, []).append(change)
    for name, changes in by_suite.items():
        suite = TestSuite(name)
        suite.add_property("compare.base", xml_safe(str(c.base)))
        suite.add_property("compare.new", xml_safe(str(c.new)))
        side = _cell_side(c, name)
        suite.add_property("compare.cell", side)
        counts = Counter(ch.category for ch in changes)
        for cat in Category:
            if counts[cat]:
                suite.add_property(f"compare.{cat.value}", str(counts[cat]))
        if name in c.flaky_suites:
            suite.add_property("retry.attempts", str(c.flaky_suites[name] or "?"))
        for d in c.metric_deltas:
            if d.suite == name:
                suite.add_property(f"delta.{d.name}", f"{_fmt(d.base)} -> {_fmt(d.new)} ({_fmt_change(d)})")
        suite.add_testcases([_report_case(ch, name, side) for ch in changes])
        suite.update_statistics()
        xml.add_testsuite(suite)
    xml.update_statistics()
    return xml


# -- Markdown and HTML share one table model -----------------------------------------------------


@dataclass(frozen=True)
class _Table:
    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    css: str = ""
    left_out: int = 0


_TITLES = {
    Category.REGRESSION: "Regressions", Category.FIX: "Fixes", Category.NEW_FAILURE: "New failures",
    Category.NEW_TEST: "New tests", Category.REMOVED: "Removed", Category.STILL_FAILING: "Still failing",
    Category.FLAKY: "Flaky (passed only on retry)", Category.SKIPPED: "Skipped",
}


def _message(change: CaseChange) -> str:
    side = change.base if change.category in (Category.FIX, Category.REMOVED) else change.new
    return side.message if side else ""


def _category_table(c: Comparison, cat: Category) -> _Table:
    changes = c.of(cat)
    rows = tuple((ch.suite, ch.name, ch.base.outcome.junit_word if ch.base else "absent",
                  ch.new.outcome.junit_word if ch.new else "absent", _message(ch))
                 for ch in changes[:MAX_ROWS])
    return _Table(f"{_TITLES[cat]} ({len(changes)})", ("cell", "testcase", "base", "new", "message"),
                  rows, cat.value, max(0, len(changes) - MAX_ROWS))


def _tables(c: Comparison) -> list[_Table]:
    counts = c.counts()
    tables = [_Table("Summary", ("category", "testcases"),
                     tuple((cat.value, str(n)) for cat, n in counts.items()))]
    cells = [(name, "only in base") for name in c.suites_only_in_base]
    cells += [(name, "only in new") for name in c.suites_only_in_new]
    cells += [(name, f"flaky in new (attempts: {n or '?'})") for name, n in c.flaky_suites.items()]
    cells += [(name, "no testcase in new (every base testcase is a regression)") for name in c.lost_suites]
    if cells:
        tables.append(_Table(f"Cells missing or flaky ({len(cells)})", ("cell", "status"), tuple(cells)))
    tables += [_category_table(c, cat) for cat in _TITLES if counts[cat]]
    deltas = tuple((d.suite, d.name, _fmt(d.base), _fmt(d.new), _fmt_change(d)) for d in c.metric_deltas)
    tables.append(_Table(f"Metric deltas beyond {c.tolerance * 100:g}% ({len(deltas)})",
                         ("cell", "metric", "base", "new", "change"), deltas))
    return tables


def _verdict(c: Comparison) -> str:
    n = len(c.regressions)
    head = f"{n} regression{'s' if n != 1 else ''}" if n else "no regressions"
    return f"{head} (exit status {exit_status(c)}); {c.summary()}"


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_CELL_CHARS else text[: _MAX_CELL_CHARS - 1] + "…"


def _md_cell(text: str) -> str:
    return html.escape(_clip(text), quote=False).replace("|", "\\|") or " "


def _md_table(t: _Table) -> list[str]:
    lines = [f"## {html.escape(t.title, quote=False)}", ""]
    if not t.rows:
        return [*lines, "None.", ""]
    lines.append("| " + " | ".join(t.headers) + " |")
    lines.append("|" + "---|" * len(t.headers))
    lines += ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in t.rows]
    if t.left_out:
        lines.append(f"\n… and {t.left_out} more (see compare.xml)")
    return [*lines, ""]


def render_markdown(c: Comparison) -> str:
    """The comparison as Markdown; all message text HTML-escaped, ``|`` escaped in tables."""
    lines = ["# cma-harness compare", "",
             f"- base: {_md_cell(str(c.base))}", f"- new: {_md_cell(str(c.new))}",
             f"- result: **{_md_cell(_verdict(c))}**", ""]
    for table in _tables(c):
        lines += _md_table(table)
    return "\n".join(lines)


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
td { font-family: ui-monospace, monospace; font-size: 0.9em; }
.verdict { font-size: 1.2em; padding: 0.5em; border-radius: 4px; }
.red { background: #fdd; } .green { background: #dfd; }
tr.regression td { background: #fee; } tr.fix td { background: #efe; }
tr.flaky td, tr.new-failure td { background: #ffd; }
.map svg, .chart svg { max-width: 100%; height: auto; }
.sides { display: flex; gap: 1em; flex-wrap: wrap; } .sides > div { flex: 1 1 500px; }
"""


_CSP = ('<meta http-equiv="Content-Security-Policy" '
        'content="default-src \'none\'; style-src \'unsafe-inline\'; img-src data:">\n')
"""No request of any kind leaves the page: no script, no font, no image but inline ones."""


def _html_table(t: _Table) -> str:
    esc = html.escape
    out = [f"<h2>{esc(t.title)}</h2>"]
    if not t.rows:
        return out[0] + "<p>None.</p>"
    out.append("<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in t.headers) + "</tr>")
    row_class = f' class="{esc(t.css)}"' if t.css else ""
    for row in t.rows:
        out.append(f"<tr{row_class}>" + "".join(f"<td>{esc(_clip(v))}</td>" for v in row) + "</tr>")
    out.append("</table>")
    if t.left_out:
        out.append(f"<p>… and {t.left_out} more (see compare.xml)</p>")
    return "\n".join(out)


def render_html(c: Comparison, drawings: str = "") -> str:
    """The comparison as one self-contained HTML page (inline CSS, no scripts, all text escaped).

    ``drawings`` is trusted HTML put after the tables: the memory maps and the
    metric delta chart of :func:`harness.htmlreport.compare_sections`.
    """
    esc = html.escape
    colour = "red" if c.has_regressions else "green"
    body = ["<h1>cma-harness compare</h1>",
            f"<p>base: <code>{esc(str(c.base))}</code><br>new: <code>{esc(str(c.new))}</code></p>",
            f'<p class="verdict {colour}">{esc(_verdict(c))}</p>',
            *(_html_table(t) for t in _tables(c)), drawings]
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n" + _CSP
            + f"<title>cma-harness compare: {esc(_verdict(c))}</title>\n<style>{_CSS}</style>\n</head>\n"
            "<body>\n" + "\n".join(body) + "\n</body>\n</html>\n")


# -- writing -------------------------------------------------------------------------------------


def _write_all(contents: dict[Path, bytes]) -> None:
    """Write every file under a temporary name (fsynced), then rename them all; clean up on failure.

    ``contents`` maps a final path to its bytes.  Either every file is
    replaced by its complete new version, or (when writing fails) none is,
    and the directories made for them are removed again.

    Raises:
        InputError: a directory or file cannot be written (ENOSPC, EACCES, a
            file in the way...); the message names the file.
    """
    pending: dict[Path, Path] = {}
    made: list[Path] = []
    current = next(iter(contents), Path("report"))
    try:
        for current, data in contents.items():
            missing = [d for d in (current.parent, *current.parent.parents) if not os.path.lexists(d)]
            for directory in reversed(missing):
                directory.mkdir()
                made.append(directory)
            pending[current] = write_temp(current, data)
        for current, tmp in pending.items():
            os.replace(tmp, current)
        made.clear()
        for directory in {final.parent for final in pending}:
            sync_dir(directory)
    except OSError as exc:
        raise InputError(f"cannot write {current}: {exc.strerror or exc}") from exc
    finally:
        for tmp in pending.values():
            tmp.unlink(missing_ok=True)
        for directory in reversed(made):
            with contextlib.suppress(OSError):
                directory.rmdir()


def write_reports(c: Comparison, out_dir: Path, drawings: str = "") -> dict[str, Path]:
    """Write ``compare.xml``, ``compare.md`` and ``compare.html`` into ``out_dir`` (created).

    ``drawings``: see :func:`render_html`.

    Each file is written under a hidden temporary name and renamed once all
    three are complete, so no half-written report is left behind.

    Returns:
        ``{"xml": path, "md": path, "html": path}``.

    Raises:
        InputError: ``out_dir`` cannot be created or written.
    """
    paths = {"xml": out_dir / "compare.xml", "md": out_dir / "compare.md", "html": out_dir / "compare.html"}
    xml = build_junit_report(c)
    markdown, page = render_markdown(c), render_html(c, drawings)
    _write_all({paths["xml"]: junit_bytes(xml), paths["md"]: markdown.encode("utf-8"),
                paths["html"]: page.encode("utf-8")})
    return paths


# -- merging -------------------------------------------------------------------------------------


def _inputs(paths: Sequence[Path]) -> list[Path]:
    if not paths:
        raise InputError("merge: no input runs given")
    files = [junit_file(p) for p in paths]
    seen: dict[Path, Path] = {}
    for given, file in zip(paths, files, strict=True):
        if file.resolve() in seen:
            raise InputError(f"merge: {given} is the same file as {seen[file.resolve()]}")
        seen[file.resolve()] = given
    return files


def _suites_of(file: Path) -> list[Any]:
    """The testsuites of one merge input.

    Raises:
        InputError: see :func:`parse_junit`; or the file holds no testcase.
    """
    suites = list(parse_junit(file))
    if not any(True for suite in suites for _ in suite):
        raise InputError(f"{file}: holds no testcases (an empty or aborted run?); refusing to merge it")
    return suites


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)  # hard links, bind mounts
    except OSError:
        return False


def _refuse_input_as_output(paths: Sequence[Path], out: Path) -> None:
    """Refuse an output that is one of the inputs (or an input results directory).

    Raises:
        InputError: ``out`` resolves to an input file, to the junit.xml of an
            input results directory, or to that directory itself; or see
            :func:`harness.compare.junit_file`.
    """
    for given in paths:
        file = junit_file(given)
        if _same_file(out, file) or (given.is_dir() and _same_file(out, given)):
            raise InputError(f"merge: the output {out} is the input {file}; "
                             "writing it would destroy that input (choose another -o)")


def _unique_names(suites: list[tuple[Path, Any]]) -> list[str]:
    """A distinct name per suite: kept when unique, else ``name@hostname``, then ``#n``."""
    by_name = Counter(str(s.name) for _, s in suites)
    by_host = Counter((str(s.name), s.hostname or "unknown-host") for _, s in suites)
    numbered: Counter[tuple[str, str]] = Counter()
    names: list[str] = []
    for _, s in suites:
        cell, host = str(s.name), str(s.hostname or "unknown-host")
        name = cell
        if by_name[cell] > 1:
            numbered[(cell, host)] += 1
            name = f"{cell}@{host}" + (f"#{numbered[(cell, host)]}" if by_host[(cell, host)] > 1 else "")
        while name in names:  # only when an input already used a name of this form
            name += "'"
        names.append(name)
    return names


def merge(paths: Sequence[Path]) -> JUnitXml:
    """One JUnit document holding every testsuite of several runs (results dirs or junit.xml files).

    A suite name found in only one input is kept as is, so merging the disjoint
    matrices of several hosts looks like one run.  A name found in several
    inputs is renamed in *every* input to ``<cell>@<hostname>`` (plus ``#1``,
    ``#2``... when the hostname repeats too), its testcases' ``classname`` follows,
    and ``merge.original_name`` keeps the cell name: results of two hosts are never
    folded into one suite, and none silently keeps the plain name.  Every suite
    gets ``merge.source`` (the file it came from).  Counts and times of every
    suite and of the root agree with their children.

    Raises:
        InputError: no paths, a path given twice, or any input missing, empty,
            truncated or corrupt (see :func:`harness.compare.load_run`), or
            holding no testcase (the message names the file).
    """
    suites = [(file, suite) for file in _inputs(paths) for suite in _suites_of(file)]
    merged = JUnitXml("cma-harness merged")
    for (file, original), name in zip(suites, _unique_names(suites), strict=True):
        suite = copy.deepcopy(original)
        if name != original.name:
            suite.add_property("merge.original_name", str(original.name))
            for case in suite.iterchildren(TestCase):
                if case.classname == original.name:
                    case.classname = name
            suite.name = name
        suite.add_property("merge.source", xml_safe(str(file)))
        merged.add_testsuite(suite)
    update_totals(merged)
    return merged


def merge_paths(paths: Sequence[Path], out: Path) -> None:
    """:func:`merge` ``paths`` and write the document to ``out`` (temporary name, fsync, rename).

    Raises:
        InputError: see :func:`merge`; ``out`` is one of the inputs (see
            :func:`_refuse_input_as_output`); ``out`` cannot be written.
    """
    _refuse_input_as_output(paths, out)
    xml = merge(paths)
    _write_all({out: junit_bytes(xml)})

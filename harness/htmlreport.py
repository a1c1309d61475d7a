"""``report.html``: a run as a picture, and the drawings ``compare.html`` adds.

:func:`render_report` turns a :class:`~harness.reportmodel.RunView` into one
self-contained page (Jinja2 template ``templates/report.html.j2``, autoescaped;
charts as inline SVG from :mod:`harness.figures`; a Content-Security-Policy
that allows no network request, no script): the grid of boards × command
lines, then per cell its memory map (:mod:`harness.memview`), the oracle's
prediction next to the areas the kernel reserved, its failed testcases, its
suites' counters and latencies, how to run or judge it again; then latency
charts across cells, boot times and the run's provenance.
:func:`compare_sections` renders what ``compare.html`` shows beyond its
tables: base and new memory maps side by side for each changed cell, and a
chart of the metric deltas.  :func:`write_report` writes ``report.html``
atomically; ``cma-harness report DIR`` and the end of every run call it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from harness.cache import atomic_write
from harness.compare import Category, Comparison, MetricDelta
from harness.errors import EnvironmentProblem, InputError
from harness.figures import bar_chart, human_size, memory_map_svg, range_chart
from harness.memview import map_figure
from harness.reportmodel import (
    CellState,
    CellView,
    RunView,
    load_view,
    rejudge_command,
    relative_link,
    reproduce_command,
)

REPORT_NAME = "report.html"
MAX_DELTA_BARS = 40
"""Metric deltas drawn in compare.html's chart (the largest relative changes); its table has all."""
MAX_COMPARED_MAPS = 24
"""Changed cells whose base and new memory maps compare.html draws side by side."""
_UNCHANGED = (Category.UNCHANGED_PASS, Category.SKIPPED)
_SIDE_WIDTH = 7.5  # inches: a memory map drawn beside another

_ENV = Environment(loader=PackageLoader("harness", "templates"), autoescape=select_autoescape(["j2"]),
                   undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
_ENV.filters["size"] = human_size


@dataclass(frozen=True)
class CellPage:
    """What the template shows of one cell (already drawn and linked)."""

    view: CellView
    map_svg: Markup
    prediction: list[tuple[str, str]]
    reproduce: str
    rejudge: str
    log_href: str


def _prediction_rows(cell: CellView) -> list[tuple[str, str]]:
    """``(what, value)`` rows: the oracle's prediction or the matrix's expectation, and the kernel's areas."""
    rows: list[tuple[str, str]] = []
    exp = cell.job.expectation if cell.job is not None else None
    p = exp.prediction if exp is not None else None
    if p is not None:
        where = f"at {p.base:#x}" if p.base is not None else f"in {p.lo:#x}-{p.hi:#x}"
        rows.append(("oracle", f"{p.outcome} {human_size(p.size)}"
                     + (f" {where}" if p.outcome == "reserved" else "")))
        rows.append(("rule", p.reason))
    elif exp is not None and exp.expect is not None:
        rows.append(("expected (matrix)", exp.expect.describe()))
    elif exp is not None and exp.error:
        rows.append(("oracle", exp.error))
    rows += [(f"kernel: {a.name}", f"{a.base:#x} {human_size(a.size)}") for a in cell.areas]
    if cell.properties.get("cma.failed_mib"):
        rows.append(("kernel", f"failed to reserve {cell.properties['cma.failed_mib']} MiB"))
    return rows


def _cell_page(run: RunView, cell: CellView, page_dir: Path, gid: str) -> CellPage:
    return CellPage(cell, Markup(memory_map_svg(map_figure(cell, gid))),  # noqa: S704 - matplotlib's SVG
                    _prediction_rows(cell), reproduce_command(run, cell), rejudge_command(cell),
                    relative_link(cell.log, page_dir) if cell.log is not None else "")


def _latency_charts(run: RunView) -> list[tuple[str, Markup]]:
    """One chart per suite path: min/median/max latency (µs) of each cell that ran it."""
    by_suite: dict[str, list[tuple[str, dict[str, int]]]] = {}
    for cell in run.cells:
        for suite in cell.suites:
            if {"min", "median", "max"} <= suite.latency_us.keys():
                by_suite.setdefault(suite.path, []).append((cell.name, suite.latency_us))
    charts = []
    for i, (path, points) in enumerate(by_suite.items()):
        svg = range_chart(f"latency-{i}", f"{path}: allocation latency (min / median / max)",
                          [name for name, _ in points], [p["min"] for _, p in points],
                          [p["median"] for _, p in points], [p["max"] for _, p in points], "µs")
        charts.append((path, Markup(svg)))  # noqa: S704 - matplotlib's SVG
    return charts


def _boot_chart(run: RunView) -> Markup | None:
    """A bar per cell: QEMU start to the shell's first answer (seconds); None when no cell booted."""
    timed = [(c.name, c.boot_seconds) for c in run.cells if c.boot_seconds is not None]
    if not timed:
        return None
    return Markup(bar_chart("boot-seconds", "boot time: QEMU start to the shell's first answer",  # noqa: S704
                            [n for n, _ in timed], [s or 0.0 for _, s in timed], "seconds"))


def _kernel_rows(board: str, kernel: dict[str, Any]) -> list[tuple[str, str]]:
    """run.json's ``kernels.<board>``: release and source, config, series and each patch's hash."""
    fragments = ", ".join(kernel.get("fragments") or ())
    rows = [(f"{board}: kernel", f"{kernel.get('release', '?')} from {kernel.get('source', '?')}"),
            (f"{board}: config", f"{kernel.get('defconfig', '?')} + {fragments} "
                                 f"(sha256:{str(kernel.get('config_hash'))[:12]})"),
            (f"{board}: series", f"sha256:{str(kernel.get('series_hash'))[:12]}")]
    rows += [(f"{board}: patch", f"{p.get('name')} sha256:{str(p.get('sha256'))[:12]}")
             for p in kernel.get("patches") or () if isinstance(p, dict)]
    return rows


def _provenance(run: RunView) -> list[tuple[str, str]]:
    """``(key, value)`` rows from run.json, or from the first cell's properties for a JUnit file."""
    info = run.info
    keys = ("run_id", "timestamp", "host", "harness_version", "toolchain", "qemu")
    rows: list[tuple[str, str]] = [(k, str(info[k])) for k in keys if k in info]
    for board, kernel in (info.get("kernels") or {}).items():
        if isinstance(kernel, dict):
            rows += _kernel_rows(board, kernel)
    if not rows and run.cells:
        props = run.cells[0].properties
        rows = [(str(k), props[k]) for k in ("kernel.release", "kernel.source", "series.hash", "config.hash",
                                        "toolchain", "qemu") if k in props]
    return rows


def render_report(run: RunView, page_dir: Path) -> str:
    """The report page of ``run``; links (logs) are relative to ``page_dir``, where it will be written."""
    states = Counter(c.state for c in run.cells)
    cells = [_cell_page(run, c, page_dir, f"{c.anchor}-map") for c in run.cells]
    title = str(run.info.get("run_id") or run.source)
    return _ENV.get_template("report.html.j2").render(
        title=title, run=run, cells=cells, states=[(s, states[s]) for s in CellState if states[s]],
        all_states=list(CellState), latency=_latency_charts(run), boot=_boot_chart(run),
        provenance=_provenance(run), source=str(run.source))


def write_report(path: Path, out: Path | None = None) -> Path:
    """Render the run at ``path`` (results directory, junit.xml, merge output) to ``report.html``.

    ``out`` defaults to ``<results dir>/report.html``, or ``report.html`` beside
    a JUnit file.  Written atomically: complete or absent.

    Returns:
        The path written.

    Raises:
        InputError: the run cannot be read (see :func:`harness.reportmodel.load_view`).
        EnvironmentProblem: the page cannot be written.
    """
    run = load_view(path)
    target = out or (run.run_dir or run.source.parent) / REPORT_NAME
    page = render_report(run, target.parent)
    try:
        atomic_write(target, page.encode("utf-8"))
    except OSError as exc:
        raise EnvironmentProblem(f"cannot write {target}: {exc.strerror or exc}") from exc
    return target


# -- compare.html --------------------------------------------------------------------------------


def _changed_cells(c: Comparison) -> list[str]:
    """Cells of both runs with a testcase change (not unchanged or skipped) or a metric delta.

    A cell only one run has is listed by compare's tables; there is nothing to set beside it.
    """
    changed = {ch.suite for ch in c.changes if ch.category not in _UNCHANGED}
    changed |= {d.suite for d in c.metric_deltas}
    one_sided = {*c.suites_only_in_base, *c.suites_only_in_new}
    return [s for s in c.suites if s in changed and s not in one_sided]


def _side_by_side(name: str, runs: Iterable[tuple[str, RunView | None]]) -> list[tuple[str, Markup]]:
    out = []
    for side, run in runs:
        cell = next((x for x in run.cells if x.name == name), None) if run is not None else None
        if cell is not None:
            drawing = map_figure(cell, f"{side}-{cell.anchor}-map", _SIDE_WIDTH)
            out.append((side, Markup(memory_map_svg(drawing))))  # noqa: S704 - matplotlib's SVG
    return out


def _delta_chart(deltas: tuple[MetricDelta, ...]) -> Markup | None:
    relative = [(d, r) for d in deltas if (r := d.relative) is not None]
    relative.sort(key=lambda x: -abs(x[1]))
    shown = relative[:MAX_DELTA_BARS]
    if not shown:
        return None
    return Markup(bar_chart(  # noqa: S704 - matplotlib's SVG
        "metric-deltas", "metric deltas beyond tolerance: (new - base) / |base|",
        [f"{d.suite} · {d.name}" for d, _ in shown], [100 * r for _, r in shown], "% change",
        ["#e15759" if r > 0 else "#4e79a7" for _, r in shown]))


def _view_or_none(path: Path) -> RunView | None:
    try:
        return load_view(path)
    except InputError:
        return None


def compare_sections(c: Comparison) -> str:
    """The HTML compare.html adds after its tables: memory maps of changed cells, the delta chart.

    Base and new are read again as report views (:func:`load_view`); a side
    that cannot be read (an empty new run) is left out of the drawings.
    """
    base, new = _view_or_none(c.base), _view_or_none(c.new)
    changed = _changed_cells(c)
    sides = (("base", base), ("new", new))
    maps = [(name, _side_by_side(name, sides)) for name in changed[:MAX_COMPARED_MAPS]]
    return _ENV.get_template("compare_sections.html.j2").render(
        maps=maps, left_out=max(0, len(changed) - MAX_COMPARED_MAPS),
        deltas=_delta_chart(c.metric_deltas), ndeltas=len(c.metric_deltas))


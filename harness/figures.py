"""Charts as inline SVG, drawn with matplotlib: memory maps, latencies, bars.

Every function takes plain data and returns an ``<svg>`` element as text, ready
to be put inside an HTML page (no XML prolog, no external reference: text stays
``<text>`` so a browser and a test can read it).  Figures are made with
matplotlib's object API (:class:`matplotlib.figure.Figure`), never pyplot's
global state.  Elements a test or a page needs to find carry an ``id``
(matplotlib's ``gid``): each bar of a memory map is ``<gid>``, its label
``<gid>-label``, the plotting area ``<figure gid>-axes``.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MultipleLocator

matplotlib.use("Agg")  # no display; SVG is written by savefig(format="svg")

_MPL_IDS = re.compile(r' id="(?:figure|axes|patch|line2d|text|xtick|ytick|matplotlib\.axis|legend'
                      r'|PolyCollection|LineCollection|errorbar|BarContainer|barh?)_\d+"')
"""The numbered ids matplotlib gives every element: the same in every figure, so dropped."""
_BAR_LINES = 1.7  # a bar's height, in text lines
_LINE_INCHES = 0.125  # a 7-point text line
_CHAR_INCHES = 0.06  # one 7-point character of DejaVu Sans, a little wide
_MAP_MARGINS = (1.2, 0.45, 0.05, 0.5)  # left (lane names), right, top, bottom (ticks, axis label)
_MIN_WIDTH = 0.006  # of the span: the narrowest a memory-map bar is drawn (a 16 KiB dtb in 1 GiB)
_STYLES: dict[str, dict[str, object]] = {
    "ram": {"facecolor": "#e9e9e9", "edgecolor": "#8a8a8a"},
    "memory": {"facecolor": "#cfe3cf", "edgecolor": "#6a8f6a"},
    "kernel": {"facecolor": "#4e79a7", "edgecolor": "#2b4a6f"},
    "pgdir": {"facecolor": "#59a14f", "edgecolor": "#356b2e"},
    "initrd": {"facecolor": "#f28e2b", "edgecolor": "#a55c12"},
    "dtb": {"facecolor": "#76b7b2", "edgecolor": "#3f7d78"},
    "memreserve": {"facecolor": "#bab0ac", "edgecolor": "#6f6460"},
    "reserved-memory": {"facecolor": "#b07aa1", "edgecolor": "#6e4563"},
    "cma": {"facecolor": "#e15759", "edgecolor": "#8e1f21"},
    "cma-other": {"facecolor": "#ff9da7", "edgecolor": "#b3505c"},
    "predicted": {"facecolor": "none", "edgecolor": "#8e1f21", "hatch": "////", "linestyle": "--"},
    "predicted-range": {"facecolor": "#fbe3e3", "edgecolor": "#c98a8b", "hatch": "..", "linestyle": ":"},
    "overlay": {"facecolor": "none", "edgecolor": "#222222", "linestyle": "--", "linewidth": 1.2},
}
STYLES = tuple(_STYLES)
"""The bar styles a :class:`Bar` may name."""


@dataclass(frozen=True)
class Bar:
    """One labelled range on a memory map: ``base`` (physical address) and ``size`` in bytes.

    ``lane`` indexes :attr:`MapFigure.lanes`; ``style`` is one of :data:`STYLES`;
    ``gid`` the SVG id of the bar ("" for none); a bar with no ``label`` is drawn
    without one (an outline laid over other bars).
    """

    lane: int
    label: str
    base: int
    size: int
    style: str
    gid: str = ""


@dataclass(frozen=True)
class Marker:
    """A vertical line across a memory map at physical address ``address`` (bytes)."""

    address: int
    label: str
    gid: str = ""


@dataclass(frozen=True)
class MapFigure:
    """A memory map: lanes of bars over the physical address range ``[lo, hi)`` (bytes).

    ``width`` is the drawing's width in inches (its text stays 7 and 8 points).
    """

    gid: str
    lanes: tuple[str, ...]
    bars: tuple[Bar, ...]
    markers: tuple[Marker, ...]
    lo: int
    hi: int
    width: float = 10.0


def human_size(size: int) -> str:
    """``size`` bytes as the kernel prints sizes: ``64 MiB``, ``16 KiB``, ``1536 B``."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift and size % (1 << shift) == 0:
            return f"{size >> shift} {unit}"
    if size >= 1 << 20:
        return f"{size / (1 << 20):.1f} MiB"
    return f"{size / 1024:.1f} KiB" if size >= 1024 else f"{size} B"


def _figure(width: float, height: float, margins: tuple[float, float, float, float]) -> Figure:
    """A ``width`` × ``height`` inch figure whose axes leave ``(left, right, top, bottom)`` inches.

    Fixed margins instead of ``bbox_inches="tight"``, which draws every figure twice.
    """
    left, right, top, bottom = margins
    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(left=left / width, right=1 - right / width, top=1 - top / height,
                        bottom=bottom / height)
    return fig


def _label_inches(labels: Sequence[str]) -> float:
    """About how wide the longest of ``labels`` is at 7 points (inches)."""
    return 0.062 * max((len(label) for label in labels), default=0)


def _svg(fig: Figure, salt: str) -> str:
    """``fig`` as an inline ``<svg>`` element (text kept as text, ids salted per figure)."""
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    return _MPL_IDS.sub("", text[text.index("<svg"):])


def _address_step(span: int) -> int:
    """A power-of-two tick step giving 4 to 8 ticks over ``span`` bytes."""
    return 1 << max(12, math.ceil(math.log2(max(span, 1) / 8)))


def _hex(value: float, _pos: object = None) -> str:
    return f"{int(value):#010x}"


@dataclass(frozen=True)
class _Placed:
    """A bar laid out: its x extent and lane centre (data units), its label's slot and alignment."""

    bar: Bar
    left: float
    width: float
    slot: int  # 0 above the bar, 1 below, 2 a line higher above, 3 a line lower below...
    right_aligned: bool


def _label_extent(bar: Bar, left: float, width: float, fig: MapFigure) -> tuple[float, float, bool]:
    """Where a bar's label lies along x: from its left edge, or ending at its right edge near the end."""
    axes_inches = fig.width - _MAP_MARGINS[0] - _MAP_MARGINS[1]
    chars = (len(bar.label) + 1) * _CHAR_INCHES / axes_inches * (fig.hi - fig.lo)
    if left + chars > fig.hi:
        return left + width - chars, left + width, True
    return left, left + chars, False


def _layout_lane(bars: list[Bar], fig: MapFigure) -> list[_Placed]:
    """Give every label of one lane the first slot (above, below, higher, lower...) it does not overlap in."""
    taken: dict[int, list[tuple[float, float]]] = {}
    out = []
    span = fig.hi - fig.lo
    for bar in sorted(bars, key=lambda b: b.base):
        left = min(max(bar.base, fig.lo), fig.hi)
        width = max(min(bar.base + bar.size, fig.hi) - left, span * _MIN_WIDTH)
        if not bar.label:
            out.append(_Placed(bar, left, width, -1, False))
            continue
        x0, x1, right = _label_extent(bar, left, width, fig)
        slot = 0
        while any(x0 < e and s < x1 for s, e in taken.get(slot, [])):
            slot += 1
        taken.setdefault(slot, []).append((x0, x1))
        out.append(_Placed(bar, left, width, slot, right))
    return out


def _draw(ax: Axes, placed: _Placed, centre: float) -> None:
    """Draw one laid-out bar at lane centre ``centre`` (y, in text lines) with its label."""
    bar = placed.bar
    [rect] = ax.barh(centre, placed.width, left=placed.left, height=_BAR_LINES,
                     **_STYLES[bar.style])  # type: ignore[arg-type]
    if bar.gid:
        rect.set_gid(bar.gid)
    if placed.slot < 0:
        return
    level, below = divmod(placed.slot, 2)
    edge = _BAR_LINES / 2 + 0.1 + level
    label = ax.text(placed.left + placed.width if placed.right_aligned else placed.left,
                    centre + edge if below else centre - edge, bar.label, fontsize=7,
                    va="top" if below else "bottom", ha="right" if placed.right_aligned else "left")
    if bar.gid:
        label.set_gid(f"{bar.gid}-label")


def _axes(fig_data: MapFigure, height_lines: float) -> tuple[Figure, Axes]:
    """A figure tall enough for ``height_lines`` text lines, its x axis in hex addresses."""
    fig = _figure(fig_data.width, height_lines * _LINE_INCHES + 0.55, _MAP_MARGINS)
    ax = fig.add_subplot()
    ax.patch.set_gid(f"{fig_data.gid}-axes")
    ax.set_xlim(fig_data.lo, fig_data.hi)
    ax.set_ylim(height_lines, 0)
    ax.xaxis.set_major_locator(MultipleLocator(_address_step(fig_data.hi - fig_data.lo)))
    ax.xaxis.set_major_formatter(FuncFormatter(_hex))
    ax.tick_params(axis="x", labelsize=7)
    ax.set_xlabel("physical address", fontsize=8)
    ax.grid(axis="x", color="#dddddd", linewidth=0.5)
    ax.set_axisbelow(True)
    return fig, ax


def memory_map_svg(fig_data: MapFigure) -> str:
    """Draw a memory map: one row per lane (first on top), addresses along the x axis.

    A bar narrower than 0.6 % of the span is widened to it so it stays visible.
    Each label takes the first place next to its bar where it overlaps no other
    label of the lane (above, below, a line further above...), and each lane is
    as tall as its labels need.  Returns an ``<svg>`` element; the plotting
    area has the id ``<gid>-axes``.
    """
    lanes = [_layout_lane([b for b in fig_data.bars if b.lane == i], fig_data)
             for i in range(len(fig_data.lanes))]
    centres, cursor = [], 1.2  # a line on top for the markers' labels
    for placed in lanes:
        above = max((p.slot // 2 + 1 for p in placed if p.slot % 2 == 0), default=0)
        below = max((p.slot // 2 + 1 for p in placed if p.slot % 2 == 1), default=0)
        centres.append(cursor + above + _BAR_LINES / 2 + 0.1)
        cursor = centres[-1] + _BAR_LINES / 2 + 0.1 + below + 0.5
    fig, ax = _axes(fig_data, cursor)
    ax.set_yticks(centres, fig_data.lanes, fontsize=8)
    for placed, centre in zip(lanes, centres, strict=True):
        for p in placed:
            _draw(ax, p, centre)
    for marker in fig_data.markers:
        if fig_data.lo <= marker.address <= fig_data.hi:
            line = ax.axvline(marker.address, color="#333333", linestyle="--", linewidth=0.9)
            right = marker.address > fig_data.lo + 0.7 * (fig_data.hi - fig_data.lo)
            text = ax.text(marker.address, 0.1, f"{marker.label} " if right else f" {marker.label}",
                           fontsize=7, va="top", ha="right" if right else "left")
            if marker.gid:
                line.set_gid(marker.gid)
                text.set_gid(f"{marker.gid}-label")
    return _svg(fig, fig_data.gid)


def range_chart(gid: str, title: str, labels: Sequence[str], low: Sequence[float],
                mid: Sequence[float], high: Sequence[float], unit: str, log: bool = True) -> str:
    """One point per label at ``mid`` with a bar from ``low`` to ``high`` (e.g. latency min/median/max).

    ``unit`` names the y axis (e.g. ``µs``); ``log`` uses a logarithmic y axis
    (latencies span decades).  Returns an ``<svg>`` element.
    """
    bottom = 0.35 + 0.87 * _label_inches(labels)  # labels turned by 60 degrees
    fig = _figure(max(4.0, 0.32 * len(labels) + 1.6), 2.6 + bottom, (0.8, 0.2, 0.35, bottom))
    ax = fig.add_subplot()
    ax.patch.set_gid(f"{gid}-axes")
    xs = range(len(labels))
    yerr = [[m - lo for m, lo in zip(mid, low, strict=True)], [h - m for m, h in zip(mid, high, strict=True)]]
    ax.errorbar(xs, mid, yerr=yerr, fmt="o", color="#4e79a7", ecolor="#9bb6d6", capsize=3, markersize=4)
    if log and min(low, default=1) > 0:
        ax.set_yscale("log")
    ax.set_xticks(list(xs), labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel(unit, fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.grid(axis="y", color="#dddddd", linewidth=0.5)
    return _svg(fig, gid)


def bar_chart(gid: str, title: str, labels: Sequence[str], values: Sequence[float], unit: str,
              colours: Sequence[str] | None = None) -> str:
    """Horizontal bars, one per label, in the given order (first on top).  Returns an ``<svg>``.

    Raises:
        ValueError: a value is not finite (NaN, infinity).
    """
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"bar_chart {gid}: values must be finite")
    left = _label_inches(labels) + 0.25
    fig = _figure(left + 6, 0.22 * len(labels) + 1.1, (left, 0.3, 0.35, 0.5))
    ax = fig.add_subplot()
    ax.patch.set_gid(f"{gid}-axes")
    ys = range(len(labels))
    ax.barh(list(ys), values, color=list(colours) if colours else "#4e79a7", height=0.7)
    ax.set_yticks(list(ys), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(unit, fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.axvline(0, color="#333333", linewidth=0.6)
    ax.grid(axis="x", color="#dddddd", linewidth=0.5)
    return _svg(fig, gid)

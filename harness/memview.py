"""What a cell's memory map drawing shows, from facts the harness already has.

:func:`map_figure` lays out one :class:`~harness.figures.MapFigure` per cell:

* ``RAM``: the board's banks (the cell job's board, or the oracle's memory map);
* ``memblock.memory``: what the kernel kept of them, when ``mem=`` or "Ignoring
  RAM" changed it (the oracle's :class:`~harness.oracle.MemoryMap`);
* ``boot files``: the kernel image, initrd and dtb where QEMU's loader put them;
* ``reserved-memory``: the dtb's ``/reserved-memory`` regions and ``/memreserve/``;
* ``CMA (kernel)``: the CMA areas cma-dev listed (``area.<name>.*`` properties,
  the same facts the checks judged), or the boot log's default area when
  cma-dev never ran;
* ``CMA (oracle)``: where the oracle says the default area must be: its exact
  base, or the range it may land in, and the DT CMA pools it predicts; each
  exact placement is also laid over the kernel's lane as a dashed outline, so
  a kernel area that landed elsewhere shows at a glance;

and a line at ``arm_lowmem_limit`` (lowmem below, highmem above).  Lanes with
nothing to show are left out.  All addresses physical, in bytes.
"""

from __future__ import annotations

from dataclasses import replace

from harness.figures import Bar, MapFigure, Marker, human_size
from harness.oracle import MapRegion, MemoryMap, Prediction, RegionKind
from harness.reportmodel import CellView

_ALIGN = 1 << 24  # a map without RAM facts is widened to 16 MiB boundaries
_DEFAULT_AREA = "reserved"  # the default CMA area's name (mm/cma.c names it "reserved")


def _label(name: str, base: int, size: int) -> str:
    return f"{name} {base:#x} {human_size(size)}"


def _memory(cell: CellView) -> MemoryMap | None:
    return cell.job.expectation.memory if cell.job is not None else None


def _prediction(cell: CellView) -> Prediction | None:
    return cell.job.expectation.prediction if cell.job is not None else None


def _ram(cell: CellView) -> tuple[MapRegion, ...]:
    memory = _memory(cell)
    if memory is not None:
        return memory.ram
    if cell.job is not None:
        return tuple(MapRegion(RegionKind.RAM, f"bank {i}", b.base, b.size)
                     for i, b in enumerate(cell.job.board.ram))
    return ()


def _bar(name: str, base: int, size: int, style: str, gid: str, label: str | None = None) -> Bar:
    """A bar for lane 0 (its lane is set when lanes are known), labelled ``name base size``."""
    return Bar(0, _label(name, base, size) if label is None else label, base, size, style, gid)


def _kernel_areas(cell: CellView, gid: str) -> list[Bar]:
    """The areas the kernel reserved: cma-dev's list, else the boot log's default area."""
    out = [_bar(a.name, a.base, a.size, "cma" if a.name == _DEFAULT_AREA else "cma-other",
                f"{gid}-cma-{a.name}") for a in cell.areas]
    base, mib = cell.properties.get("cma.base", ""), cell.properties.get("cma.reserved_mib", "")
    if not out and base and mib.isdigit():
        out.append(_bar("reserved (boot log)", int(base, 16), int(mib) << 20, "cma",
                        f"{gid}-cma-{_DEFAULT_AREA}"))
    return out


def _oracle_bars(prediction: Prediction, gid: str) -> list[Bar]:
    """The oracle's default area (exact, or the range it may land in) and its DT CMA pools."""
    out = []
    if prediction.outcome == "reserved" and prediction.base is not None:
        out.append(_bar("predicted", prediction.base, prediction.size, "predicted",
                        f"{gid}-oracle-{_DEFAULT_AREA}"))
    elif prediction.outcome == "reserved":
        out.append(_bar("", prediction.lo, prediction.hi - prediction.lo, "predicted-range",
                        f"{gid}-oracle-{_DEFAULT_AREA}", f"predicted {human_size(prediction.size)} in "
                                                         f"{prediction.lo:#x}-{prediction.hi:#x}"))
    out += [_bar(f"{p.name} (predicted)", p.base, p.size, "predicted", f"{gid}-oracle-{p.name}")
            for p in prediction.dt_pools]
    return out


def _lanes(cell: CellView, gid: str) -> list[tuple[str, list[Bar]]]:
    """Every lane's name and bars (all in lane 0 yet), before empty lanes are dropped."""
    memory, prediction = _memory(cell), _prediction(cell)
    ram = [_bar("RAM", r.base, r.size, "ram", f"{gid}-ram-{i}") for i, r in enumerate(_ram(cell))]
    kept = []
    if memory is not None and [(m.base, m.size) for m in memory.memory] != [(r.base, r.size)
                                                                          for r in memory.ram]:
        kept = [_bar("memory", m.base, m.size, "memory", "") for m in memory.memory]
    placed = memory.placed if memory is not None else ()
    boot = [_bar(r.name, r.base, r.size, r.kind.value, f"{gid}-{r.kind.value}",
                 _label(r.name, r.base, r.size) + (" (disabled)" if r.detail else "")) for r in placed
            if r.kind in (RegionKind.KERNEL, RegionKind.INITRD, RegionKind.DTB)]
    dt = [_bar(r.name, r.base, r.size, r.kind.value, f"{gid}-dt-{r.name}")
          for r in placed if r.kind in (RegionKind.RESERVED_MEMORY, RegionKind.MEMRESERVE)]
    oracle = _oracle_bars(prediction, gid) if prediction is not None else []
    overlay = [replace(b, label="", style="overlay", gid=f"{b.gid}-overlay") for b in oracle
               if b.style == "predicted"]
    return [("RAM", ram), ("memblock.memory", kept), ("boot files", boot), ("reserved-memory", dt),
            ("CMA (kernel)", _kernel_areas(cell, gid) + overlay), ("CMA (oracle)", oracle)]


def _span(bars: list[Bar], ram: tuple[MapRegion, ...]) -> tuple[int, int]:
    """The address range drawn: the RAM banks and every placed range (a DT region outside RAM
    too), not an oracle range (it may reach down to 0); 16 MiB boundaries when RAM is unknown."""
    fixed = [(b.base, b.base + b.size) for b in bars if b.style != "predicted-range"]
    fixed += [(r.base, r.end) for r in ram]
    fixed = fixed or [(b.base, b.base + b.size) for b in bars]
    if not fixed:
        return 0, _ALIGN
    lo, hi = min(s for s, _ in fixed), max(e for _, e in fixed)
    if ram:
        return lo, hi
    lo, hi = lo // _ALIGN * _ALIGN, -(-hi // _ALIGN) * _ALIGN
    return lo, max(hi, lo + _ALIGN)


def map_figure(cell: CellView, gid: str, width: float = 10.0) -> MapFigure:
    """The memory map drawing of ``cell``, ``width`` inches wide; ``gid`` prefixes every SVG id in it.

    Ids: ``<gid>-cma-<area>`` (the kernel's areas), ``<gid>-oracle-reserved``
    (the oracle's default area), ``<gid>-kernel``/``-initrd``/``-dtb``,
    ``<gid>-dt-<node>``, ``<gid>-ram-<i>``, ``<gid>-lowmem`` (the lowmem line).
    """
    lanes = [(name, bars) for name, bars in _lanes(cell, gid) if bars or name.startswith("CMA")]
    bars = [replace(bar, lane=i) for i, (_, items) in enumerate(lanes) for bar in items]
    ram = _ram(cell)
    lo, hi = _span(bars, ram)
    memory = _memory(cell)
    markers: tuple[Marker, ...] = ()
    if memory is not None:
        markers = (Marker(memory.lowmem_limit, f"lowmem | highmem {memory.lowmem_limit:#x}",
                          f"{gid}-lowmem"),)
    return MapFigure(gid, tuple(name for name, _ in lanes), tuple(bars), markers, lo, hi, width)

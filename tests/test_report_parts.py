"""The report's parts without a run: the oracle's memory map, cell states, properties read back,
the memory map drawing and the charts (issue 15)."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from harness import oracle
from harness.cellresult import XFAIL_AS_EXPECTED, XPASS, AreaInfo
from harness.compare import CaseResult
from harness.expectation import Expectation, plan_expectation
from harness.figures import Bar, MapFigure, Marker, bar_chart, human_size, memory_map_svg, range_chart
from harness.matrix import Cell
from harness.memview import map_figure
from harness.oracle import RegionKind
from harness.outcome import Status
from harness.reportmodel import CellState, CellView, areas_of, cell_state, suites_of
from tests.test_oracle_mem import V61, harness_boot

M = 1 << 20


def _map(board: str, cmdline: str) -> tuple[oracle.Prediction, oracle.MemoryMap]:
    return oracle.predict_boot(cmdline, harness_boot(V61, board))


def test_the_memory_map_is_the_replay_the_prediction_comes_from() -> None:
    prediction, memory = _map("smdkc210", "mem=512M@0x40000000 cma=64M")
    assert [(r.base, r.size) for r in memory.ram] == [(0x40000000, 1024 * M)]
    assert [(r.base, r.size) for r in memory.memory] == [(0x40000000, 512 * M)]  # mem= kept half
    dt = {r.name: r.base for r in memory.placed if r.kind is RegionKind.RESERVED_MEMORY}
    assert dt == {p.name: p.base for p in prediction.dt_pools}  # where the kernel put the DT pools
    kinds = [r.kind for r in memory.placed]
    assert kinds[:4] == [RegionKind.KERNEL, RegionKind.PGDIR, RegionKind.INITRD, RegionKind.DTB]
    assert memory.lowmem_limit == 0x60000000  # the end of what mem= left


def test_a_disabled_initrd_says_so_in_the_map() -> None:
    _, memory = _map("vexpress-a9", "mem=96M cma=16M")
    [initrd] = [r for r in memory.placed if r.kind is RegionKind.INITRD]
    assert "is not a memory region - disabling initrd" in initrd.detail
    _, fine = _map("vexpress-a9", "cma=16M")
    assert [r.detail for r in fine.placed if r.kind is RegionKind.INITRD] == [""]


def test_the_map_travels_in_the_cell_job_and_comes_back_equal() -> None:
    cell = Cell("vexpress-a9", "cma=64M")
    exp = plan_expectation(cell, "console=ttyAMA0 cma=64M", harness_boot(V61, "vexpress-a9"))
    assert exp.memory is not None and exp.prediction is not None
    assert Expectation.from_dict(exp.to_dict()) == exp
    old = exp.to_dict()
    del old["memory"]  # a job written before maps were recorded
    assert Expectation.from_dict(old).memory is None


def test_a_hand_written_expectation_still_gets_the_map() -> None:
    from harness.checks import CmaExpectation

    cell = Cell("vexpress-a9", "cma=64M", expect=CmaExpectation("reserved", 64))
    exp = plan_expectation(cell, "console=ttyAMA0 cma=64M", harness_boot(V61, "vexpress-a9"))
    assert exp.expect is not None and exp.prediction is None and exp.memory is not None


def _case(name: str, outcome: Status, infrastructure: bool = False) -> CaseResult:
    return CaseResult("b:c", name, outcome, infrastructure=infrastructure)


@pytest.mark.parametrize(("outcomes", "props", "state"), [
    ([Status.PASS, Status.ERROR], {}, CellState.ERROR),
    ([Status.FAIL, Status.ERROR], {}, CellState.ERROR),
    ([Status.PASS, Status.FAIL], {}, CellState.FAIL),
    ([Status.PASS, Status.FAIL], {"xfail.outcome": XPASS}, CellState.XPASS),
    ([Status.PASS, Status.SKIP], {"retry.flaky": "true"}, CellState.FLAKY),
    ([Status.SKIP, Status.SKIP], {"xfail.outcome": XFAIL_AS_EXPECTED}, CellState.XFAIL),
    ([Status.SKIP], {}, CellState.SKIP),
    ([Status.PASS, Status.SKIP], {}, CellState.PASS),
])
def test_cell_states_rank_worst_first(outcomes: list[Status], props: dict[str, str],
                                      state: CellState) -> None:
    cases = tuple(_case(f"t{i}", o) for i, o in enumerate(outcomes))
    assert cell_state(cases, props) is state


def test_an_infrastructure_error_outranks_everything() -> None:
    cases = (_case("boot", Status.ERROR, infrastructure=True), _case("x", Status.FAIL))
    assert cell_state(cases, {"xfail.outcome": XPASS}) is CellState.INFRA


PROPS = {
    "area.reserved.base": "0x7c000000", "area.reserved.size": "67108864",
    "area.region-mfc-left.base": "0x5d400000", "area.region-mfc-left.size": str(36 * M),
    "area.broken.base": "zz", "area.broken.size": "1",
    "cma-test/alloc-free.latency_us.min": "132", "cma-test/alloc-free.latency_us.median": "160",
    "cma-test/alloc-free.latency_us.max": "914", "cma-test/alloc-free.latency_us.n": "17",
    "cma-test/alloc-free.seconds": "0.720",
    "cma-test/alloc-free.before.reserved.used": "64", "cma-test/alloc-free.after.reserved.used": "65",
    "cma-test@region-mfc-left/dma.seconds": "0.1",
    "cma-test@region-mfc-left/dma.before.region-mfc-left.alloc_pages_fail": "0",
    "cma-test@region-mfc-left/dma.after.region-mfc-left.alloc_pages_fail": "3",
    "boot.seconds": "4.2", "remote.seconds": "9",
}


def test_properties_read_back_into_areas_and_suites() -> None:
    assert areas_of(PROPS) == (AreaInfo("reserved", 0x7C000000, 64 * M),
                               AreaInfo("region-mfc-left", 0x5D400000, 36 * M))
    alloc, dma = suites_of(PROPS)
    assert (alloc.path, alloc.seconds, alloc.suite) == ("cma-test/alloc-free", 0.72, "alloc-free")
    assert alloc.latency_us == {"min": 132, "median": 160, "max": 914, "n": 17}
    assert alloc.counters == (("reserved", "used", "64", "65"),)
    assert dma.suite == "dma" and dma.counters == (("region-mfc-left", "alloc_pages_fail", "0", "3"),)
    assert dma.latency_us == {}


def _view(props: dict[str, str], expectation: Expectation | None = None) -> CellView:
    job = None
    if expectation is not None:
        from types import SimpleNamespace

        job = SimpleNamespace(expectation=expectation, board=SimpleNamespace(ram=()))
    return CellView("vexpress-a9:cma=64M", "vexpress-a9", "cma=64M", CellState.PASS, (), props,
                    areas_of(props), suites_of(props), 4.2, 10.0, job)  # type: ignore[arg-type]


def test_the_drawing_puts_the_kernels_area_and_the_oracles_side_by_side() -> None:
    prediction, memory = _map("vexpress-a9", "cma=64M")
    props = {"area.reserved.base": f"{prediction.base:#x}", "area.reserved.size": str(64 * M)}
    fig = map_figure(_view(props, replace(Expectation.from_oracle(prediction), memory=memory)), "m")
    assert fig.lanes == ("RAM", "boot files", "reserved-memory", "CMA (kernel)", "CMA (oracle)")
    bars = {b.gid: b for b in fig.bars}
    kernel, oracle_bar = bars["m-cma-reserved"], bars["m-oracle-reserved"]
    assert (kernel.base, kernel.size, kernel.style) == (prediction.base, 64 * M, "cma")
    assert (oracle_bar.base, oracle_bar.style) == (prediction.base, "predicted")
    overlay = bars["m-oracle-reserved-overlay"]  # the prediction, outlined over the kernel's area
    assert (overlay.lane, overlay.base, overlay.label) == (kernel.lane, prediction.base, "")
    assert {"m-kernel", "m-initrd", "m-dtb", "m-dt-vram@4c000000"} <= bars.keys()
    assert fig.lo == 0x4C000000 and fig.hi == 0x80000000  # the VRAM region lies below RAM
    assert fig.markers == (Marker(memory.lowmem_limit, f"lowmem | highmem {memory.lowmem_limit:#x}",
                                  "m-lowmem"),)


def test_a_run_without_jobs_still_draws_the_areas_it_measured() -> None:
    fig = map_figure(_view(PROPS), "m")
    assert fig.lanes == ("CMA (kernel)", "CMA (oracle)")
    assert {b.gid for b in fig.bars} == {"m-cma-reserved", "m-cma-region-mfc-left"}
    assert fig.lo == 0x5D000000 and fig.hi == 0x80000000  # 16 MiB boundaries around the areas


def test_an_unplaced_prediction_draws_the_range_it_may_land_in() -> None:
    prediction = oracle.Prediction("reserved", 16 * M, 0x60000000, 0x80000000, None, (), "r")
    fig = map_figure(_view({}, Expectation.from_oracle(prediction)), "m")
    [bar] = fig.bars
    assert (bar.style, bar.base, bar.size) == ("predicted-range", 0x60000000, 0x20000000)


def test_the_svg_keeps_ids_and_labels_as_text_and_nothing_external() -> None:
    fig = MapFigure("m", ("RAM", "CMA (kernel)"),
                    (Bar(0, "RAM 0x60000000 1 GiB", 0x60000000, 1 << 30, "ram", "m-ram-0"),
                     Bar(1, "reserved 0x9c000000 64 MiB", 0x9C000000, 64 * M, "cma", "m-cma-reserved"),
                     Bar(1, "<script>", 0x60000000, 4096, "cma-other", "m-tiny")),
                    (Marker(0x90000000, "lowmem | highmem 0x90000000", "m-lowmem"),), 0x60000000, 0xA0000000)
    svg = memory_map_svg(fig)
    assert svg.startswith("<svg") and "<?xml" not in svg
    ids = re.findall(r'id="([^"]+)"', svg)
    assert {"m-axes", "m-ram-0", "m-cma-reserved", "m-cma-reserved-label", "m-lowmem", "m-tiny"} <= set(ids)
    assert len(ids) == len(set(ids))  # matplotlib's numbered ids are gone: none repeats across figures
    assert "reserved 0x9c000000 64 MiB" in svg and "<script>" not in svg and "&lt;script&gt;" in svg
    assert not re.search(r'(?:href|src)="(?!#)', svg)


def test_charts_are_svg_and_refuse_what_they_cannot_draw() -> None:
    svg = range_chart("lat", "alloc-free", ["a", "b"], [100, 120], [150, 160], [900, 1000], "µs")
    assert svg.startswith("<svg") and 'id="lat-axes"' in svg and "alloc-free" in svg
    assert 'id="bars-axes"' in bar_chart("bars", "t", ["x", "y"], [1.0, -2.0], "%")
    with pytest.raises(ValueError, match="finite"):
        bar_chart("bars", "t", ["x"], [float("nan")], "%")


@pytest.mark.parametrize(("size", "text"), [(64 * M, "64 MiB"), (16384, "16 KiB"), (1 << 30, "1 GiB"),
                                            (1455228, "1.4 MiB"), (1536, "1.5 KiB"), (100, "100 B")])
def test_sizes_read_as_the_kernel_prints_them(size: int, text: str) -> None:
    assert human_size(size) == text

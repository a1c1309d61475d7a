"""report.html and compare.html's drawings from a real run's files (tests/fixtures/report-run/).

The browser test (tests/test_report_browser.py) opens real pages in Chromium;
these check what the pages hold, fast: every cell in the grid with its state,
the memory maps drawn from the jobs' oracle maps and the measured areas, old
runs without job files, merged files, bad input, and compare's side-by-side maps.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from junitparser import Failure, JUnitXml

from harness import cli
from harness.compare import compare_paths
from harness.errors import InputError
from harness.htmlreport import compare_sections, render_report, write_report
from harness.reportmodel import CellState, load_view, reproduce_command
from harness.results import junit_bytes

RUN = Path(__file__).parent / "fixtures" / "report-run"


@pytest.fixture
def run_copy(tmp_path: Path) -> Path:
    shutil.copytree(RUN, tmp_path / "run")
    return tmp_path / "run"


def test_the_run_reads_back_as_cells_with_their_states_jobs_and_measurements() -> None:
    run = load_view(RUN)
    assert run.run_dir == RUN and run.info["run_id"]
    assert [c.name for c in run.cells] == ["vexpress-a9:cma=64M", "smdkc210:(default)",
                                           "vexpress-a9:cma=64M@0x10000000", "virt:cma=0"]
    states = {c.name: c.state for c in run.cells}
    assert states["vexpress-a9:cma=64M@0x10000000"] is CellState.XFAIL
    assert states["vexpress-a9:cma=64M"] is CellState.PASS
    a9 = run.cells[0]
    assert a9.job is not None and a9.job.expectation.memory is not None
    assert [a.name for a in a9.areas] == ["reserved"]
    assert a9.areas[0].base == a9.job.expectation.prediction.base  # type: ignore[union-attr]
    assert {s.suite for s in a9.suites} >= {"alloc-free", "exhaustion", "migrate", "dma"}
    assert a9.seconds is not None and a9.boot_seconds is not None and a9.seconds > a9.boot_seconds
    assert a9.qemu_argv[0].startswith("qemu-system-arm")
    smdk = run.cells[1]
    assert {a.name for a in smdk.areas} == {"reserved", "region-mfc-left", "region-mfc-right"}
    assert run.boards == ("vexpress-a9", "smdkc210", "virt")


def test_the_page_draws_every_cell_and_fetches_nothing(tmp_path: Path) -> None:
    run = load_view(RUN)
    page = render_report(run, RUN)
    assert "default-src 'none'" in page and "<script" not in page
    assert not re.search(r'(?:src|href)="(?!#)', page)  # no link but in-page anchors (no logs kept)
    for cell in run.cells:
        assert f'id="{cell.anchor}"' in page and f'href="#{cell.anchor}"' in page
    a9 = run.cells[0]
    base = a9.areas[0].base
    label = re.search(rf'<g id="{re.escape(a9.anchor)}-map-cma-reserved-label">.*?</g>', page, re.S)
    assert label and f"{base:#x}" in label.group(0)
    assert f'id="{a9.anchor}-map-oracle-reserved"' in page and f'id="{a9.anchor}-map-lowmem"' in page
    smdk = run.cells[1].anchor
    for area in ("region-mfc-left", "region-mfc-right"):
        assert f'id="{smdk}-map-cma-{area}"' in page and f'id="{smdk}-map-dt-{area}"' in page
    assert page.count('class="chart"') >= 5  # latency charts per suite, boot times
    assert "0003-misc-add-cma-dev-test-device.patch sha256:" in page  # provenance
    assert "Needs a look" not in page  # pass, pass, xfail, pass


def test_the_page_says_how_to_run_and_judge_a_cell_again() -> None:
    run = load_view(RUN)
    command = reproduce_command(run, run.cells[0])
    assert command.startswith(f"cma-harness run -m {RUN}/matrix.toml --boards-dir {RUN}/boards ")
    assert command.endswith("--board vexpress-a9 --cmdline cma=64M")
    assert "'cma=64M@0x10000000'" not in command
    assert reproduce_command(run, run.cells[2]).endswith("--cmdline cma=64M@0x10000000")


def test_a_run_without_job_files_still_gets_its_measured_areas_drawn(run_copy: Path) -> None:
    shutil.rmtree(run_copy / "logs")
    run = load_view(run_copy)
    assert all(c.job is None for c in run.cells)
    page = render_report(run, run_copy)
    assert f'id="{run.cells[0].anchor}-map-cma-reserved"' in page
    assert "-map-ram-0" not in page and "-map-oracle-" not in page


def test_a_bare_junit_file_and_a_merged_file_are_reported(run_copy: Path, tmp_path: Path) -> None:
    junit = tmp_path / "only.xml"
    shutil.copy(run_copy / "junit.xml", junit)
    assert write_report(junit) == tmp_path / "report.html"
    assert 'id="cell-virt:cma_0"' in (tmp_path / "report.html").read_text()

    merged = tmp_path / "merged.xml"
    assert cli.main(["merge", str(run_copy), str(RUN), "-o", str(merged)]) == 0
    (tmp_path / "m").mkdir()
    page = write_report(merged, tmp_path / "m" / "page.html").read_text()
    # Each cell is in both inputs, so merge renamed it <cell>@<host>; its job is found through
    # merge.source and merge.original_name: the RAM and the oracle are drawn for all eight.
    assert page.count("-map-ram-0\"") == 8 and page.count("-map-oracle-reserved\"") >= 4


def test_report_cli_writes_the_page_and_refuses_what_is_no_run(run_copy: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["report", str(run_copy)]) == 0
    assert capsys.readouterr().out.strip() == f"report: {run_copy / 'report.html'}"
    assert cli.main(["report", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cma-harness: error:") and "nothing" in err[0]
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "junit.xml").write_text("<testsuites><testsuite name='x'>")  # truncated
    assert cli.main(["report", str(empty)]) == 2
    assert not (empty / "report.html").exists()
    capsys.readouterr()
    assert cli.main(["report", str(run_copy), "-o", str(run_copy / "run.json" / "page.html")]) == 2
    assert capsys.readouterr().err.strip() == \
        f"cma-harness: error: cannot write {run_copy / 'run.json' / 'page.html'}: Not a directory"
    with pytest.raises(InputError):
        load_view(empty)


def _regress(run_dir: Path) -> None:
    """Make vexpress-a9:cma=64M of ``run_dir`` fail one testcase and double a latency median."""
    xml = JUnitXml.fromfile(str(run_dir / "junit.xml"))
    for suite in xml:
        if suite.name != "vexpress-a9:cma=64M":
            continue
        for prop in suite.properties():
            if prop.name == "cma-test/alloc-free.latency_us.median":
                prop.value = str(int(prop.value) * 3)
        case = next(c for c in suite if c.name == "cma-test/alloc-free/area-restored")
        case.result = [Failure("free pages 16310, expected 16320")]
    (run_dir / "junit.xml").write_bytes(junit_bytes(xml))


def test_compare_draws_base_and_new_maps_of_the_changed_cell_and_the_deltas(run_copy: Path) -> None:
    _regress(run_copy)
    html = compare_sections(compare_paths(RUN, run_copy))
    assert html.count("<svg") == 3  # the delta chart, and the one changed cell's two maps
    for side in ("base", "new"):
        assert f'id="{side}-cell-vexpress-a9:cma_64M-map-cma-reserved"' in html
    assert 'id="metric-deltas-axes"' in html and "alloc-free.latency_us.median" in html
    assert "smdkc210" not in html  # unchanged cells are not drawn
    page = render_report(load_view(run_copy), run_copy)
    assert 'Needs a look: <a href="#cell-vexpress-a9:cma_64M"><code>vexpress-a9:cma=64M</code></a> ' \
           '<span class="state fail">fail</span>' in page

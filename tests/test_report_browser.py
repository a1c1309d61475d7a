"""The reports of real runs, opened in a real browser (issue 15).

The default matrix's run (shared with tests/test_integration.py) wrote its
``report.html``; a run with the leaking patch (tests/fixtures/patches/0005-...)
is compared against it.  Both pages are loaded in Debian's headless Chromium:
no JavaScript console error, no request beyond the file itself, every grid
square leads to its cell, and the memory map of ``vexpress-a9:cma=64M`` draws
the kernel's CMA area at the address its console log gave — found in the log
here with a regular expression of this test's own, and located on the drawing
by the axis' tick labels.  With ``CMA_HARNESS_SCREENSHOTS=DIR`` the screenshots
are also saved in DIR (how docs/img/ was made).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote

import pytest
from junitparser import JUnitXml

from tests import browser
from tests.conftest import CLI, REPO, DefaultRun

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(bool(browser.available()), reason=browser.available() or "ok")]
BREAKING = REPO / "tests/fixtures/patches/0005-mm-cma-clear-every-bitmap-bit-a-released-range-spans.patch"
KNOWN = "vexpress-a9:cma=64M"
ANCHOR = "cell-vexpress-a9:cma_64M"


def _keep(shot: Path) -> None:
    """Copy a screenshot to $CMA_HARNESS_SCREENSHOTS, when set."""
    where = os.environ.get("CMA_HARNESS_SCREENSHOTS")
    if where:
        shutil.copy(shot, Path(where) / shot.name)


_TICKS_AND_BAR = """
    const bar = document.getElementById(arguments[0]);
    const ticks = [];
    for (const t of bar.ownerSVGElement.querySelectorAll('text')) {
        if (/^0x[0-9a-f]{8}$/.test(t.textContent.trim())) {
            const r = t.getBoundingClientRect();
            ticks.push([parseInt(t.textContent.trim(), 16), r.left + r.width / 2]);
        }
    }
    return [ticks, bar.getBoundingClientRect().left];"""


def _where_the_axis_puts(page: browser.Page, bar_id: str, address: int) -> tuple[float, float]:
    """The bar's left edge in page pixels, and where the drawing's own x axis puts ``address``.

    The axis is read from its tick labels (the ``0x...`` texts under the plot): the
    first and the last give the pixels per byte.
    """
    ticks, left = page.js(_TICKS_AND_BAR, bar_id)
    assert len(ticks) >= 2, ticks
    (a0, x0), (a1, x1) = ticks[0], ticks[-1]
    return float(left), x0 + (address - a0) * (x1 - x0) / (a1 - a0)


def test_the_report_of_the_default_matrix_in_chromium(default_matrix_run: DefaultRun, tmp_path: Path) -> None:
    run_dir = default_matrix_run.run_dir
    assert default_matrix_run.proc.returncode == 0, default_matrix_run.proc.stdout[-3000:]
    assert f"report: {run_dir / 'report.html'}" in default_matrix_run.proc.stdout  # written by run
    page_file = run_dir / "report.html"
    log = (run_dir / "logs" / "vexpress-a9_cma=64M.log").read_text(errors="replace")
    base = int(re.search(r"cma: Reserved 64 MiB at (0x[0-9a-f]+)", log).group(1), 16)  # type: ignore[union-attr]
    with browser.open_page(page_file, height=1400) as page:
        assert page.errors() == []
        assert page.requests == [page_file.resolve().as_uri()]
        links = page.js("return [...document.querySelectorAll('table.grid a')].map(a => a.hash.slice(1))")
        assert len(links) == 64 and all(page.js("return !!document.getElementById(arguments[0])",
                                                 unquote(x)) for x in links)
        page.screenshot(tmp_path / "report-grid.png")
        page.js("document.getElementById(arguments[0]).open = true", ANCHOR)
        bar, label = f"{ANCHOR}-map-cma-reserved", f"{ANCHOR}-map-cma-reserved-label"
        assert f"{base:#x}" in page.js("return document.getElementById(arguments[0]).textContent", label)
        left, expected = _where_the_axis_puts(page, bar, base)
        assert abs(left - expected) < 2.5, (left, expected)  # within a few pixels of the log's address
        page.element_screenshot(ANCHOR, tmp_path / "report-cell.png")
        smdk = "cell-smdkc210:_default_"
        page.js("document.getElementById(arguments[0]).open = true", smdk)
        assert page.js("return !!document.getElementById(arguments[0])", f"{smdk}-map-cma-region-mfc-left")
        page.element_screenshot(smdk, tmp_path / "report-cell-dt.png")
    for shot in ("report-grid.png", "report-cell.png", "report-cell-dt.png"):
        assert (tmp_path / shot).stat().st_size > 10_000
        _keep(tmp_path / shot)


def test_compare_and_report_of_a_broken_patch_in_chromium(default_matrix_run: DefaultRun,
                                                          tmp_path: Path) -> None:
    broken = subprocess.run([*CLI, "run", "--board", "vexpress-a9", "--cmdline", "cma=64M", "--patch",
                             str(BREAKING), "-o", str(tmp_path / "broken")], capture_output=True, text=True,
                            cwd=REPO, timeout=3600)
    assert broken.returncode == 1, broken.stdout[-3000:] + broken.stderr
    base, new = str(default_matrix_run.run_dir), str(tmp_path / "broken" / "latest")
    cmp = subprocess.run([*CLI, "compare", base, new, "-o", str(tmp_path / "cmp")], capture_output=True,
                         text=True, cwd=REPO, timeout=300)
    assert cmp.returncode == 1, cmp.stdout + cmp.stderr
    page_file = tmp_path / "cmp" / "compare.html"
    with browser.open_page(page_file, height=1400) as page:
        assert page.errors() == [] and page.requests == [page_file.resolve().as_uri()]
        for side in ("base", "new"):
            assert page.js("return !!document.getElementById(arguments[0])",
                           f"{side}-{ANCHOR}-map-cma-reserved"), side
        # Only the cell both runs have is drawn: the 63 the broken run did not boot are not "changed".
        assert page.js("return document.querySelectorAll('#maps ~ h3').length") == 1
        page.js("document.getElementById('maps').scrollIntoView()")
        page.screenshot(tmp_path / "compare-maps.png")
    _keep(tmp_path / "compare-maps.png")

    merged = tmp_path / "merged.xml"
    assert subprocess.run([*CLI, "merge", base, new, "-o", str(merged)], cwd=REPO, capture_output=True,
                          timeout=120).returncode == 0
    proc = subprocess.run([*CLI, "report", str(merged)], capture_output=True, text=True, cwd=REPO,
                          timeout=300)
    assert proc.returncode == 0 and f"report: {tmp_path / 'report.html'}" in proc.stdout, proc.stderr
    reserved = sum(1 for suite in JUnitXml.fromfile(str(merged))
                   if any(p.name == "area.reserved.base" for p in suite.properties()))
    with browser.open_page(tmp_path / "report.html") as page:
        assert page.errors() == []
        # Every cell of the merged file with a default area has it drawn; its RAM comes from the
        # job its run kept (found through merge.source), so the RAM lane is there too.
        ids = page.js("return [...document.querySelectorAll('[id$=\"-map-cma-reserved\"]')].map(e => e.id)")
        assert len(ids) == reserved > 20
        assert page.js("return document.querySelectorAll('[id$=\"-map-ram-0\"]').length") == 65

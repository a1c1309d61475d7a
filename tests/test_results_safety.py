"""What a results directory promises: one file per cell, nothing half written, a ``latest``
that never goes missing, merge/compare that cannot destroy an input or pass on nothing, and
JUnit that the Jenkins xunit plugin's junit-10.xsd accepts."""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import hashlib
import itertools
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from junitparser import JUnitXml

from harness import cli
from harness.cache import atomic_write
from harness.cell import CellResult
from harness.checks import CheckResult, Status
from harness.compare import compare_paths, exit_status, load_run
from harness.errors import HarnessError, InputError
from harness.matrix import DEFAULT_MATRIX, Cell, load_matrix, parse_matrix
from harness.report import merge, merge_paths, write_reports
from harness.results import ResultsDir, cell_metrics, cell_testsuite, exit_status_of_run
from tests.junit_schema import assert_valid_junit
from tests.test_results import PROV

REPO = Path(__file__).parents[1]
JUNIT = Path(__file__).parent / "fixtures" / "junit"
BASE = JUNIT / "base.xml"
STAMP = dt.datetime(2026, 11, 21, tzinfo=dt.UTC)
COLLIDING = ["cma=64M x", "cma=64M,x", "cma=64M/x"]


def _result(cell: Cell, log: Path, checks: list[CheckResult] | None = None) -> CellResult:
    log.write_text(f"console of {cell.name}\n")
    if checks is None:
        checks = [CheckResult("boot", Status.PASS, "ok"),
                  CheckResult("cma-reservation", Status.FAIL, "expected 64 MiB, saw none"),
                  CheckResult("cma-debugfs", Status.SKIP, "no CMA area")]
    return CellResult(cell, checks, log, 1.5, 0.5, {"cma.reserved_mib": "64"})


def _write_cells(run_dir: ResultsDir, cells: list[Cell]) -> None:
    for cell in cells:
        result = _result(cell, run_dir.log_path(cell.slug))
        run_dir.write_cell(cell.slug, cell_testsuite(result, PROV, cell.cmdline, STAMP), cell_metrics(result))


def _new_run(root: Path) -> ResultsDir:
    """A run directory as ``run`` starts it: run.json and the matrix copy written."""
    run_dir = ResultsDir(root)
    matrix = root / "m.toml"
    matrix.write_text("boards = ['b']\n")
    run_dir.write_provenance({"invocation": {}}, [], matrix)
    return run_dir


def _run(root: Path, cells: list[Cell]) -> Path:
    run_dir = _new_run(root)
    _write_cells(run_dir, cells)
    return run_dir.finish([c.slug for c in cells], [])


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*") if p.name.endswith(".tmp"))


# -- 1. cell slugs -------------------------------------------------------------------------------


def test_cells_whose_names_sanitize_alike_get_their_own_files(tmp_path: Path) -> None:
    m = parse_matrix({"boards": ["vexpress-a9"], "cmdlines": [*COLLIDING, "", "default"]}, Path("m.toml"))
    slugs = [c.slug for c in m.cells]
    assert len(set(slugs)) == 5
    for cell in m.cells[:3]:
        digest = hashlib.sha256(cell.name.encode()).hexdigest()[:8]
        assert cell.slug == f"vexpress-a9_cma=64M_x-{digest}"
    assert slugs[3] == "vexpress-a9_default" and slugs[4].startswith("vexpress-a9_default-")
    final = _run(tmp_path, list(m.cells))
    assert sorted(p.name for p in (final / "cells").glob("*.xml")) == sorted(f"{s}.xml" for s in slugs)
    assert len(list((final / "logs").iterdir())) == 5
    assert [s.name for s in JUnitXml.fromfile(str(final / "junit.xml"))] == [c.name for c in m.cells]


def test_default_matrix_slugs_are_unchanged() -> None:
    """Old results directories of the default matrix still resume: no slug moved."""
    m = load_matrix(DEFAULT_MATRIX)
    assert [c.slug for c in m.cells] == [re.sub(r"[^A-Za-z0-9._=@-]+", "_", c.name).strip("_")
                                         for c in m.cells]
    by_name = {c.name: c.slug for c in m.cells}
    assert by_name["vexpress-a9:cma=64M"] == "vexpress-a9_cma=64M"
    assert by_name["vexpress-a9:(default)"] == "vexpress-a9_default"
    assert by_name["virt:cma=64M@0x80000000-0xc0000000"] == "virt_cma=64M@0x80000000-0xc0000000"


def test_slugs_are_injective_and_file_name_safe() -> None:
    cmdlines = ["".join(p) for n in range(5) for p in itertools.product("a_ -,:b", repeat=n)]
    cmdlines += ["default", "x-deadbeef", "x-0123456a", "cma=" + "9" * 1000]
    seen: dict[str, str] = {}
    for board in ("a", "a_b", "a-b", "a.b"):
        for cmdline in cmdlines:
            cell = Cell(board, cmdline)
            assert re.fullmatch(r"[A-Za-z0-9._=@-]{1,129}", cell.slug), cell.slug
            assert seen.setdefault(cell.slug, cell.name) == cell.name, cell.slug


def test_slug_is_the_same_in_another_process() -> None:
    code = "from harness.matrix import Cell; print(Cell('vexpress-a9', 'cma=64M x').slug)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          check=True, env={**os.environ, "PYTHONHASHSEED": "12345"})
    assert proc.stdout.strip() == Cell("vexpress-a9", "cma=64M x").slug


def test_matrix_with_two_cells_of_one_slug_is_refused() -> None:
    # Found by brute force: the same readable form and the same first 8 hex digits of SHA-256.
    a, b = "cma=1M,a:b:c:d/e%f", "cma=1M/a b]c,d+e,f"
    assert Cell("b", a).slug == Cell("b", b).slug
    with pytest.raises(InputError) as exc:
        parse_matrix({"boards": ["b"], "cmdlines": [a, b]}, Path("m.toml"))
    assert str(exc.value).startswith("m.toml: cells ")
    assert f"b:{a}" in str(exc.value) and f"b:{b}" in str(exc.value)
    with pytest.raises(InputError, match="would write the same result files"):
        parse_matrix({"boards": ["b"], "cmdlines": [a], "cells": [{"cmdline": b}]}, Path("m.toml"))


# -- 2. atomic writes ----------------------------------------------------------------------------


@contextlib.contextmanager
def disk_full_after(nbytes: int) -> Iterator[None]:
    """Writes growing a file past ``nbytes`` stop short, then fail (EFBIG), as on a full disk.

    RLIMIT_FSIZE hits every way of writing a file (Python file objects, shutil, os.write).
    """
    if signal.getsignal(signal.SIGXFSZ) != signal.SIG_IGN:
        pytest.skip("SIGXFSZ is not ignored; RLIMIT_FSIZE would kill the process")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


@pytest.mark.parametrize("failing", ["write", "fsync"])
def test_atomic_write_keeps_the_previous_file_when_the_disk_fills(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str) -> None:
    path = tmp_path / "junit.xml"
    atomic_write(path, b"<old/>\n" * 100)
    real_write = os.write

    def short_write_then_enospc(fd: int, data: bytes) -> int:
        if len(data) > 10:
            return real_write(fd, bytes(data[:10]))
        raise OSError(errno.ENOSPC, "No space left on device")

    def fsync_enospc(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    for target in (path, tmp_path / "new.xml"):
        with monkeypatch.context() as m:
            if failing == "write":
                m.setattr(os, "write", short_write_then_enospc)
            else:
                m.setattr(os, "fsync", fsync_enospc)
            with pytest.raises(OSError) as exc:
                atomic_write(target, b"<new/>\n" * 1000)
        assert exc.value.errno == errno.ENOSPC
    assert path.read_bytes() == b"<old/>\n" * 100  # the previous complete file
    assert sorted(os.listdir(tmp_path)) == ["junit.xml"]  # no new.xml, no temporary file


def test_a_full_disk_never_leaves_a_truncated_junit_xml(tmp_path: Path) -> None:
    cells = [Cell("vexpress-a9", f"cma={i}M") for i in range(3)]
    run_dir = _new_run(tmp_path)
    _write_cells(run_dir, cells)
    size = sum(p.stat().st_size for p in run_dir.cells.glob("*.xml"))
    with disk_full_after(size // 2), pytest.raises((OSError, HarnessError)) as exc:
        run_dir.finish([c.slug for c in cells], [])
    assert not (run_dir.partial / "junit.xml").exists()
    assert _leftovers(tmp_path) == []
    assert isinstance(exc.value, HarnessError)  # one error line naming the file, no traceback
    assert re.match(r"cannot write .*junit\.xml: File too large", str(exc.value))
    # The run is still an unfinished one: --resume completes it.
    final = ResultsDir(tmp_path, resume=run_dir.partial).finish([c.slug for c in cells], [])
    assert len(list(JUnitXml.fromfile(str(final / "junit.xml")))) == 3


def test_a_full_disk_keeps_the_previous_cell_file(tmp_path: Path) -> None:
    run_dir = ResultsDir(tmp_path)
    cell = Cell("vexpress-a9", "cma=64M")
    result = _result(cell, run_dir.log_path(cell.slug))
    path = run_dir.write_cell(cell.slug, cell_testsuite(result, PROV, "", STAMP))
    before = path.read_bytes()
    bigger = _result(cell, run_dir.log_path(cell.slug), [CheckResult(f"c{i}", Status.PASS, "x" * 200)
                                                         for i in range(50)])
    with disk_full_after(len(before)), pytest.raises((OSError, HarnessError)) as exc:
        run_dir.write_cell(cell.slug, cell_testsuite(bigger, PROV, "", STAMP))
    assert path.read_bytes() == before and _leftovers(tmp_path) == []
    assert isinstance(exc.value, HarnessError) and str(path) in str(exc.value)
    with disk_full_after(100), pytest.raises((OSError, HarnessError)) as exc:
        run_dir.write_cell("other", cell_testsuite(result, PROV, "", STAMP), {"big": "y" * 1000})
    assert not (run_dir.cells / "other.json").exists() and not (run_dir.cells / "other.xml").exists()
    assert run_dir.done_cells() == {cell.slug} and _leftovers(tmp_path) == []
    assert isinstance(exc.value, HarnessError) and "cells/other.json" in str(exc.value)


def test_a_full_disk_never_leaves_half_a_board_copy_or_run_json(tmp_path: Path) -> None:
    board = tmp_path / "big-board.toml"
    board.write_text("# padding\n" * 2000)
    matrix = tmp_path / "m.toml"
    matrix.write_text("boards = ['big-board']\n")
    run_dir = ResultsDir(tmp_path / "results")
    with disk_full_after(5000), pytest.raises((OSError, HarnessError)) as exc:
        run_dir.write_provenance({}, [board], matrix)
    assert not (run_dir.partial / "boards" / "big-board.toml").exists()
    assert isinstance(exc.value, HarnessError) and "boards/big-board.toml" in str(exc.value)
    with disk_full_after(5000), pytest.raises((OSError, HarnessError)) as exc:
        run_dir.write_provenance({"invocation": "x" * 10000}, [], matrix)
    assert not (run_dir.partial / "run.json").exists() and _leftovers(tmp_path) == []
    assert isinstance(exc.value, HarnessError) and "run.json" in str(exc.value)
    assert (run_dir.partial / "matrix.toml").read_bytes() == matrix.read_bytes()
    assert _leftovers(tmp_path) == []


# -- 3. results/latest ---------------------------------------------------------------------------


def test_latest_never_goes_missing_when_another_run_publishes_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "results"
    first = _run(root, [Cell("b", "cma=1M")])
    assert os.readlink(root / "latest") == first.name
    run_dir = ResultsDir(root)
    _write_cells(run_dir, [Cell("b", "cma=2M")])
    real_symlink = os.symlink
    latest_there: list[bool] = []

    def symlink_while_another_run_publishes(src: str, dst: str, *args: object, **kwargs: object) -> None:
        latest_there.append(os.path.lexists(root / "latest"))
        if len(latest_there) == 1:  # the other run points latest at itself right now
            real_symlink(first.name, root / ".other-run")
            os.replace(root / ".other-run", root / "latest")
        real_symlink(src, dst, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "symlink", symlink_while_another_run_publishes)
    final = run_dir.finish([Cell("b", "cma=2M").slug], [])
    assert latest_there == [True]
    assert os.readlink(root / "latest") == final.name
    assert _leftovers(root) == [] and not list(root.glob(".latest*"))


def test_latest_is_replaced_in_place_and_a_real_latest_directory_is_kept(tmp_path: Path) -> None:
    root = tmp_path / "results"
    runs = [_run(root, [Cell("b", f"cma={i}M")]) for i in range(3)]
    assert os.readlink(root / "latest") == runs[-1].name
    (root / "latest").unlink()
    (root / "latest").symlink_to("gone")  # dangling: replaced too
    again = _run(root, [Cell("b", "cma=9M")])
    assert (root / "latest").resolve() == again
    (root / "latest").unlink()
    (root / "latest").mkdir()  # CI copies the run there: left alone, no error
    _run(root, [Cell("b", "cma=10M")])
    assert (root / "latest").is_dir() and not (root / "latest").is_symlink()
    assert not list(root.glob(".latest*"))


# -- 4. merge and compare refusals ---------------------------------------------------------------


def test_merge_refuses_to_write_over_an_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = tmp_path / "a.xml"
    shutil.copy(BASE, a)
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(BASE, run / "junit.xml")
    (tmp_path / "link.xml").symlink_to(a)
    os.link(a, tmp_path / "hard.xml")
    cases = [(a, a), (run / "junit.xml", run / "junit.xml"), (tmp_path / "link.xml", a),
             (tmp_path / "hard.xml", a), (run, run / "junit.xml"), (tmp_path / "." / "a.xml", a)]
    for out, named in cases:
        with pytest.raises(InputError, match=rf"the output .* is the input {re.escape(str(named))}"):
            merge_paths([a, run], out)
    assert a.read_bytes() == BASE.read_bytes() and (run / "junit.xml").read_bytes() == BASE.read_bytes()
    assert cli.main(["merge", str(a), str(run), "-o", str(a)]) == 2
    assert f"cma-harness: error: merge: the output {a} is the input {a}" in capsys.readouterr().err
    assert a.read_bytes() == BASE.read_bytes()


@pytest.mark.parametrize("text", ['<testsuites name="x"/>', '<testsuite name="c"/>',
                                  '<testsuites><testsuite name="c" tests="0"/></testsuites>'])
def test_merge_refuses_a_file_without_testcases(tmp_path: Path, text: str) -> None:
    hollow = tmp_path / "hollow.xml"
    hollow.write_text(text)
    with pytest.raises(InputError, match=rf"^{re.escape(str(hollow))}: holds no testcases"):
        merge([BASE, hollow])
    with pytest.raises(InputError, match=re.escape(str(hollow))):
        merge_paths([hollow, BASE], tmp_path / "merged.xml")
    assert not (tmp_path / "merged.xml").exists()


@pytest.mark.parametrize("text", [
    '<testsuites name="cma-harness"/>',
    '<testsuites name="cma-harness"><testsuite name="vexpress-a9:(default)" tests="0"/></testsuites>',
])
def test_compare_with_a_new_run_that_produced_nothing_is_red(tmp_path: Path, text: str) -> None:
    new = tmp_path / "new"
    new.mkdir()
    (new / "junit.xml").write_text(text)
    c = compare_paths(BASE, new)
    base_keys = list(load_run(BASE).cases)
    assert [(ch.suite, ch.name) for ch in c.regressions] == base_keys and len(c.changes) == 100
    assert exit_status(c) == 1 and c.has_regressions
    assert set(c.lost_suites) == {s for s, _ in base_keys}
    xml = JUnitXml.fromfile(str(write_reports(c, tmp_path / "out")["xml"]))
    assert (xml.tests, xml.failures) == (100, 100)
    failure = next(case for suite in xml for case in suite).result[0]
    assert failure.message == "regression: passed in base, absent in new: the new run holds no testcase"
    assert cli.main(["compare", str(BASE), str(new), "-o", str(tmp_path / "cli")]) == 1
    with pytest.raises(InputError, match="holds no testcases"):  # an empty baseline is bad input
        compare_paths(new, BASE)


def test_a_cell_that_lost_its_testcases_is_red_but_a_cell_left_out_is_removed(tmp_path: Path) -> None:
    tree = ET.parse(BASE)
    root = tree.getroot()
    default, cma0, cma1g = root.findall("testsuite")
    for case in cma0.findall("testcase"):
        cma0.remove(case)
    root.remove(cma1g)
    new = tmp_path / "new.xml"
    tree.write(new)
    c = compare_paths(BASE, new)
    assert exit_status(c) == 1
    assert {ch.suite for ch in c.regressions} == {"vexpress-a9:cma=0"} and len(c.regressions) == 7
    assert {ch.suite for ch in c.removed} == {"vexpress-a9:cma=1G"}
    assert all("its cell holds no testcase in new" in ch.reason for ch in c.regressions)
    assert c.lost_suites == ("vexpress-a9:cma=0",)


def test_a_cell_with_no_check_result_is_an_error_not_an_empty_suite(tmp_path: Path) -> None:
    run_dir = ResultsDir(tmp_path)
    cell = Cell("b", "cma=1M")
    result = _result(cell, run_dir.log_path(cell.slug), [])
    run_dir.write_cell(cell.slug, cell_testsuite(result, PROV, "", STAMP))
    final = run_dir.finish([cell.slug], [])
    [suite] = list(JUnitXml.fromfile(str(final / "junit.xml")))
    assert (suite.tests, suite.errors) == (1, 1)
    assert exit_status_of_run(final) == 1


# -- 5. JUnit validity ---------------------------------------------------------------------------


def test_every_written_junit_file_has_no_skipped_on_testsuites(tmp_path: Path) -> None:
    cells = [Cell("vexpress-a9", c) for c in ("cma=1M", "cma=2M")]
    run_dir = _new_run(tmp_path / "results")
    _write_cells(run_dir, cells)
    for cell_file in run_dir.cells.glob("*.xml"):
        assert_valid_junit(cell_file)
    # Resume reads the cell files back without the attribute.
    final = ResultsDir(tmp_path / "results", resume=run_dir.partial).finish([c.slug for c in cells], [])
    assert_valid_junit(final / "junit.xml")
    assert exit_status_of_run(final) == 1  # the cma-reservation failures
    # Old files carry the attribute (base.xml is a real run's output) and are still read.
    assert "skipped" in ET.parse(BASE).getroot().attrib
    merged = tmp_path / "merged.xml"
    merge_paths([BASE, final], merged)
    assert_valid_junit(merged)
    assert JUnitXml.fromfile(str(merged)).tests == 100 + 6
    again = tmp_path / "again.xml"
    merge_paths([merged, final], again)  # a merged file is read back too
    assert_valid_junit(again)
    reports = write_reports(compare_paths(BASE, final), tmp_path / "compare")
    assert_valid_junit(reports["xml"])
    same = compare_paths(final, final)
    assert exit_status(same) == 0 and len(same.unchanged_pass) == 2 and len(same.still_failing) == 2
    assert_valid_junit(write_reports(same, tmp_path / "same")["xml"])


def test_a_full_disk_keeps_the_previous_reports_and_merged_file(tmp_path: Path) -> None:
    out = tmp_path / "compare"
    write_reports(compare_paths(BASE, BASE), out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with disk_full_after(1000), pytest.raises(InputError, match=r"cannot write .*compare/compare\.\w+: "):
        write_reports(compare_paths(BASE, JUNIT / "new-mixed.xml"), out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # all three old ones, nothing else
    merged = tmp_path / "merged.xml"
    with disk_full_after(1000), pytest.raises(InputError, match=rf"cannot write {re.escape(str(merged))}: "):
        merge_paths([BASE, JUNIT / "new-mixed.xml"], merged)
    assert sorted(os.listdir(tmp_path)) == ["compare"]


def test_a_run_that_died_between_junit_and_publishing_can_be_resumed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """junit.xml written, then the process died before .partial was renamed: --resume refused it."""
    cells = [Cell("vexpress-a9", f"cma={i}M") for i in range(2)]
    run_dir = _new_run(tmp_path)
    _write_cells(run_dir, cells)
    real_rename = Path.rename

    def dies(self: Path, target: Path) -> Path:
        if self == run_dir.partial:
            raise KeyboardInterrupt  # killed right here
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", dies)
    with pytest.raises(KeyboardInterrupt):
        run_dir.finish([c.slug for c in cells], [])
    monkeypatch.setattr(Path, "rename", real_rename)
    assert (run_dir.partial / "junit.xml").is_file()
    ResultsDir.unfinished(run_dir.partial)  # not "already complete"
    final = ResultsDir(tmp_path, resume=run_dir.partial).finish([c.slug for c in cells], [])
    assert len(list(JUnitXml.fromfile(str(final / "junit.xml")))) == 2
    assert (tmp_path / "latest").resolve() == final.resolve()

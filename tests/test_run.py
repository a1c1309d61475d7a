"""Planning and executing a run without QEMU: a fake builder, fake executors, a real results directory.

``plan_run`` is driven with a builder that writes a few small files as a
kernel and an initramfs would be (with their manifests); ``execute`` with an
executor that "finishes" cells one by one, or is interrupted after some.  The
results directory, run.json, JUnit and the console lines are the real ones.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest
from rich.console import Console

from harness import executor as executor_mod
from harness import kbuild, oracle, plan, qemu, results, rootfs
from harness.boards import Board, load_board
from harness.cell import CellResult
from harness.checks import CheckResult, CmaBootReport, Status
from harness.compare import parse_junit
from harness.errors import EnvironmentProblem, InputError
from harness.executor import LocalExecutor, LogPath, OnResult
from harness.expectation import ExpectationSource
from harness.integrity import write_manifest
from harness.job import CellJob
from harness.matrix import load_matrix
from harness.plan import KernelInputs, PlannedCell, Prepared, RunPlan, RunRequest, Selection
from harness.progress import Reporter
from harness.run import execute
from harness.series import Patch, Series

BOARD = "vexpress-a9"
MATRIX = f"""name = "unit"
boards = ["{BOARD}"]
cmdlines = ["cma=16M", "cma=32M", "cma=0"]
[[cells]]
cmdline = "cma=0"
expect = {{ cma = "none" }}
"""


def _console() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=False, width=200, soft_wrap=True), buffer


def _request(tmp_path: Path, **changes: Any) -> RunRequest:
    matrix = tmp_path / "m.toml"
    if not matrix.exists():
        matrix.write_text(MATRIX)
    kernel = KernelInputs(tmp_path / "linux", tmp_path / "series", (tmp_path / "extra.patch",), 3)
    request = RunRequest(matrix, None, None, kernel, 2, 0, tmp_path / "results")
    return replace(request, **changes)


def _fake_builder(tmp_path: Path, key: str = "k" * 64) -> Callable[..., dict[str, Prepared]]:
    """A builder that writes a zImage, the boards' dtbs and an initramfs, each entry with its manifest."""
    def build(loaded: Mapping[str, Board], inputs: KernelInputs, rep: Reporter) -> dict[str, Prepared]:
        kdir, rdir = tmp_path / "cache" / "kernel", tmp_path / "cache" / "rootfs"
        (kdir / "dtbs").mkdir(parents=True, exist_ok=True)
        rdir.mkdir(parents=True, exist_ok=True)
        (kdir / "zImage").write_bytes(b"zImage bytes")
        for board in loaded.values():
            if board.dtb:
                (kdir / "dtbs" / board.dtb).write_bytes(b"dtb bytes")
        (rdir / "initramfs.cpio.gz").write_bytes(b"initramfs bytes")
        write_manifest(kdir)
        write_manifest(rdir)
        kernel = kbuild.KernelBuild(key, kdir, "6.1.99", kdir / "zImage", kdir / "dtbs", kdir / "modules",
                                    kdir / "gen_init_cpio", "c" * 64, "s" * 64, "gcc 12", str(inputs.source),
                                    "id", kdir / "build.log", tmp_path)
        series = Series(inputs.series, (Patch("0001-a.patch", tmp_path / "a", 1, "a" * 64),))
        source = kbuild.KernelSource(inputs.source, False, "id", "6.1")
        return {name: Prepared(board, kernel, rootfs.Initramfs(rdir / "initramfs.cpio.gz", "r"),
                               cast(oracle.CmaBoot, object()),
                               kbuild.BuildRequest(source, series, board.defconfig,
                                                   (tmp_path / "lean.config", tmp_path / "cma.config"), 3))
                for name, board in loaded.items()}
    return build


@pytest.fixture
def planned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RunPlan:
    """The plan of MATRIX with the fake builder; cma=32M is a cell the oracle cannot predict."""
    def predict_boot(cmdline: str, boot: object) -> tuple[oracle.Prediction, oracle.MemoryMap]:
        if "cma=32M" in cmdline:
            raise InputError("not modelled")
        return (oracle.Prediction("reserved", 16 << 20, 0, 0x80000000, None, (), "fake"),
                oracle.MemoryMap((), (), (), 0x80000000))

    monkeypatch.setattr(oracle, "predict_boot", predict_boot)
    monkeypatch.setattr(qemu, "qemu_version", lambda: "QEMU emulator version 9.9.9")
    checked: list[list[str]] = []
    sel = plan.select_cells(_request(tmp_path))
    the_plan = plan.plan_run(sel, Reporter(_console()[0]), lambda bs: checked.append([b.name for b in bs]),
                             _fake_builder(tmp_path))
    assert checked == [[BOARD]]
    return the_plan


# -- planning ------------------------------------------------------------------------------------


def test_the_plan_has_one_job_per_cell_with_all_an_executor_needs(planned: RunPlan, tmp_path: Path) -> None:
    assert [job.cell.cmdline for job in planned.jobs] == ["cma=16M", "cma=32M", "cma=0"]
    board = load_board(BOARD)
    for job in planned.jobs:
        assert job.slug == job.cell.slug
        assert job.kernel_cmdline == qemu.kernel_cmdline(board, job.cell.cmdline)
        assert job.spec.zimage == tmp_path / "cache" / "kernel" / "zImage"
        assert job.provenance == results.Provenance("6.1.99", str(tmp_path / "linux"), "s" * 64, "c" * 64,
                                                    "gcc 12", "QEMU emulator version 9.9.9")
    sha = {name: hashlib.sha256(data).hexdigest()
           for name, data in (("z", b"zImage bytes"), ("d", b"dtb bytes"), ("i", b"initramfs bytes"))}
    assert planned.jobs[0].artifacts == plan.Artifacts(sha["z"], sha["d"], sha["i"])


def test_expectations_come_from_the_oracle_unless_the_matrix_wrote_one(planned: RunPlan) -> None:
    by_cmdline = {job.cell.cmdline: job for job in planned.jobs}
    assert by_cmdline["cma=0"].expectation.source is ExpectationSource.MATRIX  # expect = none
    assert by_cmdline["cma=16M"].expectation.source is ExpectationSource.ORACLE
    verdict = by_cmdline["cma=32M"].expectation.judge(CmaBootReport(), [])
    assert verdict.status is Status.ERROR
    assert verdict.message == "the cma= oracle cannot predict this cell: not modelled"
    for job in planned.jobs:  # the CellJob an executor ships carries the same
        assert job.job.expectation == job.expectation and job.job.kernel_cmdline == job.kernel_cmdline
        assert (job.job.zimage.sha256, job.job.initrd.sha256) == (job.artifacts.zimage, job.artifacts.initrd)


def test_run_json_provenance_comes_from_the_plan_not_from_build_json(planned: RunPlan,
                                                                     tmp_path: Path) -> None:
    info = dict(planned.info)
    assert info["invocation"] == {
        "matrix": str(tmp_path / "m.toml"), "board": None, "cmdline": None,
        "kernel_src": str(tmp_path / "linux"), "series": str((tmp_path / "series").resolve()),
        "patches": [str((tmp_path / "extra.patch").resolve())], "jobs": 2, "retries": 0}
    assert info["kernels"] == {BOARD: {
        "release": "6.1.99", "source": str(tmp_path / "linux"), "source_identity": "id",
        "series_hash": "s" * 64, "config_hash": "c" * 64, "build_key": "k" * 64,
        "patches": [{"name": "0001-a.patch", "sha256": "a" * 64}], "defconfig": "vexpress_defconfig",
        "fragments": ["lean.config", "cma.config"]}}
    assert {"matrix", "qemu", "toolchain", "host", "harness_version"} <= set(info)
    assert info["matrix"] == "unit" and info["toolchain"] == "gcc 12"
    assert not (tmp_path / "cache" / "kernel" / "build.json").exists()


def test_a_results_root_that_cannot_take_results_stops_the_plan_before_the_host_check(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    sel = plan.select_cells(_request(tmp_path, results=tmp_path / "file"))

    def host_check(boards: Sequence[Board]) -> None:
        raise AssertionError("the host check ran")

    with pytest.raises(InputError, match="not a directory; results need a directory"):
        plan.plan_run(sel, Reporter(_console()[0]), host_check, _fake_builder(tmp_path))


def _run_json(directory: Path, build_key: str = "k" * 64) -> None:
    directory.mkdir(parents=True)
    (directory / "matrix.toml").write_text(MATRIX)
    (directory / "run.json").write_text(json.dumps({
        "run_id": "20260101-000000-abcd", "timestamp": "2026-01-01T00:00:00+00:00",
        "invocation": {"kernel_src": "/src/linux", "series": "/p/series", "patches": ["/p/x.patch"],
                       "board": BOARD, "cmdline": "cma=16M"},
        "kernels": {BOARD: {"build_key": build_key}}}))


def test_resume_makes_a_new_request_from_run_json(tmp_path: Path) -> None:
    partial = tmp_path / "results" / ".20260101-000000-abcd.partial"
    _run_json(partial)
    asked = _request(tmp_path, resume=partial, jobs=7, retries=2)
    resumed, keys = plan.resume_request(asked)
    kernel = KernelInputs(Path("/src/linux"), Path("/p/series"), (Path("/p/x.patch"),), 3)
    assert resumed == RunRequest(partial / "matrix.toml", BOARD, "cma=16M", kernel, 7, 2,
                                 tmp_path / "results", partial)
    assert keys == {BOARD: "k" * 64}
    assert asked.matrix == tmp_path / "m.toml"  # the request asked is left as it was
    sel = plan.select_cells(asked)
    assert sel.request == resumed and [c.cmdline for c in sel.cells] == ["cma=16M"]


def test_resume_refuses_a_kernel_that_changed_since_the_run_started(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    partial = tmp_path / "results" / ".20260101-000000-abcd.partial"
    _run_json(partial, build_key="old")
    monkeypatch.setattr(qemu, "qemu_version", lambda: "QEMU 9")
    sel = plan.select_cells(_request(tmp_path, resume=partial))
    with pytest.raises(InputError, match=f"--resume {partial}: the kernel for {BOARD} changed since the run"
                                         r" started \(series, config or source\); start a new run"):
        plan.plan_run(sel, Reporter(_console()[0]), lambda bs: None, _fake_builder(tmp_path))


@pytest.mark.parametrize("change,message", [
    ({"jobs": 0}, "-j/--jobs must be at least 1"),
    ({"retries": -1}, "--retries must be 0 or more"),
    ({"board": "no-such-board"}, "no-such-board"),
    ({"cmdline": "cma=1G"}, r"has no cell matching board=\* cmdline=cma=1G"),
])
def test_selecting_checks_the_request(tmp_path: Path, change: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message):
        plan.select_cells(_request(tmp_path, **change))


# -- executing -----------------------------------------------------------------------------------


class FakeExecutor:
    """Finishes the jobs in reverse order with ``statuses`` (by cmdline); raises ``stop`` after ``after``."""

    def __init__(self, statuses: Mapping[str, Status] | None = None, after: int | None = None,
                 stop: BaseException | None = None) -> None:
        self.statuses = statuses or {}
        self.after, self.stop = after, stop or KeyboardInterrupt()
        self.ran: list[str] = []
        self.on_disk_when_handed: list[bool] = []

    def describe(self, cells: int) -> str:
        return f"{cells} by a fake"

    def run(self, jobs: Sequence[PlannedCell], log_path: LogPath, on_result: OnResult) -> list[CellResult]:
        self.ran = [job.cell.cmdline for job in jobs]
        done: dict[str, CellResult] = {}
        for n, job in enumerate(reversed(jobs)):
            if n == self.after:
                raise self.stop
            log = log_path(job.slug)
            log.write_text(f"console of {job.kernel_cmdline}\n")
            status = self.statuses.get(job.cell.cmdline, Status.PASS)
            result = CellResult(job.cell, [CheckResult("boot", status, "m")], log, 1.0, 0.5,
                                {"cma.reserved_mib": "16"})
            on_result(result)
            self.on_disk_when_handed.append((log.parent.parent / "cells" / f"{job.slug}.xml").is_file())
            done[job.slug] = result
        return [done[job.slug] for job in jobs]


def _only_run(root: Path) -> Path:
    runs = [p for p in root.iterdir() if p.name != "latest"]
    assert len(runs) == 1, runs
    return runs[0]


def test_each_result_is_written_as_it_finishes_and_the_run_is_published(planned: RunPlan) -> None:
    out, text = _console()
    fake = FakeExecutor()
    assert execute(planned, fake, out, _console()[0]) == 0
    assert fake.on_disk_when_handed == [True, True, True]
    final = _only_run(planned.request.results)
    assert (planned.request.results / "latest").resolve() == final.resolve()
    info = json.loads((final / "run.json").read_text())
    assert info["run_id"] == final.name and info["kernels"] == planned.info["kernels"]
    assert (final / "matrix.toml").read_text() == MATRIX
    suites = list(parse_junit(final / "junit.xml"))
    assert [s.name for s in suites] == [job.cell.name for job in planned.jobs]
    props = {p.name: p.value for p in suites[0].properties()}
    assert props["kernel.cmdline"] == planned.jobs[0].kernel_cmdline
    assert props["qemu"] == "QEMU emulator version 9.9.9"
    assert set(json.loads((final / "metrics.json").read_text())) == {job.slug for job in planned.jobs}
    lines = text.getvalue().splitlines()
    assert lines[0] == "running 3 cell(s) of matrix unit, 3 by a fake"  # the executor says how
    assert lines[-3:] == ["3/3 cells met their expectation; results in " + str(final),
                          f"JUnit: {final / 'junit.xml'}", f"report: {final / 'report.html'}"]
    assert (final / "report.html").read_text().count('class="sq ') >= 3  # the grid, one square a cell


def test_each_cell_keeps_its_job_and_typed_result_beside_its_log(planned: RunPlan) -> None:
    """What ``cma-harness judge logs/<slug>.log --job ... --result ...`` reads back."""
    assert execute(planned, FakeExecutor(), _console()[0], _console()[0]) == 0
    logs = _only_run(planned.request.results) / "logs"
    for job in planned.jobs:
        loaded = CellJob.load(logs / f"{job.slug}.job.json")
        assert loaded.cell == job.cell and loaded.kernel_cmdline == job.kernel_cmdline
        assert loaded.expectation == job.expectation and loaded.initrd.sha256 == job.artifacts.initrd
        result = CellResult.load(logs / f"{job.slug}.result.json")
        assert result.log == logs / f"{job.slug}.log" and result.cell == job.cell
        assert [c.status for c in result.checks] == [Status.PASS]


def test_a_failed_check_is_exit_status_1_and_retries_are_announced(planned: RunPlan) -> None:
    out, text = _console()
    retried = replace(planned, request=replace(planned.request, retries=2, jobs=8))
    assert execute(retried, FakeExecutor({"cma=32M": Status.FAIL}), out, _console()[0]) == 1
    assert text.getvalue().splitlines()[0] == ("running 3 cell(s) of matrix unit, 3 by a fake, "
                                               "up to 2 retries each")


def test_the_local_executor_says_how_many_guests_run_at_once() -> None:
    console = _console()[0]
    assert LocalExecutor(2, 0, console).describe(3) == "2 at a time"
    assert LocalExecutor(8, 0, console).describe(3) == "3 at a time"


def test_an_interrupted_run_keeps_its_finished_cells_and_resume_runs_only_the_rest(planned: RunPlan) -> None:
    err, err_text = _console()
    with pytest.raises(KeyboardInterrupt):
        execute(planned, FakeExecutor(after=1), _console()[0], err)
    root = planned.request.results
    partial = _only_run(root)
    assert partial.name.endswith(".partial") and not (root / "latest").exists()
    assert [p.name for p in (partial / "cells").glob("*.xml")] == [f"{planned.jobs[-1].slug}.xml"]
    assert err_text.getvalue().strip() == (
        f"cma-harness: 1 of 3 cell(s) are kept in {partial}; "
        f"'cma-harness run --resume {partial}' completes the run")

    out, text = _console()
    again = FakeExecutor({"cma=16M": Status.FAIL})
    resumed = replace(planned, request=replace(planned.request, resume=partial))
    assert execute(resumed, again, out, _console()[0]) == 1
    assert again.ran == ["cma=16M", "cma=32M"]
    lines = text.getvalue().splitlines()
    assert lines[0] == f"resuming {partial.name[1:-len('.partial')]}: 1 of 3 cell(s) already done"
    assert "(and 1 cell(s) from before the interruption)" in lines
    final = _only_run(root)
    assert final.name == partial.name[1:-len(".partial")]
    assert [s.name for s in parse_junit(final / "junit.xml")] == [j.cell.name for j in planned.jobs]


def test_an_interrupted_resume_that_finished_nothing_keeps_the_run(planned: RunPlan) -> None:
    with pytest.raises(KeyboardInterrupt):
        execute(planned, FakeExecutor(after=1), _console()[0], _console()[0])
    partial = _only_run(planned.request.results)
    resumed = replace(planned, request=replace(planned.request, resume=partial))
    err, err_text = _console()
    with pytest.raises(KeyboardInterrupt):
        execute(resumed, FakeExecutor(after=0), _console()[0], err)
    assert _only_run(planned.request.results) == partial
    assert "1 of 3 cell(s) are kept in" in err_text.getvalue()


@pytest.mark.parametrize("stop", [KeyboardInterrupt(), EnvironmentProblem("cannot write x")])
def test_a_new_run_stopped_before_any_cell_finished_leaves_nothing(planned: RunPlan,
                                                                   stop: BaseException) -> None:
    err, err_text = _console()
    with pytest.raises(type(stop)):
        execute(planned, FakeExecutor(after=0, stop=stop), _console()[0], err)
    assert list(planned.request.results.iterdir()) == []
    assert err_text.getvalue() == ""


# -- the local executor --------------------------------------------------------------------------


def test_the_local_executor_runs_every_job_with_retries_and_hands_back_each_result(
        planned: RunPlan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    attempts: dict[str, int] = {}

    def run_job(job: CellJob, log: Path) -> CellResult:
        cell = job.cell
        attempts[cell.cmdline] = attempts.get(cell.cmdline, 0) + 1
        log.write_text(job.kernel_cmdline)
        flaky = cell.cmdline == "cma=32M" and attempts[cell.cmdline] == 1
        return CellResult(cell, [CheckResult("boot", Status.FAIL if flaky else Status.PASS, "m")], log, 0.1)

    monkeypatch.setattr(executor_mod, "run_job", run_job)
    handed: list[str] = []
    local = LocalExecutor(2, 1, _console()[0])
    got = local.run(planned.jobs, lambda slug: tmp_path / f"{slug}.log",
                    lambda r: handed.append(r.cell.cmdline))
    assert [r.cell.cmdline for r in got] == ["cma=16M", "cma=32M", "cma=0"]
    assert sorted(handed) == sorted(["cma=16M", "cma=32M", "cma=0"])
    assert attempts == {"cma=16M": 1, "cma=32M": 2, "cma=0": 1}
    assert got[1].properties["retry.flaky"] == "true"
    assert (tmp_path / f"{planned.jobs[1].slug}.log").read_text() == planned.jobs[1].kernel_cmdline


def test_a_full_disk_under_a_cell_log_is_an_environment_problem_and_the_log_goes(
        planned: RunPlan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def run_job(job: CellJob, log: Path) -> CellResult:
        log.write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(executor_mod, "run_job", run_job)
    log = tmp_path / "x.log"
    message = (f"cannot write {log}: No space left on device "
               r"\(cell .* did not finish; its half-written log was removed\)")
    with pytest.raises(EnvironmentProblem, match=message):
        executor_mod.cell_runner(planned.jobs[0])(log)
    assert not log.exists()


def test_the_matrix_fixture_is_what_select_cells_reads(tmp_path: Path) -> None:
    sel: Selection = plan.select_cells(_request(tmp_path))
    assert sel.matrix == load_matrix(tmp_path / "m.toml") and sel.resumed_keys == {}
    assert set(sel.boards) == {BOARD}

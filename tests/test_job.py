"""Cell jobs and cell results are data: JSON and back without loss; ``cell`` runs one job."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from harness import cellcmd
from harness.boards import load_board
from harness.cellresult import AreaInfo, CellResult, CmaFacts, Mark, SuiteRun
from harness.checks import CheckResult, CmaExpectation, Measurement, Status
from harness.errors import InputError
from harness.expectation import Expectation
from harness.job import Artifact, CellJob, make_job
from harness.matrix import Cell
from harness.qemu import BootSpec
from harness.results import Provenance
from harness.script import Budgets

PROV = Provenance("6.1.192", "/usr/src/linux-source-6.1.tar.xz", "s" * 64, "c" * 64, "gcc 12", "QEMU 7.2")
CELL = Cell("vexpress-a9", "cma=64M", CmaExpectation("reserved", 64), "a cell", ("alloc-free", "migrate"),
            ("cma-test/migrate/alloc-whole-area",), ("alloc-free",), xfail="known bug")


def _job(tmp_path: Path, cell: Cell = CELL) -> CellJob:
    for name in ("zImage", "board.dtb", "initramfs.cpio.gz"):
        (tmp_path / name).write_bytes(name.encode() * 100)
    spec = BootSpec(load_board("vexpress-a9"), tmp_path / "zImage", tmp_path / "board.dtb",
                    tmp_path / "initramfs.cpio.gz", "console=ttyAMA0 panic=-1 cma=64M")
    return make_job(cell, spec, Expectation.hand_written(CmaExpectation("reserved", 64)), PROV,
                    Budgets(suite=600.0), nonce="abc123")


def test_a_job_survives_json_unchanged_and_needs_no_board_file(tmp_path: Path) -> None:
    job = _job(tmp_path)
    path = tmp_path / "job.json"
    path.write_text(job.to_json())
    back = CellJob.load(path)
    assert back == job and back.board.file is None
    assert back.board.machine == "vexpress-a9" and back.budgets.suite == 600.0
    assert back.spec().zimage == tmp_path / "zImage"


def test_relative_artifacts_resolve_beside_the_job_file_and_are_verified(tmp_path: Path) -> None:
    job = _job(tmp_path)
    data = json.loads(job.to_json())
    for art in ("zimage", "dtb", "initrd"):
        data["artifacts"][art]["path"] = Path(data["artifacts"][art]["path"]).name
    (tmp_path / "sub").mkdir()
    for name in ("zImage", "board.dtb", "initramfs.cpio.gz"):
        (tmp_path / "sub" / name).write_bytes((tmp_path / name).read_bytes())
    path = tmp_path / "sub" / "job.json"
    path.write_text(json.dumps(data))
    assert CellJob.load(path).spec().initrd == tmp_path / "sub" / "initramfs.cpio.gz"
    (tmp_path / "sub" / "zImage").write_bytes(b"another build")
    with pytest.raises(InputError, match="differs from the job's"):
        CellJob.load(path).spec()
    (tmp_path / "sub" / "zImage").unlink()
    with pytest.raises(InputError, match="cannot read the boot file"):
        CellJob.load(path).spec()


@pytest.mark.parametrize("mutate, match", [
    (lambda d: d.update(schema=99), "not a cma-harness cell job of schema 1"),
    (lambda d: d["board"].update(toml="[qemu]\nmachine = 1\n"), "board vexpress-a9"),
    (lambda d: d.update(nonce="a b"), "'nonce' must be letters and digits"),
    (lambda d: d["cell"].update(suites="alloc-free"), "'suites' must be a list of strings"),
    (lambda d: d.pop("kernel_cmdline"), "'kernel_cmdline' is missing"),
])
def test_a_malformed_job_is_one_input_error_naming_the_field(tmp_path: Path, mutate: object,
                                                             match: str) -> None:
    data = json.loads(_job(tmp_path).to_json())
    mutate(data)  # type: ignore[operator]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=match):
        CellJob.load(path)


def test_a_result_survives_json_unchanged(tmp_path: Path) -> None:
    run = SuiteRun("cma-test/alloc-free", 4.5, {"reserved.used": "64"}, {"reserved.used": "65"},
                   (Measurement("cma-test/alloc-free", "latency_us.min", "162"),))
    result = CellResult(CELL, [CheckResult("boot", Status.PASS, "shell after 1.00s", seconds=1.0),
                               CheckResult("x", Status.ERROR, "m", "d", 0.5, True)],
                        tmp_path / "cell.log", 12.5, 1.0, {"odd": "v"},
                        (AreaInfo("reserved", 1 << 30, 1 << 26),),
                        (run,), CmaFacts(64, 1 << 30, None, 65536, None), Mark.FLAKY, 2)
    path = tmp_path / "cell.result.json"
    path.write_text(result.to_json(tmp_path))
    assert json.loads(path.read_text())["log"] == "cell.log"
    back = CellResult.load(path)
    assert back == result and back.properties == result.properties


def test_cell_runs_one_job_and_writes_log_result_and_testsuite(tmp_path: Path) -> None:
    """A ``skip`` cell: the whole command without booting anything."""
    job = _job(tmp_path, replace(CELL, xfail="", skip="not on this host"))
    path = tmp_path / "job.json"
    path.write_text(job.to_json())
    assert cellcmd.main(["cell", str(path), "-o", str(tmp_path / "out")]) == 0
    slug = job.cell.slug
    result = CellResult.load(tmp_path / "out" / f"{slug}.result.json")
    assert [(c.name, c.status) for c in result.checks] == [("boot", Status.SKIP)]
    assert (tmp_path / "out" / f"{slug}.log").read_text().startswith("not booted")
    assert "<skipped" in (tmp_path / "out" / f"{slug}.xml").read_text()


def test_cell_with_a_bad_job_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "job.json").write_text("{")
    assert cellcmd.main(["cell", str(tmp_path / "job.json"), "-o", str(tmp_path / "out")]) == 2
    assert "cma-harness: error:" in capsys.readouterr().err


def test_artifact_of_hashes_the_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"abc")
    assert Artifact.of(tmp_path / "f").sha256 == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")

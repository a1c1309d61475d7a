"""The LAVA executor without a lab: LAVA's log back to a console, the artifact server, job states.

The real lab is in tests/test_lava_integration.py.
"""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from harness import lava
from harness.checks import Status
from harness.job import CellJob
from harness.judge import judge
from harness.lavaexec import JOBS_FILE, ArtifactServer, LavaClient, LavaExecutor, console_of
from harness.plan import PlannedCell

CELL = Path(__file__).parent / "fixtures" / "cells" / "vexpress-a9_cma=64M"


def _lava_log(console: bytes) -> str:
    """A LAVA job log holding ``console`` the way LAVA 2023.01 logs it: one record per line,
    ``\\r`` dropped, other levels around (one with a YAML tag, as LAVA writes sizes)."""
    lines = ['- {"dt": "2026-12-04T20:00:00.000000", "lvl": "info", "msg": "start: 1 tmpfs-deploy"}',
             '- {"dt": "2026-12-04T20:00:00.100000", "lvl": "results", "msg": {"size": ! "14081"}}']
    for line in console.decode(errors="replace").replace("\r", "").split("\n"):
        lines.append("- " + json.dumps({"dt": "2026-12-04T20:00:01.000000", "lvl": "target", "msg": line}))
    lines.append('- {"dt": "2026-12-04T20:00:09.000000", "lvl": "info", "msg": "Job finished correctly"}')
    return "\n".join(lines) + "\n"


def test_the_console_comes_back_from_lavas_log_and_judges_the_same() -> None:
    job = CellJob.load(CELL / "job.json")
    original = (CELL / f"{job.cell.slug}.log").read_bytes()
    console = console_of(_lava_log(original))
    assert b"\r" not in console and console.count(b"\n") >= original.count(b"\n") - 1
    here, there = judge(original, job), judge(console, job)
    assert [(c.name, c.status) for c in there.checks] == [(c.name, c.status) for c in here.checks]
    assert there.status is Status.PASS


def test_the_artifact_server_serves_each_file_by_its_sha256_only(tmp_path: Path) -> None:
    blob = tmp_path / "zImage"
    blob.write_bytes(b"\x00kernel" * 1000)
    server = ArtifactServer("127.0.0.1:0", {"ab" * 32: blob})
    try:
        with urllib.request.urlopen(server.url + "ab" * 32) as resp:  # noqa: S310 - our own server
            assert resp.read() == blob.read_bytes()
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(server.url + "zImage")  # noqa: S310
    finally:
        server.close()


class FakeLab(LavaClient):
    """Answers as LAVA does: jobs finish on the second look with the given health."""

    def __init__(self, health: str, console: bytes = b"", comment: str = "") -> None:
        self.url = "http://lab.example/"
        self.health, self.console, self.comment = health, console, comment
        self.submitted: list[dict[str, Any]] = []
        self.looks: dict[int, int] = {}
        self.cancelled: list[int] = []

    def submit(self, definition: str) -> int:
        self.submitted.append(json.loads(definition))
        return 100 + len(self.submitted)

    def job(self, job_id: int) -> dict[str, Any]:
        self.looks[job_id] = self.looks.get(job_id, 0) + 1
        if self.looks[job_id] < 2:
            return {"state": "Running", "health": "Unknown"}
        return {"state": "Finished", "health": self.health, "actual_device": "qemu-01",
                "failure_comment": self.comment}

    def failure(self, job_id: int) -> tuple[str, str]:
        return ("Infrastructure", self.comment) if self.comment else ("", "")

    def logs(self, job_id: int) -> str:
        return _lava_log(self.console)

    def cancel(self, job_id: int) -> None:
        self.cancelled.append(job_id)

    def cancel_all(self, job_ids: Sequence[int], rounds: int = 3) -> None:
        for job_id in job_ids:
            self.cancel(job_id)


def _executor(lab: FakeLab) -> LavaExecutor:
    settings = lava.LavaSettings(artifact_url="http://files.example/")
    return LavaExecutor(lab, settings, "", Console(file=io.StringIO()))


def test_a_complete_job_is_judged_and_an_incomplete_one_is_an_infrastructure_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("harness.lavaexec.POLL_S", 0.01)
    job = CellJob.load(CELL / "job.json")
    planned = [_planned_of(job)]
    (tmp_path / "logs").mkdir()
    log_path = lambda slug: tmp_path / "logs" / f"{slug}.log"  # noqa: E731
    ok = FakeLab("Complete", (CELL / f"{job.cell.slug}.log").read_bytes())
    (result,) = _executor(ok).run(planned, log_path, lambda r: None)
    assert result.status is Status.PASS and result.extra["host"] == "lava:qemu-01"
    assert result.extra["lava.url"] == "http://lab.example/scheduler/job/101"
    assert json.loads((tmp_path / JOBS_FILE).read_text()) == {job.cell.slug: 101}

    (tmp_path / JOBS_FILE).unlink()
    bad = FakeLab("Incomplete", comment="lava-dispatcher: unable to download http://files.example/x")
    (result,) = _executor(bad).run(planned, log_path, lambda r: None)
    (check,) = result.checks
    assert check.status is Status.ERROR and check.infrastructure
    assert ("LAVA job 101 Incomplete: Infrastructure error: lava-dispatcher: unable to download"
            in check.message)
    assert result.extra["lava.error_type"] == "Infrastructure"
    assert "http://lab.example/scheduler/job/101" in check.message


def test_resume_re_attaches_to_the_submitted_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("harness.lavaexec.POLL_S", 0.01)
    job = CellJob.load(CELL / "job.json")
    (tmp_path / "logs").mkdir()
    (tmp_path / JOBS_FILE).write_text(json.dumps({job.cell.slug: 77}))
    lab = FakeLab("Complete", (CELL / f"{job.cell.slug}.log").read_bytes())
    (result,) = _executor(lab).run([_planned_of(job)], lambda s: tmp_path / "logs" / f"{s}.log",
                                   lambda r: None)
    assert lab.submitted == [] and result.extra["lava.job_id"] == "77"


def test_an_interrupt_cancels_every_submitted_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    job = CellJob.load(CELL / "job.json")
    (tmp_path / "logs").mkdir()
    lab = FakeLab("Complete")

    def interrupted(job_id: int) -> dict[str, Any]:
        raise KeyboardInterrupt

    monkeypatch.setattr(lab, "job", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _executor(lab).run([_planned_of(job)], lambda s: tmp_path / "logs" / f"{s}.log", lambda r: None)
    assert lab.cancelled == [101]
    assert json.loads((tmp_path / JOBS_FILE).read_text()) == {}  # --resume submits it again


def _planned_of(job: CellJob) -> PlannedCell:
    """A planned cell of ``job`` (the executor reads only its job)."""
    return PlannedCell(job.spec(verify=False), None, job)  # type: ignore[arg-type]

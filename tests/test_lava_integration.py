"""Integration: the matrix through a real LAVA lab on this machine (scripts/lava-lab.sh).

``lava-lab.sh up`` installs LAVA 2023.01 from Debian's archive once (~2 min) and
starts its web service, scheduler and two workers with a qemu device each.  The
six cells of tests/fixtures/matrices/hosts.toml (vexpress-a9 and virt) run as
LAVA jobs, their boot files served by the harness; ``compare`` against a local
run of the same cells must show nothing changed.  A cell whose boot files LAVA
cannot download must be an infrastructure error with LAVA's own comment.
Skipped (with the reason) only where LAVA cannot be installed: not root, or not
Debian 12.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from junitparser import Error, JUnitXml

from harness.cache import cache_root
from tests.conftest import default_sigint

pytestmark = pytest.mark.integration
REPO = Path(__file__).parents[1]
CLI = [sys.executable, "-m", "harness.cli"]
MATRIX = REPO / "tests/fixtures/matrices/hosts.toml"
LAB = REPO / "scripts" / "lava-lab.sh"
URL = "http://127.0.0.1:8000/"


def _why_not() -> str:
    if os.geteuid() != 0:
        return "LAVA's packages and services need root"
    release = Path("/etc/os-release").read_text() if Path("/etc/os-release").exists() else ""
    if "VERSION_CODENAME=bookworm" not in release:
        return "lava-lab.sh installs LAVA 2023.01 from Debian 12 (bookworm)'s archive"
    return ""


@pytest.fixture(scope="module")
def lab() -> Iterator[Path]:
    """A running lab; its API token file.  Stopped again (the packages stay)."""
    if _why_not():
        pytest.skip(_why_not())
    up = subprocess.run(["bash", str(LAB), "up"], capture_output=True, text=True, timeout=1800)
    assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-3000:]
    try:
        yield cache_root() / "lava-lab" / "token"
    finally:
        subprocess.run(["bash", str(LAB), "down"], capture_output=True, text=True, timeout=300)


def _cases(junit: Path) -> dict[str, dict[str, str]]:
    return {str(s.name): {c.name: (type(c.result[0]).__name__ if c.result else "passed") for c in s}
            for s in JUnitXml.fromfile(str(junit))}


def test_the_matrix_through_lava_has_the_same_testcases_as_a_local_run(lab: Path, tmp_path: Path) -> None:
    local = subprocess.run([*CLI, "run", "-m", str(MATRIX), "-j", "2", "-o", str(tmp_path / "local")],
                           capture_output=True, text=True, cwd=REPO, timeout=1800)
    assert local.returncode == 0, local.stdout[-3000:] + local.stderr
    run = subprocess.run([*CLI, "run", "-m", str(MATRIX), "--lava", URL, "--lava-token-file", str(lab),
                          "--lava-serve", "127.0.0.1:0", "-o", str(tmp_path / "lava")],
                         capture_output=True, text=True, cwd=REPO, timeout=1800)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr
    base, new = (_cases(tmp_path / name / "latest" / "junit.xml") for name in ("local", "lava"))
    assert base.keys() == new.keys() and len(new) == 6
    for name in new:
        assert new[name] == base[name], name
    for suite in JUnitXml.fromfile(str(tmp_path / "lava" / "latest" / "junit.xml")):
        props = {p.name: p.value for p in suite.properties()}
        assert props["host"].startswith("lava:qemu-0") and props["lava.health"] == "Complete"
        assert props["lava.url"].startswith(f"{URL}scheduler/job/")
    compare = subprocess.run([*CLI, "compare", str(tmp_path / "local" / "latest"),
                              str(tmp_path / "lava" / "latest"), "-o", str(tmp_path / "cmp")],
                             capture_output=True, text=True, cwd=REPO, timeout=120)
    assert compare.returncode == 0, compare.stdout + compare.stderr


def test_a_job_lava_cannot_deploy_is_an_infrastructure_error(lab: Path, tmp_path: Path) -> None:
    run = subprocess.run([*CLI, "run", "-m", str(MATRIX), "--board", "vexpress-a9", "--cmdline", "cma=32M",
                          "--lava", URL, "--lava-token-file", str(lab),
                          "--lava-artifact-url", f"{URL}cma-harness-missing/", "-o", str(tmp_path / "r")],
                         capture_output=True, text=True, cwd=REPO, timeout=900)
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr
    (suite,) = JUnitXml.fromfile(str(tmp_path / "r" / "latest" / "junit.xml"))
    (boot,) = [c for c in suite if c.name == "boot"]
    error = boot.result[0]
    assert isinstance(error, Error) and error.type == "infrastructure", boot
    assert "LAVA job" in (error.message or "") and "Incomplete" in (error.message or "")
    # LAVA's own reason (error_type and error_msg of its results), not a guess of ours:
    assert "error: " in (error.message or "") and "Resource unavailable" in (error.message or "")
    assert f"{URL}scheduler/job/" in (error.message or "")


def _jobs(token: Path, ids: list[int]) -> dict[int, dict[str, str]]:
    """The REST records of the jobs ``ids``."""
    out = {}
    for job_id in ids:
        req = urllib.request.Request(f"{URL}api/v0.2/jobs/{job_id}/",
                                     headers={"Authorization": f"Token {token.read_text().strip()}"})
        with urllib.request.urlopen(req) as resp:  # noqa: S310 - the lab on this machine
            out[job_id] = json.load(resp)
    return out


def test_ctrl_c_cancels_the_submitted_jobs(lab: Path, tmp_path: Path) -> None:
    proc = subprocess.Popen([*CLI, "run", "-m", str(MATRIX), "--lava", URL, "--lava-token-file", str(lab),
                             "--lava-serve", "127.0.0.1:0", "-o", str(tmp_path / "r")], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_sigint)
    ids: list[int] = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        state = next(iter((tmp_path / "r").glob("*/lava-jobs.json")), None)
        ids = list(json.loads(state.read_text()).values()) if state and state.stat().st_size else []
        if len(ids) == 6 and any(j["state"] == "Running" for j in _jobs(lab, ids).values()):
            break
        time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out[-2000:] + err[-2000:]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(j["state"] != "Finished" for j in _jobs(lab, ids).values()):
        time.sleep(1)
    healths = {j["id"]: j["health"] for j in _jobs(lab, ids).values()}
    assert set(healths.values()) <= {"Canceled", "Complete"} and "Canceled" in healths.values(), healths

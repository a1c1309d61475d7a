"""Faults injected for real, on real boots: nothing is lost, no process is left behind.

Each test runs ``cma-harness run`` on a small matrix of quick vexpress-a9 cells (no
suites), hurts it from outside the way an unlucky CI machine would, and checks that
the other cells are unaffected, that every finished cell is on disk, that no QEMU
outlives the harness, and that ``--resume`` completes the run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from junitparser import Error, JUnitXml

from tests.test_integration import CLI, REPO, _qemu_children

pytestmark = pytest.mark.integration
CMDLINES = ("cma=32M", "cma=48M", "cma=64M")


def _matrix(tmp_path: Path) -> Path:
    path = tmp_path / "three.toml"
    path.write_text('boards = ["vexpress-a9"]\ncmdlines = [' + ", ".join(f'"{c}"' for c in CMDLINES) + "]\n")
    return path


def _start(tmp_path: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*CLI, "run", "-j1", "-m", str(_matrix(tmp_path)), "-o", str(tmp_path / "res"),
                             *extra], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _first_guest(proc: subprocess.Popen[str]) -> int:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        guests = _qemu_children(proc.pid)
        if guests:
            return guests[0]
        time.sleep(0.05)
    raise AssertionError("QEMU never started")


def _suites(junit: Path) -> dict[str, tuple[int, int]]:
    """testsuite name -> (failures, errors) of a junit.xml."""
    return {s.name: (s.failures, s.errors) for s in JUnitXml.fromfile(str(junit))}


def _error_types(junit: Path, suite_name: str) -> dict[str, str]:
    """testcase name -> its <error> type, in one testsuite."""
    suite = next(s for s in JUnitXml.fromfile(str(junit)) if s.name == suite_name)
    return {case.name: r.type for case in suite for r in case.result if isinstance(r, Error)}


def _gone(pids: list[int], within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not [p for p in pids if Path(f"/proc/{p}").exists()]:
            return True
        time.sleep(0.05)
    return False


def test_qemu_killed_mid_cell_is_that_cells_error_and_the_others_run(tmp_path: Path) -> None:
    proc = _start(tmp_path)
    guest = _first_guest(proc)
    os.kill(guest, signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1, stdout[-2000:] + stderr[-2000:]
    suites = _suites(tmp_path / "res" / "latest" / "junit.xml")
    assert len(suites) == len(CMDLINES)
    hurt = [name for name, (_, errors) in suites.items() if errors]
    assert len(hurt) == 1, suites
    assert all(counts == (0, 0) for name, counts in suites.items() if name not in hurt), suites
    types = _error_types(tmp_path / "res" / "latest" / "junit.xml", hurt[0])
    assert set(types.values()) == {"infrastructure"}, types
    assert _gone([guest])


def test_qemu_that_exits_at_once_is_an_infrastructure_error(tmp_path: Path) -> None:
    """A board whose QEMU refuses to start (here an option it does not know)."""
    boards_dir = tmp_path / "boards"
    boards_dir.mkdir()
    text = (REPO / "boards" / "vexpress-a9.toml").read_text()
    text = text.replace("extra_args = []", 'extra_args = ["-no-such-option"]\nallow_unsafe_args = true')
    (boards_dir / "broken-a9.toml").write_text(text)
    matrix = tmp_path / "one.toml"
    matrix.write_text('boards = ["broken-a9"]\ncmdlines = ["cma=64M"]\n')
    proc = subprocess.run([*CLI, "run", "-m", str(matrix), "--boards-dir", str(boards_dir), "-o",
                           str(tmp_path / "res")], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    junit = tmp_path / "res" / "latest" / "junit.xml"
    assert _error_types(junit, "broken-a9:cma=64M") == {"boot": "infrastructure"}
    assert "QEMU exited with status 1 before the kernel ran" in junit.read_text()


def test_harness_sigkilled_mid_run_keeps_its_cells_and_resume_completes(tmp_path: Path) -> None:
    proc = _start(tmp_path)
    deadline = time.monotonic() + 300
    partial: list[Path] = []
    while time.monotonic() < deadline and not partial:
        partial = [p for p in (tmp_path / "res").glob(".*.partial") if any(p.glob("cells/*.xml"))]
        time.sleep(0.05)
    assert partial, "no cell finished"
    guests = _qemu_children(proc.pid)
    proc.kill()
    proc.communicate(timeout=30)
    assert _gone(guests), "QEMU outlived the SIGKILLed harness"
    done = {p.name for p in partial[0].glob("cells/*.xml")}
    assert done
    resumed = subprocess.run([*CLI, "run", "--resume", str(partial[0])], cwd=REPO, capture_output=True,
                             text=True, timeout=300, check=False)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    final = tmp_path / "res" / "latest"
    assert done <= {p.name for p in final.glob("cells/*.xml")}
    suites = _suites(final / "junit.xml")
    assert len(suites) == len(CMDLINES) and all(c == (0, 0) for c in suites.values()), suites

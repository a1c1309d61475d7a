"""Shared fixtures: paths to committed real console logs and fixture series."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

# A developer's own ~/.config/cma-harness/config.toml (its [hosts] among them) must not
# change what the tests run, here or in the harness processes they start.
os.environ["CMA_HARNESS_CONFIG"] = str(Path(__file__).parent / "fixtures" / "no-user-config.toml")

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).parents[1]
CLI = [sys.executable, "-m", "harness.cli"]


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


def console_log(name: str) -> str:
    """A committed real console log, ``\\r`` removed."""
    return (FIXTURES / "consoles" / name).read_bytes().decode("utf-8", "replace").replace("\r", "")


def processes_with(marker: str) -> list[int]:
    """PIDs of live processes whose command line holds ``marker``."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker in (proc / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def kernel_tree(tmp_path: Path) -> Path:
    """A minimal kernel tree (top Makefile of 6.1 and a Kconfig) at ``tmp_path/linux``."""
    tree = tmp_path / "linux"
    tree.mkdir()
    (tree / "Makefile").write_text("VERSION = 6\nPATCHLEVEL = 1\n")
    (tree / "Kconfig").write_text("")
    return tree


def default_sigint() -> None:
    """``preexec_fn`` of a harness started by a test that sends it Ctrl-C: SIGINT's default
    disposition.  A Ctrl-C from a terminal reaches the harness even when this test runs as a
    background job (POSIX: a non-interactive shell starts ``cmd &`` with SIGINT ignored, and
    Python keeps an inherited SIG_IGN, so the harness would never see the signal)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@dataclass(frozen=True)
class DefaultRun:
    """The default matrix run once per test session (``run -j2``): its process and its results."""

    proc: subprocess.CompletedProcess[str]
    run_dir: Path


@pytest.fixture(scope="session")
def default_matrix_run(tmp_path_factory: pytest.TempPathFactory) -> DefaultRun:
    """The default matrix, four boards, two guests at a time (several minutes): shared by the
    test that checks its verdicts and the test that opens its report in a browser."""
    out = tmp_path_factory.mktemp("default-matrix")
    proc = subprocess.run([*CLI, "run", "-j2", "-o", str(out)], capture_output=True, text=True,
                          cwd=REPO, timeout=3600)
    return DefaultRun(proc, (out / "latest").resolve())

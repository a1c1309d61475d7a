"""The wheel carries the boards, series, fragments, rootfs sources and the default matrix.

Builds the wheel from this checkout, installs it into a fresh venv (its
dependencies from the package index, as a user's ``pip install`` does) and runs
the installed ``cma-harness`` from an empty temporary directory, far from the
checkout, so nothing can be found relative to the source tree.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``bin/`` of a fresh venv holding the wheel built from this checkout."""
    work = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(work / "dist"),
                    str(REPO)], check=True, capture_output=True)
    wheel = next((work / "dist").glob("cma_harness-*.whl"))
    subprocess.run([sys.executable, "-m", "venv", str(work / "venv")], check=True)
    pip = [str(work / "venv" / "bin" / "python"), "-m", "pip", "install", "-q",
           "--disable-pip-version-check"]
    subprocess.run([*pip, str(wheel)], check=True, capture_output=True)
    return work / "venv" / "bin"


def _run(installed: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(installed / "cma-harness"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)


def test_wheel_holds_the_data() -> None:
    """Every board, patch, fragment and guest source of the checkout is in the wheel."""
    dist = Path(os.environ.get("TMPDIR", "/tmp"))
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                          str(dist / f"cma-wheel-{os.getpid()}"), str(REPO)], capture_output=True)
    assert out.returncode == 0, out.stderr
    wheel = next((dist / f"cma-wheel-{os.getpid()}").glob("*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"harness/data/{p.relative_to(REPO)}"
                for top in ("boards", "kernel-patches", "rootfs")
                for p in (REPO / top).rglob("*") if p.is_file()}
    assert expected <= names, sorted(expected - names)
    assert "harness/matrices/default.toml" in names
    assert "harness/data/scripts/install-deps.sh" in names


def test_installed_wheel_lists_the_default_matrix_from_anywhere(installed: Path, tmp_path: Path) -> None:
    out = _run(installed, tmp_path, "run", "--list")
    assert out.returncode == 0, out.stderr
    for board in ("vexpress-a9", "vexpress-a15", "smdkc210", "virt"):
        assert board in out.stdout
    assert "64 cell" in out.stdout or out.stdout.count("cma=") >= 64, out.stdout[-2000:]
    assert not any(tmp_path.iterdir()), "run --list wrote into the working directory"


def test_installed_wheel_doctor_runs_from_anywhere(installed: Path, tmp_path: Path) -> None:
    out = _run(installed, tmp_path, "doctor")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "error" not in out.stderr


def test_installed_wheel_takes_a_users_board_by_path(installed: Path, tmp_path: Path) -> None:
    """A board file of the user's own, outside the package, given by path."""
    (tmp_path / "boards").mkdir()
    (tmp_path / "boards" / "my-a9.toml").write_text((REPO / "boards" / "vexpress-a9.toml").read_text())
    mat = tmp_path / "mine.toml"
    mat.write_text('boards = ["my-a9"]\ncmdlines = ["cma=32M"]\n')
    out = _run(installed, tmp_path, "run", "--list", "-m", str(mat), "--boards-dir", "boards")
    assert out.returncode == 0, out.stderr
    assert "my-a9" in out.stdout and "cma=32M" in out.stdout


def test_the_wheels_install_deps_installs_host_packages_only(installed: Path, tmp_path: Path) -> None:
    """The copy in site-packages has no checkout beside it: no venv is made inside the package."""
    find = subprocess.run([str(installed / "python"), "-c",
                           "import harness.paths as p; print(p.INSTALL_DEPS)"],
                          cwd=tmp_path, capture_output=True, text=True, check=True)
    script = Path(find.stdout.strip())
    assert script.is_file() and "site-packages" in str(script)
    out = subprocess.run(["bash", str(script)], cwd=tmp_path, capture_output=True, text=True,
                         check=False, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stdout + out.stderr
    assert not (script.parents[1] / ".venv").exists()

"""A new user's machine: a minimal Debian 12 root gets everything from scripts/install-deps.sh.

The root comes from ``scripts/clean-root.sh`` (debootstrap, made once per machine
and cached); each run of this test starts from a fresh copy of it, copies this
checkout in (the files git tracks, and new ones it does not ignore), and runs
inside it: ``scripts/install-deps.sh``, ``cma-harness doctor`` (every tool the
default matrix needs, each named with its package) and ``tests/clean_root/probe.py``
(unpack, patch, configure, ``headers_install``, cross-compile the guest programs).
Dropping any package the build or a boot needs from install-deps' list makes one of
the three fail; the packages only tests use (openssh-server and iproute2 for the SSH
hosts, lava-common for LAVA's job schema) are proven by those tests instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).parents[1]
CLEAN_ROOT = REPO / "scripts" / "clean-root.sh"
INSIDE = "/root/cma-harness"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (debootstrap, chroot, mount)"),
]


def _checkout_files() -> list[str]:
    out = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others",
                          "--exclude-standard"], capture_output=True, check=True).stdout
    return [name for name in out.decode().split("\0") if name and (REPO / name).is_file()]


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    """A fresh clean root holding a copy of this checkout at /root/cma-harness."""
    path = tmp_path / "root"
    subprocess.run([str(CLEAN_ROOT), "create", str(path)], check=True, capture_output=True)
    try:
        for name in _checkout_files():
            dest = path / INSIDE.lstrip("/") / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest)
        yield path
    finally:
        subprocess.run([str(CLEAN_ROOT), "destroy", str(path)], check=False)


def _inside(root: Path, *argv: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CLEAN_ROOT), "exec", str(root), *argv], capture_output=True, text=True,
                          timeout=timeout, check=False, stdin=subprocess.DEVNULL)


def _said(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"


def test_install_deps_alone_makes_a_clean_debian_12_root_ready(root: Path) -> None:
    deps = _inside(root, "bash", f"{INSIDE}/scripts/install-deps.sh")
    assert deps.returncode == 0, _said(deps)
    doctor = _inside(root, f"{INSIDE}/.venv/bin/cma-harness", "doctor")
    assert doctor.returncode == 0, _said(doctor)
    probe = _inside(root, f"{INSIDE}/.venv/bin/python", f"{INSIDE}/tests/clean_root/probe.py")
    assert probe.returncode == 0, _said(probe)
    assert "clean-root probe: ok" in probe.stdout

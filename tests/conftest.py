"""Shared fixtures: paths to committed real console logs and fixture series."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


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


OWN_KERNEL_ENV = "CMA_HARNESS_OWN_KERNEL_TESTS"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``own_kernel`` tests (each builds kernels nothing else shares, 12+ minutes cold)
    unless ``CMA_HARNESS_OWN_KERNEL_TESTS=1``; ``make test-git-tree`` sets it."""
    if os.environ.get(OWN_KERNEL_ENV) == "1":
        return
    skip = pytest.mark.skip(reason=f"builds kernels of its own (12+ min cold); set {OWN_KERNEL_ENV}=1 "
                                   "or run make test-git-tree")
    for item in items:
        if "own_kernel" in item.keywords:
            item.add_marker(skip)

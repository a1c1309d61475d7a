"""Shared fixtures: paths to committed real console logs and fixture series."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


def console_log(name: str) -> str:
    """A committed real console log, ``\\r`` removed."""
    return (FIXTURES / "consoles" / name).read_bytes().decode("utf-8", "replace").replace("\r", "")

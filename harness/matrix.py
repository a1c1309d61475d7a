"""Matrices as data: which boards boot with which kernel command lines, and what to expect.

A matrix file (TOML)::

    name = "default"
    boards = ["vexpress-a9"]

    [[cells]]
    cmdline = "cma=32M"
    expect = { cma = "reserved", size_mib = 32 }

Every cell runs on every board of ``boards`` (a cell may narrow that with its
own ``boards`` list).  ``expect.cma`` is ``reserved``, ``failed`` or ``none``
(see :class:`harness.checks.CmaExpectation`).

``suites`` (top level, or per cell) names the cma-test suites to run in cells
that expect a CMA area; ``required_subtests`` lists KTAP tests that must have
run and passed there, so a suite that quietly skips its proof cannot pass.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.checks import CmaExpectation
from harness.cmdline import validate_cmdline
from harness.errors import InputError

DEFAULT_MATRIX = Path(__file__).resolve().parent / "matrices" / "default.toml"
_OUTCOMES = ("reserved", "failed", "none")
# The suites of rootfs/cma-test (its suites[] table), plus the kernel's own
# tools/testing/selftests/dmabuf-heaps run against the CMA heap.
KNOWN_SUITES = ("alloc-free", "exhaustion", "migrate", "dma", "replay", "concurrency", "dmabuf-heaps")


@dataclass(frozen=True)
class Cell:
    """One matrix cell: a board booted with a command line, and its expectation.

    ``cmdline`` is the cell's own part of the kernel command line (the board's
    console arguments are added at boot).
    """

    board: str
    cmdline: str
    expect: CmaExpectation
    description: str = ""
    suites: tuple[str, ...] = ()
    required: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """``board:cmdline``, the JUnit testsuite name; ``(default)`` for an empty cmdline."""
        return f"{self.board}:{self.cmdline or '(default)'}"

    @property
    def slug(self) -> str:
        """A file-name-safe form of :attr:`name`."""
        return re.sub(r"[^A-Za-z0-9._=@-]+", "_", self.name).strip("_")


@dataclass(frozen=True)
class Matrix:
    """A loaded matrix: its name, source file and the expanded cells."""

    name: str
    path: Path
    cells: tuple[Cell, ...]


def _expectation(raw: Any, where: str) -> CmaExpectation:
    if not isinstance(raw, dict) or "cma" not in raw:
        raise InputError(f"{where}: 'expect' must be a table with a 'cma' key")
    outcome = raw["cma"]
    if outcome not in _OUTCOMES:
        raise InputError(f"{where}: expect.cma must be one of {', '.join(_OUTCOMES)}, "
                         f"got {outcome!r}")
    size = raw.get("size_mib")
    if outcome == "none":
        if size is not None:
            raise InputError(f"{where}: expect.size_mib makes no sense with cma = 'none'")
        return CmaExpectation("none")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InputError(f"{where}: expect.size_mib (MiB, an integer) is required with "
                         f"cma = {outcome!r}")
    return CmaExpectation(outcome, size)


def _names(raw: Any, where: str, key: str, known: tuple[str, ...] | None = None) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise InputError(f"{where}: '{key}' must be a list of strings")
    if known is not None:
        unknown = [x for x in raw if x not in known]
        if unknown:
            raise InputError(f"{where}: unknown suite(s) {', '.join(unknown)} in '{key}' "
                             f"(known: {', '.join(known)})")
    return tuple(raw)


def parse_matrix(data: dict[str, Any], path: Path) -> Matrix:
    """Expand a parsed matrix file into cells.

    Raises:
        InputError: a missing or mistyped key (the message names the file and
            key), an unsafe cmdline, or a matrix that expands to no cell.
    """
    boards = data.get("boards")
    if not isinstance(boards, list) or not boards or not all(isinstance(b, str) for b in boards):
        raise InputError(f"{path}: 'boards' must be a non-empty list of board names")
    suites = _names(data.get("suites", []), str(path), "suites", KNOWN_SUITES)
    required = _names(data.get("required_subtests", []), str(path), "required_subtests")
    raw_cells = data.get("cells")
    if not isinstance(raw_cells, list) or not raw_cells:
        raise InputError(f"{path}: no [[cells]] defined")
    cells = []
    for i, raw in enumerate(raw_cells):
        where = f"{path}: cells[{i}]"
        if not isinstance(raw, dict):
            raise InputError(f"{where}: must be a table")
        unknown = set(raw) - {"cmdline", "expect", "boards", "description", "suites"}
        if unknown:
            raise InputError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        cmdline = raw.get("cmdline", "")
        if not isinstance(cmdline, str):
            raise InputError(f"{where}: 'cmdline' must be a string")
        try:
            validate_cmdline(cmdline)
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from exc
        expect = _expectation(raw.get("expect"), where)
        cell_suites = _names(raw["suites"], where, "suites", KNOWN_SUITES) if "suites" in raw else suites
        if expect.outcome != "reserved":
            cell_suites = ()  # no default CMA area for the suites to work on
        for board in raw.get("boards", boards):
            cells.append(Cell(board, cmdline, expect, str(raw.get("description", "")), cell_suites,
                              required if cell_suites else ()))
    return Matrix(str(data.get("name", path.stem)), path, tuple(cells))


def load_matrix(path: Path = DEFAULT_MATRIX) -> Matrix:
    """Read and expand a matrix file.

    Raises:
        InputError: unreadable file, TOML syntax error, or see :func:`parse_matrix`.
    """
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise InputError(f"cannot read matrix {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: {exc}") from exc
    return parse_matrix(data, path)


def filter_cells(matrix: Matrix, board: str | None, cmdline: str | None) -> list[Cell]:
    """Cells of ``matrix`` on ``board`` (if given) whose cmdline equals ``cmdline`` (if given).

    Raises:
        InputError: the filters leave nothing to run.
    """
    cells = [c for c in matrix.cells
             if (board is None or c.board == board) and (cmdline is None or c.cmdline == cmdline)]
    if not cells:
        raise InputError(f"matrix {matrix.path} has no cell matching "
                         f"board={board or '*'} cmdline={cmdline if cmdline is not None else '*'}")
    return cells

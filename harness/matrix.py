"""Matrices as data: which boards boot with which kernel command lines, and what to expect.

A matrix file (TOML) crosses two axes, boards and kernel command lines::

    name = "default"
    boards = ["vexpress-a9", "smdkc210"]
    cmdlines = ["", "cma=0", "cma=64M", "cma=64M@0x70000000"]
    suites = ["alloc-free", "exhaustion"]

    [[cells]]                       # settings for some cells, or extra cells
    cmdline = "cma=lots"
    boards = ["vexpress-a9"]        # narrows the boards axis for this entry
    xfail = "early_cma() takes 'lots' as 0 (fixed by series patch 0001?)"

Every ``cmdlines`` entry runs on every board.  A ``[[cells]]`` entry whose
``cmdline`` is on the axis refines those cells (on its ``boards``); any other
entry adds cells.  A cell's expectation of the default CMA area comes from the
cma= oracle (:mod:`harness.oracle`), computed from the board and the built
kernel at run time, unless the entry gives ``expect = { cma = "reserved",
size_mib = 32 }`` by hand (``reserved``, ``failed`` or ``none``, see
:class:`harness.checks.CmaExpectation`).

``xfail = "reason"`` marks a cell expected to fail: a failure is reported as
skipped with the reason and does not fail the run, a pass is a failure
("xpass": the xfail is stale).  ``skip = "reason"`` does not run the cell.

``suites`` (top level, or per entry) names the cma-test suites to run in cells
with a default CMA area; ``area_suites`` the suites run on every other CMA
area (DT reserved-memory areas); ``required_subtests`` lists KTAP tests that
must have run and passed, so a suite that quietly skips its proof cannot pass.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness import paths
from harness.boards import available_boards, read_input_text, refuse_unknown
from harness.checks import CmaExpectation
from harness.cmdline import validate_cmdline
from harness.errors import EnvironmentProblem, InputError

DEFAULT_MATRIX = paths.DEFAULT_MATRIX
_OUTCOMES = ("reserved", "failed", "none")
# The one list of cma-test's suites: the guest program builds its suite table from it.
SUITES_DEF = paths.ROOTFS_DIR / "cma-test" / "suites.def"
_SUITE_LINE = re.compile(r'SUITE\("([a-z0-9][a-z0-9-]*)", (suite_[a-z0-9_]+)\)')
_C_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)


def read_suites_def(path: Path = SUITES_DEF) -> tuple[str, ...]:
    """The suite names of ``rootfs/cma-test/suites.def``, in its order.

    Outside C comments, every non-blank line must be ``SUITE("name", suite_function)``.

    Raises:
        EnvironmentProblem: the file is missing or unreadable, a line is not a
            ``SUITE(...)`` entry, a name repeats, or there is none (a broken checkout
            or install).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise EnvironmentProblem(f"cannot read the cma-test suite list {path}: {exc}") from exc
    names: list[str] = []
    for number, line in enumerate(_C_COMMENT.sub(lambda m: "\n" * m[0].count("\n"), text)
                                  .splitlines(), 1):
        if not line.strip():
            continue
        match = _SUITE_LINE.fullmatch(line.strip())
        if match is None:
            raise EnvironmentProblem(f"{path}:{number}: not a SUITE(\"name\", suite_function) "
                                     f"line: {line.strip()!r}")
        if match[1] in names:
            raise EnvironmentProblem(f"{path}:{number}: suite {match[1]!r} is listed twice")
        names.append(match[1])
    if not names:
        raise EnvironmentProblem(f"{path}: lists no suite")
    return tuple(names)


# The suites of the guest program rootfs/cma-test ("cma-test suite NAME").
CMA_TEST_SUITES = read_suites_def()
# Not cma-test suites: the kernel's own tools/testing/selftests/<dir> programs,
# cross-built from the kernel tree (rootfs.SELFTESTS, kbuild.SELFTEST_DIRS) and run
# by harness/cell.py in place of cma-test; the suite is named after the directory.
SELFTEST_SUITES = ("dmabuf-heaps",)
KNOWN_SUITES = CMA_TEST_SUITES + SELFTEST_SUITES
# The cma-test suites that take any named area (CMA_TEST_AREA); the others need the
# default one.
AREA_SUITES = ("alloc-free", "exhaustion", "concurrency")
_TOP_KEYS = {"name", "description", "boards", "cmdlines", "suites", "area_suites",
             "required_subtests", "cells"}
_CELL_KEYS = {"cmdline", "expect", "boards", "description", "suites", "xfail", "skip"}
# Cell slugs (file names): see Cell.slug.
_UNSAFE = re.compile(r"[^A-Za-z0-9._=@-]+")
_PLAIN_BOARD = re.compile(r"[A-Za-z0-9.=@-]+")
_PLAIN_CMDLINE = re.compile(r"[A-Za-z0-9._=@-]*")
_HASH_TAIL = re.compile(r"-[0-9a-f]{8}$")
_MAX_READABLE = 120


def _plain(board: str, cmdline: str) -> bool:
    """Whether ``board_cmdline`` alone names the cell unambiguously (see :attr:`Cell.slug`)."""
    if not _PLAIN_BOARD.fullmatch(board):
        return False
    if cmdline == "":
        return True
    return (_PLAIN_CMDLINE.fullmatch(cmdline) is not None and cmdline != "default"
            and not cmdline.endswith("_") and _HASH_TAIL.search(cmdline) is None)


@dataclass(frozen=True)
class Cell:
    """One matrix cell: a board booted with a command line, and its expectation.

    Attributes:
        board: board name (``boards/<board>.toml``).
        cmdline: the cell's own part of the kernel command line (the board's
            console arguments are added at boot).
        expect: a hand-written expectation of the default CMA area, or None
            to take the cma= oracle's prediction at run time.
        description: free text for humans.
        suites: cma-test suites for the default CMA area (run only when the
            cell has one).
        area_suites: suites run on each other CMA area (DT reserved-memory).
        required: KTAP test paths that must have run and passed.
        xfail: reason the cell is expected to fail, or "".
        skip: reason the cell is not run, or "".
    """

    board: str
    cmdline: str
    expect: CmaExpectation | None = None
    description: str = ""
    suites: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    area_suites: tuple[str, ...] = ()
    xfail: str = ""
    skip: str = ""

    @property
    def name(self) -> str:
        """``board:cmdline``, the JUnit testsuite name; ``(default)`` for an empty cmdline."""
        return f"{self.board}:{self.cmdline or '(default)'}"

    @property
    def slug(self) -> str:
        """A file-name-safe, injective form of :attr:`name` (``cells/<slug>.xml``, ``logs/<slug>.log``).

        The readable form is ``board_cmdline`` (``board_default`` for the empty
        cmdline) with every run of characters outside ``[A-Za-z0-9._=@-]``
        turned into ``_``.  It is the whole slug when it can be read back
        unambiguously: the board has no ``_`` (the first ``_`` ends it), the
        cmdline needed no replacement, is not literally ``default``, does not
        end in ``_`` or in ``-`` plus 8 hex digits, and the slug is at most
        120 characters.  Otherwise ``-`` and the first 8 hex digits of the
        SHA-256 of :attr:`name` are appended (to the readable form cut at 120
        characters).  Deterministic across processes (``--resume`` compares
        slugs); :func:`parse_matrix` refuses two cells with one slug.
        """
        readable = _UNSAFE.sub("_", self.name).strip("_")
        if _plain(self.board, self.cmdline) and len(readable) <= _MAX_READABLE:
            return readable
        digest = hashlib.sha256(self.name.encode("utf-8")).hexdigest()[:8]
        return f"{readable[:_MAX_READABLE]}-{digest}"


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


def _reason(raw: dict[str, Any], key: str, where: str) -> str:
    value = raw.get(key, "")
    if not isinstance(value, str) or (key in raw and not value.strip()):
        raise InputError(f"{where}: '{key}' must be a non-empty string (the reason)")
    return value


def _cmdline(raw: Any, where: str) -> str:
    if not isinstance(raw, str):
        raise InputError(f"{where}: 'cmdline' must be a string")
    try:
        return validate_cmdline(raw)
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from exc


def _refuse_equal_slugs(cells: Iterable[Cell], path: Path) -> None:
    """Refuse two cells whose result files would be the same (:attr:`Cell.slug`).

    Raises:
        InputError: naming ``path``, both cells and the slug.
    """
    seen: dict[str, Cell] = {}
    for cell in cells:
        other = seen.setdefault(cell.slug, cell)
        if other is not cell:
            raise InputError(f"{path}: cells {other.name!r} and {cell.name!r} would write the same "
                             f"result files (cells/{cell.slug}.xml); change one of the cmdlines")


def _matrix_boards(data: dict[str, Any], path: Path, known_boards: tuple[str, ...] | None) -> list[str]:
    """The matrix's ``boards``, each one known (when ``known_boards`` is given).

    Raises:
        InputError: not a non-empty list of names, or an unknown board.
    """
    boards = data.get("boards")
    if not isinstance(boards, list) or not boards or not all(isinstance(b, str) for b in boards):
        raise InputError(f"{path}: 'boards' must be a non-empty list of board names")
    if known_boards is not None:
        bad = [b for b in boards if b not in known_boards]
        if bad:
            raise InputError(f"{path}: 'boards': unknown board(s) {', '.join(bad)} "
                             f"(known: {', '.join(known_boards)})")
    return boards


def _cmdline_axis(data: dict[str, Any], path: Path) -> list[str]:
    """The matrix's ``cmdlines``, each checked, none twice.

    Raises:
        InputError: an unsafe or repeated cmdline.
    """
    axis = [_cmdline(c, f"{path}: cmdlines[{i}]")
            for i, c in enumerate(_names(data.get("cmdlines", []), str(path), "cmdlines"))]
    if len(set(axis)) != len(axis):
        dup = next(c for c in axis if axis.count(c) > 1)
        raise InputError(f"{path}: 'cmdlines' lists {dup!r} twice")
    return axis


@dataclass(frozen=True)
class _Defaults:
    """What every cell of a matrix gets unless its ``[[cells]]`` entry says otherwise."""

    boards: tuple[str, ...]
    axis: tuple[str, ...]
    suites: tuple[str, ...]
    area_suites: tuple[str, ...]
    required: tuple[str, ...]


def _refine(cells: dict[tuple[str, str], Cell], refined: set[tuple[str, str]], raw: object,
            where: str, d: _Defaults) -> None:
    """Apply one ``[[cells]]`` entry ``raw`` to ``cells`` (in place), adding cells off the axis.

    Raises:
        InputError: naming ``where``: not a table, an unknown key, a board outside
            the matrix's, both xfail and skip, or a cell listed twice.
    """
    if not isinstance(raw, dict):
        raise InputError(f"{where}: must be a table")
    refuse_unknown(raw, _CELL_KEYS, where)
    cmdline = _cmdline(raw.get("cmdline", ""), where)
    expect = _expectation(raw["expect"], where) if "expect" in raw else None
    cell_suites = _names(raw["suites"], where, "suites", KNOWN_SUITES) if "suites" in raw else d.suites
    if expect is not None and expect.outcome != "reserved":
        cell_suites = ()  # no default CMA area for the suites to work on
    cell_boards = _names(raw["boards"], where, "boards") if "boards" in raw else d.boards
    stray = [b for b in cell_boards if b not in d.boards]
    if stray:
        raise InputError(f"{where}: 'boards': {', '.join(stray)} not in the matrix's 'boards'")
    xfail, skip = _reason(raw, "xfail", where), _reason(raw, "skip", where)
    if xfail and skip:
        raise InputError(f"{where}: a cell is either 'xfail' or 'skip', not both")
    for board in cell_boards:
        key = (board, cmdline)
        if key in refined or (key in cells and cmdline not in d.axis):
            raise InputError(f"{where}: cell {board}:{cmdline or '(default)'} is listed twice")
        refined.add(key)
        base = cells.get(key, Cell(board, cmdline, area_suites=d.area_suites))
        cells[key] = replace(base, expect=expect, description=str(raw.get("description", "")),
                             suites=cell_suites, required=d.required if cell_suites else (),
                             xfail=xfail, skip=skip)


def parse_matrix(data: dict[str, Any], path: Path, known_boards: tuple[str, ...] | None = None) -> Matrix:
    """Expand a parsed matrix file into cells (boards x cmdlines, refined by ``[[cells]]``).

    ``known_boards``: board names that exist; a matrix naming another one is refused.

    Raises:
        InputError: a missing, unknown or mistyped key, an unknown board or
            suite, an unsafe cmdline, a cell listed twice, two cells with one
            slug (file name), or a matrix that expands to no cell; the message
            names the file and the key (or both cells).
    """
    refuse_unknown(data, _TOP_KEYS, str(path))
    boards = _matrix_boards(data, path, known_boards)
    suites = _names(data.get("suites", []), str(path), "suites", KNOWN_SUITES)
    area_suites = _names(data.get("area_suites", []), str(path), "area_suites", AREA_SUITES)
    required = _names(data.get("required_subtests", []), str(path), "required_subtests")
    axis = _cmdline_axis(data, path)
    raw_cells = data.get("cells", [])
    if not isinstance(raw_cells, list):
        raise InputError(f"{path}: 'cells' must be an array of tables ([[cells]])")
    cells: dict[tuple[str, str], Cell] = {
        (board, c): Cell(board, c, None, "", suites, required if suites else (), area_suites)
        for c in axis for board in boards}
    defaults = _Defaults(tuple(boards), tuple(axis), suites, area_suites, required)
    refined: set[tuple[str, str]] = set()
    for i, raw in enumerate(raw_cells):
        _refine(cells, refined, raw, f"{path}: cells[{i}]", defaults)
    if not cells:
        raise InputError(f"{path}: the matrix expands to no cell (give 'cmdlines' or [[cells]])")
    _refuse_equal_slugs(cells.values(), path)
    order = {b: i for i, b in enumerate(boards)}
    ordered = sorted(cells.values(), key=lambda c: order[c.board])  # stable: cmdline order kept
    return Matrix(str(data.get("name", path.stem)), path, tuple(ordered))


def load_matrix(path: Path = DEFAULT_MATRIX) -> Matrix:
    """Read and expand a matrix file.

    Raises:
        InputError: the file is missing, unreadable, not a regular file (a FIFO is
            refused without opening it), not UTF-8, a TOML syntax error, or see
            :func:`parse_matrix`.
    """
    try:
        data = tomllib.loads(read_input_text(path, "matrix"))
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: {exc}") from exc
    return parse_matrix(data, path, tuple(available_boards()))


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

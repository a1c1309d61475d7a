"""A cell job: everything one cell needs to run anywhere, as data (JSON).

:class:`CellJob` holds the matrix cell, the board (its file's TOML text,
re-parsed with :func:`harness.boards.parse_board` on load, so a remote host
needs no board files), the boot artifacts (path and SHA-256, verified before
boot; a relative path resolves beside the job file), the whole kernel command
line, the expectation (:class:`~harness.expectation.Expectation`), the time
budgets, the nonce of the console markers and the provenance of the build.
``CellJob.from_json(job.to_json(), base)`` gives the job back unchanged.
"""

from __future__ import annotations

import functools
import hashlib
import json
import secrets
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.boards import Board, parse_board, read_input_text
from harness.codec import Fields, cell_from_dict, cell_to_dict, check_schema
from harness.errors import InputError
from harness.expectation import Expectation
from harness.matrix import Cell
from harness.qemu import BootSpec
from harness.results import Provenance
from harness.script import BudgetKind, Budgets, CellScript, build_script

JOB_KIND, JOB_SCHEMA = "cma-harness cell job", 1


@functools.lru_cache(maxsize=64)
def _sha256(path: Path, mtime_ns: int, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """SHA-256 (hex) of the file ``path``; cached while its size and mtime stay the same.

    Raises:
        OSError: the file cannot be read.
    """
    st = path.stat()
    return _sha256(path.resolve(), st.st_mtime_ns, st.st_size)


@dataclass(frozen=True)
class Artifact:
    """A boot file: its path as the job names it and its SHA-256 (hex)."""

    path: Path
    sha256: str

    @classmethod
    def of(cls, path: Path) -> Artifact:
        """The artifact of an existing file (hashes it)."""
        return cls(path, file_sha256(path))

    def resolve(self, base: Path) -> Path:
        """Its path on this host: relative paths are relative to ``base`` (the job file's directory)."""
        return self.path if self.path.is_absolute() else base / self.path

    def verified(self, base: Path) -> Path:
        """:meth:`resolve`, after checking the file's SHA-256.

        Raises:
            InputError: the file is missing, unreadable or its content differs.
        """
        path = self.resolve(base)
        try:
            got = file_sha256(path)
        except OSError as exc:
            raise InputError(f"{path}: cannot read the boot file: {exc.strerror or exc}") from exc
        if got != self.sha256:
            raise InputError(f"{path}: SHA-256 {got} differs from the job's {self.sha256} "
                             "(a different or damaged build)")
        return path


def new_nonce() -> str:
    """A fresh marker nonce: 12 hex digits."""
    return secrets.token_hex(6)


@dataclass(frozen=True)
class CellJob:
    """One cell ready to run on any host (see the module docstring).

    Attributes:
        cell: the matrix cell.
        board: the board, parsed from ``board_toml``.
        board_toml: the board file's text ("" for a job that is never serialized).
        zimage, dtb, initrd: the boot files (``dtb`` None: QEMU generates it).
        kernel_cmdline: the whole kernel command line (board, harness and cell arguments).
        expectation: the judge of ``cma-reservation``.
        provenance: kernel, series, config, toolchain and QEMU of the build.
        budgets: seconds per kind of step.
        nonce: hex digits in every console marker of this job.
        base_dir: where relative artifact paths resolve (the job file's directory;
            not serialized).
    """

    cell: Cell
    board: Board
    board_toml: str
    zimage: Artifact
    dtb: Artifact | None
    initrd: Artifact
    kernel_cmdline: str
    expectation: Expectation
    provenance: Provenance
    budgets: Budgets = Budgets()
    nonce: str = field(default_factory=new_nonce)
    base_dir: Path = field(default=Path("."), compare=False)

    @classmethod
    def local(cls, cell: Cell, spec: BootSpec, expectation: Expectation) -> CellJob:
        """A job for this host only: ``spec``'s files unhashed (boot it with ``spec``), no provenance.

        It cannot be serialized (no board text).
        """
        return cls(cell, spec.board, "", Artifact(spec.zimage, ""),
                   None if spec.dtb is None else Artifact(spec.dtb, ""), Artifact(spec.initrd, ""),
                   spec.cmdline, expectation, Provenance("", "", "", "", "", ""))

    @property
    def boot_files(self) -> tuple[Artifact, ...]:
        """zImage, dtb (if any) and initramfs: what a host or a lab must have to boot the job."""
        return tuple(a for a in (self.zimage, self.dtb, self.initrd) if a is not None)

    def script(self) -> CellScript:
        """The guest steps of this job (:func:`harness.script.build_script`)."""
        return build_script(self.cell, self.nonce)

    def spec(self, verify: bool = True) -> BootSpec:
        """The boot of this job on this host; ``verify`` checks each file's SHA-256 first.

        Raises:
            InputError: a boot file is missing or differs (``verify``).
        """
        def path(a: Artifact) -> Path:
            return a.verified(self.base_dir) if verify else a.resolve(self.base_dir)
        return BootSpec(self.board, path(self.zimage), None if self.dtb is None else path(self.dtb),
                        path(self.initrd), self.kernel_cmdline)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (see :meth:`from_dict`).

        Raises:
            ValueError: the job has no board text (it was made for this host only).
        """
        if not self.board_toml:
            raise ValueError(f"cell {self.cell.name}: the job has no board file text to serialize")
        def art(a: Artifact | None) -> dict[str, str] | None:
            return None if a is None else {"path": str(a.path), "sha256": a.sha256}
        return {"kind": JOB_KIND, "schema": JOB_SCHEMA, "cell": cell_to_dict(self.cell),
                "board": {"name": self.board.name, "toml": self.board_toml},
                "artifacts": {"zimage": art(self.zimage), "dtb": art(self.dtb), "initrd": art(self.initrd)},
                "kernel_cmdline": self.kernel_cmdline, "expectation": self.expectation.to_dict(),
                "provenance": vars(self.provenance).copy(), "budgets": vars(self.budgets).copy(),
                "nonce": self.nonce}

    def to_json(self) -> str:
        """:meth:`to_dict` as indented JSON text."""
        return json.dumps(self.to_dict(), indent=1) + "\n"

    @classmethod
    def from_dict(cls, data: object, where: str, base_dir: Path) -> CellJob:
        """Read a job written by :meth:`to_dict`; relative artifact paths resolve in ``base_dir``.

        Raises:
            InputError: not a job of this schema, a missing or mistyped field, a
                bad board file text (named as ``<where>: board <name>``) or nonce.
        """
        f = Fields(data, where)
        check_schema(f, JOB_KIND, JOB_SCHEMA)
        board_f = f.obj("board")
        name, toml = board_f.text("name"), board_f.text("toml")
        try:
            board = parse_board(name, tomllib.loads(toml), f"{where}: board {name}")
        except tomllib.TOMLDecodeError as exc:
            raise InputError(f"{where}: board {name}: {exc}") from exc
        arts = f.obj("artifacts")
        dtb = _artifact(arts.obj("dtb")) if arts.data.get("dtb") is not None else None
        nonce = f.text("nonce")
        if not nonce.isalnum() or not nonce.isascii():
            raise InputError(f"{where}: 'nonce' must be letters and digits")
        return cls(cell_from_dict(f.obj("cell")), board, toml, _artifact(arts.obj("zimage")), dtb,
                   _artifact(arts.obj("initrd")), f.text("kernel_cmdline"),
                   Expectation.from_dict(f.obj("expectation").data), _provenance(f.obj("provenance")),
                   _budgets(f.obj("budgets")), nonce, base_dir)

    @classmethod
    def load(cls, path: Path) -> CellJob:
        """Read the job file ``path``; its artifacts' relative paths resolve beside it.

        Raises:
            InputError: unreadable, not JSON, or see :meth:`from_dict`.
        """
        try:
            data = json.loads(read_input_text(path, "cell job"))
        except ValueError as exc:
            raise InputError(f"{path}: not JSON: {exc}") from exc
        return cls.from_dict(data, str(path), path.parent)


def _artifact(f: Fields) -> Artifact:
    return Artifact(Path(f.text("path")), f.text("sha256"))


def _provenance(f: Fields) -> Provenance:
    return Provenance(f.text("kernel_release"), f.text("kernel_source"), f.text("series_hash"),
                      f.text("config_hash"), f.text("toolchain"), f.text("qemu"))


def _budgets(f: Fields) -> Budgets:
    return Budgets(*(f.number(k.value) for k in BudgetKind))


def make_job(cell: Cell, spec: BootSpec, expectation: Expectation, provenance: Provenance,
             budgets: Budgets | None = None, nonce: str | None = None) -> CellJob:
    """The job of ``cell`` booted as ``spec``: hashes the boot files, embeds the board file's text.

    Artifact paths are made absolute.  A board not loaded from a file
    (``spec.board.file`` None) gives a job that runs here but cannot be serialized.

    Raises:
        OSError: a boot file cannot be read.
        InputError: the board file cannot be read.
    """
    board_toml = read_input_text(spec.board.file, "board") if spec.board.file is not None else ""
    return CellJob(cell, replace(spec.board, file=None), board_toml, Artifact.of(spec.zimage.absolute()),
                   None if spec.dtb is None else Artifact.of(spec.dtb.absolute()),
                   Artifact.of(spec.initrd.absolute()), spec.cmdline, expectation, provenance,
                   budgets or Budgets(), nonce or new_nonce())

"""The kernel patch series: quilt-style ``series`` file parsing and application.

The series file format follows quilt: one patch file name per line, relative to
the series file's directory, optionally followed by ``-pN``; blank lines and
text after ``#`` are ignored.  Patches are applied with GNU ``patch`` in order.

A patch that must differ between base kernels lives in a per-base directory
beside the series file, named by the base's ``VERSION.PATCHLEVEL``
(``6.1/0002-foo.patch``, ``6.12/0002-foo.patch``); the series names it once and
the base's copy wins over a top-level file of the same name.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness.cache import digest, file_digest
from harness.errors import InputError, PatchError


@dataclass(frozen=True)
class Patch:
    """One entry of the series: its file, strip level and SHA-256 of its bytes."""

    name: str
    path: Path
    strip: int
    sha256: str


@dataclass(frozen=True)
class Series:
    """An ordered patch series.  ``digest`` hashes every patch's name, strip and content."""

    path: Path
    patches: tuple[Patch, ...]

    @property
    def digest(self) -> str:
        return digest(f"{p.name}\0{p.strip}\0{p.sha256}" for p in self.patches)


def parse_series(series_file: Path, base: str | None = None) -> Series:
    """Read a quilt ``series`` file, resolving per-base patches for kernel ``base`` (e.g. "6.1").

    Raises:
        InputError: the series file is missing, a line is malformed, or a listed
            patch does not exist; the message names the file and line number.
    """
    if not series_file.is_file():
        raise InputError(f"series file not found: {series_file}")
    patches = []
    for lineno, raw in enumerate(series_file.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        strip = 1
        if len(words) == 2 and re.fullmatch(r"-p\d", words[1]):
            strip = int(words[1][2:])
        elif len(words) != 1:
            raise InputError(f"{series_file}:{lineno}: expected 'PATCH [-pN]', got {raw!r}")
        path = series_file.parent / words[0]
        if base and (series_file.parent / base / words[0]).is_file():
            path = series_file.parent / base / words[0]
        if not path.is_file():
            where = f" (nor in {base}/)" if base else ""
            raise InputError(f"{series_file}:{lineno}: patch {words[0]} not found{where}")
        name = str(path.relative_to(series_file.parent))
        patches.append(Patch(name, path, strip, file_digest(path)))
    return Series(series_file, tuple(patches))


def _rejected_hunks(tree: Path, patch_output: str) -> str:
    """Collect the content of the ``.rej`` files ``patch`` mentioned in its output."""
    texts = []
    for rej in re.findall(r"saving rejects to file (\S+)", patch_output):
        rej_path = tree / rej
        if rej_path.is_file():
            texts.append(f"--- {rej}\n{rej_path.read_text(errors='replace')}")
    return "\n".join(texts)


def apply_series(series: Series, tree: Path) -> None:
    """Apply every patch of ``series`` to the source ``tree`` in order.

    The tree is a scratch copy: on failure the caller discards it, so the
    failing patch is applied for real to leave ``.rej`` files to quote.

    Raises:
        PatchError: the first patch that does not apply; the message names the
            patch and the failing hunks, ``detail`` holds the rejected hunks.
    """
    for patch in series.patches:
        argv = ["patch", f"-p{patch.strip}", "--forward", "--batch", "--fuzz=0", "-i", str(patch.path)]
        result = subprocess.run(
            argv, cwd=tree, capture_output=True, text=True, check=False
        )
        if result.returncode == 0:
            continue
        output = result.stdout + result.stderr
        failed = [ln.strip() for ln in output.splitlines() if "FAILED" in ln or "can't find" in ln
                  or "Reversed" in ln or "No such file" in ln]
        summary = "; ".join(failed) if failed else (output.strip().splitlines() or ["failed"])[-1]
        raise PatchError(f"patch {patch.name} does not apply: {summary}",
                         _rejected_hunks(tree, output))

"""The kernel patch series: quilt-style ``series`` file parsing and application.

The series file format follows quilt: one patch file name per line, relative to
the series file's directory, optionally followed by ``-pN``; blank lines and
text after ``#`` are ignored.  Patches are applied with GNU ``patch`` in order.

A patch that must differ between base kernels lives in a per-version directory
beside the series file, named by the first ``VERSION.PATCHLEVEL`` it applies to
(``6.1/0002-foo.patch``, ``6.12/0002-foo.patch``, ``6.15/0002-foo.patch``); the
series names it once.  For a base kernel, the copy in the newest such directory
not newer than the base wins (6.13 takes ``6.12/``, 7.2 takes ``6.15/``), then a
top-level file of the same name: each directory covers a range of kernels.

A patch path must stay inside the series directory (no absolute path, no
``..`` leaving it), and every patch must be a regular file of text (UTF-8,
no NUL byte): anything else is refused with the series file and line.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness.boards import input_text, read_input_bytes, read_input_text
from harness.cache import digest
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


def _read_patch(path: Path, what: str) -> str:
    """SHA-256 of the patch file ``path``, which must be a regular file of UTF-8 text without NUL.

    Raises:
        InputError: not a regular file (a FIFO is refused unopened), unreadable,
            or binary (not UTF-8, or holding a NUL byte); the message names ``path``.
    """
    data = read_input_bytes(path, what)
    input_text(path, data)
    return hashlib.sha256(data).hexdigest()


def _version_key(name: str) -> tuple[int, int] | None:
    """``(major, minor)`` of a per-version directory name such as ``"6.15"``; None otherwise."""
    match = re.fullmatch(r"(\d+)\.(\d+)", name)
    return (int(match[1]), int(match[2])) if match else None


def version_dirs(series_dir: Path, base: str | None) -> list[str]:
    """The per-version directories of ``series_dir`` that cover kernel ``base``, newest first.

    ``base`` is ``"VERSION.PATCHLEVEL"`` (e.g. ``"7.2"``); a directory covers it
    when its name is a version not newer than ``base``.  Empty when ``base``
    is None or not a version.
    """
    want = _version_key(base) if base else None
    if want is None or not series_dir.is_dir():
        return []
    keyed = [(key, entry.name) for entry in series_dir.iterdir()
             if entry.is_dir() and (key := _version_key(entry.name)) is not None and key <= want]
    return [name for _key, name in sorted(keyed, reverse=True)]


def _patch_path(series_file: Path, word: str, base: str | None, where: str) -> Path:
    """The file a series line names: inside the series directory, the copy for ``base`` first
    (see :func:`version_dirs`; only the newest directory that holds the patch counts).

    Raises:
        InputError: an absolute path, a path whose ``..`` leaves the series
            directory, or a patch that does not exist.
    """
    rel = os.path.normpath(word)
    if os.path.isabs(rel) or rel == ".." or rel.startswith(f"..{os.sep}"):
        raise InputError(f"{where}: patch {word} must be a path inside {series_file.parent} "
                         "(no absolute path, no '..' leaving it)")
    dirs = version_dirs(series_file.parent, base)
    for name in dirs:
        if os.path.lexists(series_file.parent / name / rel):
            return series_file.parent / name / rel
    path = series_file.parent / rel
    if not os.path.lexists(path):
        also = f" (nor in {', '.join(d + '/' for d in dirs)}, the directories for {base})" if dirs else ""
        raise InputError(f"{where}: patch {word} not found{also}")
    return path


def parse_series(series_file: Path, base: str | None = None) -> Series:
    """Read a quilt ``series`` file, resolving per-base patches for kernel ``base`` (e.g. "6.1").

    Raises:
        InputError: the series file is missing, not a regular file (a FIFO is
            refused unopened) or not UTF-8 text; a line is malformed; a listed
            patch is an absolute path or leaves the series directory with
            ``..``, does not exist, or is not a regular text file (binary: not
            UTF-8 or holding NUL).  The message names the file and line number.
    """
    if not os.path.lexists(series_file):
        raise InputError(f"series file not found: {series_file}")
    patches = []
    for lineno, raw in enumerate(read_input_text(series_file, "series file").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        strip = 1
        if len(words) == 2 and re.fullmatch(r"-p\d", words[1]):
            strip = int(words[1][2:])
        elif len(words) != 1:
            raise InputError(f"{series_file}:{lineno}: expected 'PATCH [-pN]', got {raw!r}")
        where = f"{series_file}:{lineno}"
        path = _patch_path(series_file, words[0], base, where)
        try:
            sha = _read_patch(path, "patch")
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from exc
        patches.append(Patch(str(path.relative_to(series_file.parent)), path, strip, sha))
    return Series(series_file, tuple(patches))


def with_extra_patches(series: Series, extra: list[Path]) -> Series:
    """``series`` with the patch files ``extra`` appended (``-p1``), e.g. a patch under review.

    Raises:
        InputError: an extra patch does not exist, is not a regular file, is
            not readable, or is binary (not UTF-8, or holding NUL).
    """
    patches = list(series.patches)
    for path in extra:
        if not os.path.lexists(path):
            raise InputError(f"patch {path} not found")
        sha = _read_patch(path, "patch")
        patches.append(Patch(f"extra/{path.name}", path.resolve(), 1, sha))
    return Series(series.path, tuple(patches))


def _rejected_hunks(tree: Path, patch_output: str) -> str:
    """Collect the content of the ``.rej`` files ``patch`` mentioned in its output."""
    texts = []
    for rej in re.findall(r"saving rejects to file (\S+)", patch_output):
        rej_path = tree / rej
        if rej_path.is_file():
            texts.append(f"--- {rej}\n{rej_path.read_text(errors='replace')}")
    return "\n".join(texts)


_PATCH = ["patch", "--batch", "--fuzz=0", "--no-backup-if-mismatch"]


def _apply_one(patch: Patch, path: Path, tree: Path) -> None:
    """Apply one patch file to ``tree``; raise PatchError (with the rejected hunks) if it fails."""
    argv = [*_PATCH, f"-p{patch.strip}", "--forward", "-i", str(path)]
    result = subprocess.run(argv, cwd=tree, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        output = result.stdout + result.stderr
        failed = [ln.strip() for ln in output.splitlines() if "FAILED" in ln or "can't find" in ln
                  or "Reversed" in ln or "No such file" in ln]
        summary = "; ".join(failed) if failed else (output.strip().splitlines() or ["failed"])[-1]
        rejected = _rejected_hunks(tree, output)
        # Undo the hunks that did apply, so the tree is back where it was.
        subprocess.run([*_PATCH, f"-p{patch.strip}", "-R", "-i", str(path)], cwd=tree,
                       capture_output=True, check=False)
        for rej in re.findall(r"saving rejects to file (\S+)", output):
            (tree / rej).unlink(missing_ok=True)
        raise PatchError(f"patch {patch.name} does not apply: {summary}", rejected)


_STATE = ".cma-harness-series"  # in the tree: copies of the applied patches + manifest.json


class TreeStateError(Exception):
    """The tree's record of applied patches is missing or does not match it; re-unpack."""


_Applied = tuple[str, int, str, str]  # (patch name, -pN, sha256, file in .cma-harness-series/)


def _read_record(tree: Path) -> list[_Applied]:
    """The patches ``tree`` records as applied, oldest first.

    Raises:
        TreeStateError: the record is missing or corrupt, or a switch did not finish.
    """
    try:
        manifest = json.loads((tree / _STATE / "manifest.json").read_text())
        applied = [(e["name"], e["strip"], e["sha256"], e["file"]) for e in manifest["applied"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TreeStateError(f"{tree}: no valid record of applied patches ({exc})") from exc
    if manifest.get("dirty"):
        raise TreeStateError(f"{tree}: a previous series switch did not finish")
    return applied


def _record(state: Path, entries: list[_Applied], dirty: bool) -> None:
    """Write the record of applied patches (``dirty``: a switch is under way), atomically."""
    data = {"dirty": dirty, "applied": [{"name": n, "strip": s, "sha256": h, "file": f}
                                        for n, s, h, f in entries]}
    tmp = state / "manifest.json.tmp"
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.rename(state / "manifest.json")


def _reverse_to(tree: Path, current: list[_Applied], keep: int) -> None:
    """Reverse the patches of ``current`` after the first ``keep``, newest first (``current`` shrinks).

    Raises:
        TreeStateError: a patch does not reverse cleanly.
    """
    state = tree / _STATE
    for name, strip, _sha, file in reversed(current[keep:]):
        result = subprocess.run([*_PATCH, f"-p{strip}", "-R", "-i", str(state / file)], cwd=tree,
                                capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise TreeStateError(f"{tree}: cannot reverse {name}")
        (state / file).unlink(missing_ok=True)
        current.pop()
        _record(state, current, True)


def _apply_rest(tree: Path, current: list[_Applied], patches: list[Patch]) -> None:
    """Apply ``patches`` on top of ``current`` (which grows), keeping a copy of each.

    Raises:
        PatchError: a patch does not apply; the record then lists those before it.
    """
    state = tree / _STATE
    for patch in patches:
        file = f"{len(current):04d}.patch"
        shutil.copyfile(patch.path, state / file)
        try:
            _apply_one(patch, state / file, tree)
        except PatchError:
            (state / file).unlink(missing_ok=True)
            _record(state, current, False)
            raise
        current.append((patch.name, patch.strip, patch.sha256, file))
        _record(state, current, True)


def switch_series(series: Series, tree: Path) -> tuple[int, int]:
    """Bring the series applied to ``tree`` from what it records to ``series``, incrementally.

    The patches both series share at the front stay; the rest of the old
    series is reversed (newest first, from the copies kept in the tree's
    ``.cma-harness-series/``) and the rest of the new one applied.  Files the
    patches touch get new mtimes, so an out-of-tree ``make`` rebuilds just
    what they affect, as in a developer's quilt workflow.

    Returns:
        ``(reversed, applied)``: the number of patches reversed and applied.

    Raises:
        PatchError: a patch of ``series`` does not apply; the tree is left with
            the patches before it applied (and records that).
        TreeStateError: the record is missing or corrupt, or an old patch does
            not reverse cleanly; the caller must start from a fresh tree.
    """
    applied = _read_record(tree)
    wanted = [(p.name, p.strip, p.sha256) for p in series.patches]
    keep = 0
    while keep < min(len(applied), len(wanted)) and applied[keep][:3] == wanted[keep]:
        keep += 1
    current = applied[:]
    _record(tree / _STATE, current, True)
    _reverse_to(tree, current, keep)
    _apply_rest(tree, current, list(series.patches[keep:]))
    _record(tree / _STATE, current, False)
    return len(applied) - keep, len(series.patches) - keep


def init_series_state(tree: Path) -> None:
    """Record that a freshly unpacked ``tree`` has no patch applied."""
    state = tree / _STATE
    state.mkdir(exist_ok=True)
    (state / "manifest.json").write_text(json.dumps({"dirty": False, "applied": []}) + "\n")

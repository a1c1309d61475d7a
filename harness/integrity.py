"""Content manifests for cached artifacts: written when an entry is made, checked on every use.

A cache entry (a kernel's ``kernels/<key>/`` directory, an initramfs directory)
is trusted only if every file still has the SHA-256 it had when the entry was
published.  A truncated ``zImage``, a missing dtb or an edited ``build.json``
makes the entry corrupt; the caller then rebuilds it instead of booting it.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from harness.cache import file_digest

MANIFEST = "MANIFEST.sha256"


def _files(directory: Path) -> list[str]:
    """Regular files under ``directory`` (relative, sorted; links not followed), the manifest left out."""
    found = []
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        for name in files:
            path = Path(root) / name
            if path.is_file() and not path.is_symlink():
                found.append(str(path.relative_to(directory)))
    return sorted(f for f in found if f != MANIFEST)


def write_manifest(directory: Path) -> None:
    """Write ``directory/MANIFEST.sha256``: one ``<sha256>  <relative path>`` line per file.

    Call it on a complete staging directory, before it is published.
    """
    lines = [f"{file_digest(directory / rel)}  {rel}\n" for rel in _files(directory)]
    (directory / MANIFEST).write_text("".join(lines))


def _parse(text: str) -> dict[str, str] | None:
    """A manifest's text as {relative path: SHA-256 hex}; None if a line is damaged."""
    recorded: dict[str, str] = {}
    for line in text.splitlines():
        sha, sep, rel = line.partition("  ")
        if not sep or len(sha) != 64:
            return None
        recorded[rel] = sha
    return recorded


def recorded_digests(directory: Path) -> dict[str, str]:
    """The SHA-256 each file of ``directory`` had when its entry was published, by relative path.

    Read from ``directory/MANIFEST.sha256`` as written (not checked against the
    files: :func:`manifest_problems` does that); ``{}`` when the manifest is
    missing, unreadable or damaged.
    """
    try:
        text = (directory / MANIFEST).read_text(errors="replace")
    except OSError:
        return {}
    return _parse(text) or {}


def manifest_problems(directory: Path) -> list[str]:
    """What differs between ``directory`` and its manifest; empty when the entry is intact.

    Each item names a file: ``no manifest``, ``<file> is missing``,
    ``<file> changed`` (SHA-256 differs), ``<file> is not in the manifest`` or
    ``<file> is unreadable (<reason>)``.  Never raises for the entry's files: one
    that cannot be read (or vanishes meanwhile, when another run sets the entry
    aside as corrupt) is a problem, so the entry is rebuilt, never trusted.
    """
    manifest = directory / MANIFEST
    if not manifest.is_file():
        return [f"{MANIFEST} is missing"]
    try:
        text = manifest.read_text(errors="replace")
    except OSError as exc:
        return [f"{MANIFEST} is unreadable ({exc.strerror or exc})"]
    recorded = _parse(text)
    if recorded is None:
        return [f"{MANIFEST} is damaged"]
    present = set(_files(directory))
    problems = [f"{rel} is missing" for rel in sorted(set(recorded) - present)]
    problems += [f"{rel} is not in the manifest" for rel in sorted(present - set(recorded))]
    for rel in sorted(present & set(recorded)):
        try:
            if file_digest(directory / rel) != recorded[rel]:
                problems.append(f"{rel} changed")
        except OSError as exc:
            problems.append(f"{rel} is unreadable ({exc.strerror or exc})")
    return problems


def discard_corrupt(directory: Path, problems: list[str]) -> None:
    """Warn on stderr that the cache entry ``directory`` is corrupt, and remove it.

    It is first renamed aside (atomic), so no other run can pick it up while it is deleted.
    """
    shown = "; ".join(problems[:3]) + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else "")
    print(f"cma-harness: warning: cached {directory} is corrupt ({shown}): rebuilding it",
          file=sys.stderr)
    aside = Path(tempfile.mkdtemp(prefix=".corrupt-", dir=directory.parent))
    try:
        directory.rename(aside / directory.name)
    except OSError:
        pass  # another run moved it first
    shutil.rmtree(aside, ignore_errors=True)

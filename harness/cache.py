"""Where the harness keeps what it builds: outside the repo, keyed by content."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterable
from pathlib import Path


def cache_root() -> Path:
    """``$CMA_HARNESS_CACHE``, else ``$XDG_CACHE_HOME/cma-harness``, else ``~/.cache/cma-harness``."""
    explicit = os.environ.get("CMA_HARNESS_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "cma-harness"


def digest(parts: Iterable[str | bytes]) -> str:
    """SHA-256 hex digest over ``parts``, each length-prefixed so boundaries count."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def file_digest(path: Path) -> str:
    """SHA-256 hex digest of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def publish_dir(tmp: Path, final: Path) -> None:
    """Move a fully written directory ``tmp`` into place at ``final`` atomically.

    If another process published ``final`` first, ``tmp`` is discarded.
    """
    try:
        tmp.rename(final)
    except OSError:
        if not final.exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)

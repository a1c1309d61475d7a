"""Where the harness keeps what it builds: outside the repo, keyed by content."""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import time
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


def write_temp(path: Path, data: bytes) -> Path:
    """Write ``data`` to a new hidden file beside ``path``, fsynced; return the file's path.

    The file is ``.<name>.<pid>.<random>.tmp`` in ``path``'s directory (never
    ending in ``path``'s own suffix, so a glob for finished files skips it),
    created exclusively with mode 0666 minus the umask.  Every byte is written
    with ``os.write`` (no user-space buffer to flush) and ``os.fsync``-ed.

    Raises:
        OSError: the file cannot be created, written or synced (ENOSPC, EIO...);
            the temporary file is removed first, so nothing half written stays.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    return tmp


def sync_dir(directory: Path) -> None:
    """``fsync`` a directory so the renames in it survive a crash; best effort.

    A file system that cannot sync directories (EINVAL, EBADF) is not an error.
    """
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically: temp file, fsync, rename, fsync of the directory.

    A reader (or a crash at any moment) sees either the previous complete
    file, or no file if there was none, or the new complete file; never a
    truncated one.  See :func:`write_temp` for the temporary file.

    Raises:
        OSError: writing, syncing or renaming failed; ``path`` is unchanged
            and no temporary file is left.
    """
    tmp = write_temp(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    sync_dir(path.parent)


# A temporary directory in the cache (a build's staging directory, an unpack,
# an initramfs in the making, an entry set aside as corrupt) is named ".<something>";
# one older than this belongs to a run that was killed.  The longest step that
# keeps one (a cold kernel build) takes well under an hour on 2 cores.
STALE_AFTER_S = 24 * 3600
_TEMP_HOMES = ("kernels", "rootfs", "trees", "roots")


def collect_stale(now: float | None = None) -> list[Path]:
    """Remove temporary directories left in the cache by killed runs; return what was removed.

    Only dot-named directories directly under the cache's ``kernels/``, ``rootfs/``,
    ``trees/`` and ``roots/`` whose modification time is older than
    :data:`STALE_AFTER_S` seconds are touched; published entries never are.
    """
    now = time.time() if now is None else now
    removed = []
    for home in _TEMP_HOMES:
        directory = cache_root() / home
        if not directory.is_dir():
            continue
        for entry in directory.iterdir():
            try:
                stale = (entry.name.startswith(".") and entry.is_dir() and not entry.is_symlink()
                         and now - entry.stat().st_mtime > STALE_AFTER_S)
            except OSError:
                continue
            if stale:
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
    return removed

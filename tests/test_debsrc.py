"""Debian unstable's newest kernel source, fetched for real, installing nothing.

Integration: reads unstable's package index from the Debian mirror (about 3 s)
and downloads the newest ``linux-source-X.Y`` once per machine (about 160 MB,
kept in the cache).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from harness import debsrc, kbuild
from harness.errors import InputError

pytestmark = pytest.mark.integration


def _apt_state() -> str:
    """A digest of the machine's apt configuration and package lists (names, sizes, mtimes)."""
    h = hashlib.sha256()
    for root in (Path("/etc/apt"), Path("/var/lib/apt/lists"), Path("/var/lib/dpkg/status")):
        for path in sorted([root, *root.rglob("*")] if root.is_dir() else [root]):
            if path.is_file():
                st = path.stat()
                h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _newest_in_unstable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CMA_HARNESS_CACHE", str(tmp_path / "cache"))
    with pytest.raises(InputError) as exc:
        debsrc.fetch_unstable_source("5.99")
    message = str(exc.value)
    assert message.startswith("Debian unstable has no linux-source-5.99 (it has linux-source-"), message
    versions = re.findall(r"linux-source-(\d+)\.(\d+)", message.split("(it has", 1)[1])
    assert versions, message
    major, minor = max((int(a), int(b)) for a, b in versions)
    return f"{major}.{minor}"


def test_unstable_newest_source_is_fetched_into_the_cache_and_apt_is_untouched(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = _apt_state()
    newest = _newest_in_unstable(tmp_path, monkeypatch)
    assert tuple(map(int, newest.split("."))) > (6, 12), newest
    monkeypatch.delenv("CMA_HARNESS_CACHE")  # the real cache: downloaded once per machine
    lines: list[str] = []
    path = kbuild.install_debian_source(Path(f"/usr/src/linux-source-{newest}.tar.xz"), lines.append)
    assert path == debsrc.cached_tarball(newest) and path.is_file()
    assert kbuild.resolve_source(path).version == newest
    assert not Path(f"/usr/src/linux-source-{newest}.tar.xz").exists()
    assert _apt_state() == before, "the machine's apt configuration or lists changed"
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".linux-source-")]

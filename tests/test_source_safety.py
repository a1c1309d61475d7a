"""Kernel sources are unpacked as a user would have them, and apt runs only for known packages."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from harness import debsrc, kbuild
from harness.errors import InputError

_MAKEFILE = b"VERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 0\n"


def _tarball(path: Path, extra: list[tarfile.TarInfo]) -> Path:
    with tarfile.open(path, "w:xz") as tar:
        for name, data in (("linux-6.1/Makefile", _MAKEFILE), ("linux-6.1/Kconfig", b"")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info)
    return path


def _special(name: str, kind: bytes, **attrs: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(f"linux-6.1/{name}")
    info.type = kind
    for key, value in attrs.items():
        setattr(info, key, value)
    return info


@pytest.mark.parametrize("entry, said", [
    (_special("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666), "a special file (dev/null)"),
    (_special("fifo", tarfile.FIFOTYPE), "a special file (fifo)"),
    (_special("escape", tarfile.SYMTYPE, linkname="../../../../etc"), "a link leaving the tree (escape"),
    (_special("absolute", tarfile.SYMTYPE, linkname="/etc/passwd"), "a link leaving the tree (absolute"),
])
def test_a_tarball_with_an_unsafe_entry_is_refused(tmp_path: Path, entry: tarfile.TarInfo, said: str) -> None:
    source = kbuild.resolve_source(_tarball(tmp_path / "linux-6.1.tar.xz", [entry]))
    with pytest.raises(InputError) as exc:
        kbuild._unpack(source, tmp_path / "tree")
    assert said in str(exc.value) and str(source.path) in str(exc.value)


def test_owners_and_setuid_bits_are_not_kept_even_as_root(tmp_path: Path) -> None:
    info = _special("scripts/tool", tarfile.REGTYPE, mode=0o4777, uid=4242, gid=4242)
    source = kbuild.resolve_source(_tarball(tmp_path / "linux-6.1.tar.xz", [info]))
    kbuild._unpack(source, tmp_path / "tree")
    st = (tmp_path / "tree" / "scripts" / "tool").stat()
    assert st.st_uid == os.getuid() and not st.st_mode & (stat.S_ISUID | stat.S_ISGID)
    assert kbuild.unsafe_entries(tmp_path / "tree") == []


def test_relative_links_inside_the_tree_are_fine(tmp_path: Path) -> None:
    link = _special("scripts/dtc/include-prefixes/arm", tarfile.SYMTYPE, linkname="../../../Kconfig")
    source = kbuild.resolve_source(_tarball(tmp_path / "linux-6.1.tar.xz", [link]))
    kbuild._unpack(source, tmp_path / "tree")
    assert (tmp_path / "tree" / "scripts/dtc/include-prefixes/arm").is_symlink()


def test_apt_installs_only_the_debian_sources_the_harness_knows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any other /usr/src/linux-source-X.Y is fetched from unstable as data, never installed."""
    fetched: list[str] = []

    def fetch(version: str, progress: object) -> Path:
        fetched.append(version)
        return Path(f"/cache/{version}")

    def no_install(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"ran {args}")

    monkeypatch.setattr(debsrc, "fetch_unstable_source", fetch)
    monkeypatch.setattr(subprocess, "run", no_install)
    assert kbuild.install_debian_source(Path("/usr/src/linux-source-5.99.tar.xz"),
                                        lambda message: None) == Path("/cache/5.99")
    assert fetched == ["5.99"]
    assert kbuild.install_debian_source(Path("/some/tree"), lambda message: None) == Path("/some/tree")

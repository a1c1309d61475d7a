"""Cached artifacts are verified on use: a corrupt entry is rebuilt, never booted."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from harness import kbuild
from harness.cache import collect_stale
from harness.integrity import manifest_problems, write_manifest


def _entry(directory: Path) -> Path:
    directory.mkdir(parents=True)
    (directory / "zImage").write_bytes(b"\x00" * 4096)
    (directory / "dtbs").mkdir()
    (directory / "dtbs" / "vexpress-v2p-ca9.dtb").write_bytes(b"\xd0\x0d\xfe\xed" + b"\x00" * 60)
    write_manifest(directory)
    return directory


def test_an_intact_entry_has_no_problem(tmp_path: Path) -> None:
    assert manifest_problems(_entry(tmp_path / "e")) == []


@pytest.mark.parametrize("damage, expected", [
    (lambda d: (d / "zImage").write_bytes(b"truncated!"), "zImage changed"),
    (lambda d: (d / "dtbs" / "vexpress-v2p-ca9.dtb").unlink(), "dtbs/vexpress-v2p-ca9.dtb is missing"),
    (lambda d: (d / "stray").write_text("x"), "stray is not in the manifest"),
    (lambda d: (d / "MANIFEST.sha256").unlink(), "MANIFEST.sha256 is missing"),
    (lambda d: (d / "MANIFEST.sha256").write_text("garbage\n"), "MANIFEST.sha256 is damaged"),
])
def test_each_kind_of_damage_is_named(tmp_path: Path, damage: object, expected: str) -> None:
    entry = _entry(tmp_path / "e")
    damage(entry)  # type: ignore[operator]
    assert manifest_problems(entry) == [expected]


def test_a_truncated_cached_zimage_is_rebuilt_not_returned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """The reproduction: a 10-byte zImage in a cache entry whose build.json is fine."""
    monkeypatch.setenv("CMA_HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(kbuild, "build_key", lambda request, toolchain: "ab" * 32)
    tree = tmp_path / "tree"
    tree.mkdir()
    entry = tmp_path / "cache" / "kernels" / ("ab" * 8)
    entry.mkdir(parents=True)
    info = {"key": "ab" * 32, "release": "6.1.192", "config_hash": "c", "series_hash": "s",
            "toolchain": "t", "source": "src", "source_identity": "i", "tree": str(tree)}
    (entry / "build.json").write_text(json.dumps(info))
    (entry / "zImage").write_bytes(b"\x00" * 4096)
    (entry / "src").mkdir()
    write_manifest(entry)
    request: kbuild.BuildRequest = None  # type: ignore[assignment]  # build_key is patched
    found = kbuild.cached_build(request, "t")
    assert found is not None and found.zimage == entry / "zImage"
    (entry / "zImage").write_bytes(b"0123456789")
    assert kbuild.cached_build(request, "t") is None
    assert not entry.exists()
    assert "zImage changed" in capsys.readouterr().err


def test_temporary_directories_of_killed_runs_are_collected(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 10: temporary directories in the cache were never collected."""
    monkeypatch.setenv("CMA_HARNESS_CACHE", str(tmp_path))
    old, fresh, entry = (tmp_path / "kernels" / ".abc-old", tmp_path / "kernels" / ".abc-new",
                         tmp_path / "kernels" / "0123456789abcdef")
    for d in (old, fresh, entry):
        d.mkdir(parents=True)
    os.utime(old, (0, 0))
    os.utime(entry, (0, 0))
    assert collect_stale() == [old]
    assert not old.exists() and fresh.is_dir() and entry.is_dir()


def _kernel_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, with_src: bool) -> Path:
    monkeypatch.setenv("CMA_HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(kbuild, "build_key", lambda request, toolchain: "cd" * 32)
    (tmp_path / "tree").mkdir()
    entry = tmp_path / "cache" / "kernels" / ("cd" * 8)
    entry.mkdir(parents=True)
    info = {"key": "cd" * 32, "release": "6.1.192", "config_hash": "c", "series_hash": "s",
            "toolchain": "t", "source": "src", "source_identity": "i", "tree": str(tmp_path / "tree")}
    (entry / "build.json").write_text(json.dumps(info))
    (entry / "zImage").write_bytes(b"\x00" * 4096)
    if with_src:
        (entry / "src" / "tools").mkdir(parents=True)
    write_manifest(entry)
    return entry


def test_a_cached_kernel_without_its_selftests_copy_is_rebuilt(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """An entry made before each build kept src/: its initramfs would silently lack dmabuf-heap."""
    entry = _kernel_entry(tmp_path, monkeypatch, with_src=False)
    request: kbuild.BuildRequest = None  # type: ignore[assignment]  # build_key is patched
    assert kbuild.cached_build(request, "t") is None
    assert not entry.exists()
    assert "src/ (this build's copy of the kernel selftests) is missing" in capsys.readouterr().err


def test_a_cached_kernel_with_its_selftests_copy_is_used(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    entry = _kernel_entry(tmp_path, monkeypatch, with_src=True)
    request: kbuild.BuildRequest = None  # type: ignore[assignment]  # build_key is patched
    found = kbuild.cached_build(request, "t")
    assert found is not None and found.selftests_src == entry / "src"


def test_a_missing_selftest_source_stops_the_initramfs(tmp_path: Path) -> None:
    """Never an initramfs that quietly lacks a selftest program."""
    from harness import rootfs
    from harness.errors import BuildError
    (tmp_path / "no-programs").mkdir()
    with pytest.raises(BuildError, match="dmabuf-heap.c is missing from"):
        rootfs.compile_guest_programs(tmp_path / "headers", tmp_path / "empty-tree", tmp_path / "bin",
                                      rootfs_dir=tmp_path / "no-programs")

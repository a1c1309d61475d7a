from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.errors import InputError, PatchError
from harness.series import init_series_state, parse_series, switch_series


def _tree(fixtures: Path, tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    shutil.copytree(fixtures / "series" / "tree", tree)
    init_series_state(tree)
    return tree


def test_good_series_applies(fixtures: Path, tmp_path: Path) -> None:
    series = parse_series(fixtures / "series" / "good" / "series")
    assert [p.name for p in series.patches] == ["0001-dma-contiguous-remember-that-cma-was-given.patch"]
    tree = _tree(fixtures, tmp_path)
    assert switch_series(series, tree) == (0, 1)
    assert "static bool cmdline_seen __initdata;" in (tree / "kernel/dma/contiguous.c").read_text()


def test_bad_series_names_the_patch_and_the_hunk(fixtures: Path, tmp_path: Path) -> None:
    series = parse_series(fixtures / "series" / "bad" / "series")
    tree = _tree(fixtures, tmp_path)
    with pytest.raises(PatchError) as exc:
        switch_series(series, tree)
    assert "0001-dma-contiguous-remember-that-cma-was-given.patch does not apply" in str(exc.value)
    assert "Hunk #1 FAILED" in str(exc.value)
    assert "+static bool cmdline_seen __initdata;" in exc.value.detail


def test_digest_changes_with_content(fixtures: Path) -> None:
    good = parse_series(fixtures / "series" / "good" / "series")
    bad = parse_series(fixtures / "series" / "bad" / "series")
    assert good.digest != bad.digest
    assert good.digest == parse_series(fixtures / "series" / "good" / "series").digest


def test_series_errors_name_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "series").write_text("# c\n\nmissing.patch\n")
    with pytest.raises(InputError, match=r"series:3: patch missing.patch not found"):
        parse_series(tmp_path / "series")
    (tmp_path / "a.patch").write_text("")
    (tmp_path / "series").write_text("a.patch -p1 extra\n")
    with pytest.raises(InputError, match=r"series:1: expected"):
        parse_series(tmp_path / "series")
    with pytest.raises(InputError, match="series file not found"):
        parse_series(tmp_path / "nope")


@pytest.mark.parametrize(("base", "export_dir", "dts_dir"), [
    ("6.1", "6.1", "6.1"), ("6.6", "6.1", "6.1"), ("6.12", "6.12", "6.12"), ("6.14", "6.12", "6.12"),
    ("6.15", "6.15", "6.12"), ("7.2", "6.15", "6.12"), ("7.9", "6.15", "6.12")])
def test_project_series_resolves_by_kernel_range(base: str, export_dir: str, dts_dir: str) -> None:
    series = parse_series(Path(__file__).parents[1] / "kernel-patches" / "series", base)
    assert [p.name for p in series.patches] == [
        "0001-dma-contiguous-log-how-early_cma-read-the-cma-parame.patch",
        f"{export_dir}/0002-mm-cma-export-symbols-for-test-modules.patch",
        "0003-misc-add-cma-dev-test-device.patch",  # one cma-dev for every kernel
        f"{dts_dir}/0004-ARM-dts-exynos-smdkv310-turn-the-MFC-regions-into-CM.patch"]


def test_a_kernel_older_than_every_per_version_directory_gets_a_clear_error() -> None:
    with pytest.raises(InputError, match=r"series:\d+: patch 0002-mm-cma-export-symbols-for-test-modules"
                       r"\.patch not found$"):
        parse_series(Path(__file__).parents[1] / "kernel-patches" / "series", "5.15")


def test_per_base_patch_wins_for_its_base(fixtures: Path) -> None:
    series_file = fixtures / "series" / "perbase" / "series"
    name = "0001-dma-contiguous-remember-that-cma-was-given.patch"
    assert [p.name for p in parse_series(series_file, "6.1").patches] == [name]
    assert [p.name for p in parse_series(series_file, "6.12").patches] == [f"6.12/{name}"]
    assert parse_series(series_file, "6.1").digest != parse_series(series_file, "6.12").digest


def test_switch_series_reverses_and_applies_incrementally(fixtures: Path, tmp_path: Path) -> None:
    from harness.series import Series, TreeStateError, init_series_state, switch_series

    tree = _tree(fixtures, tmp_path)
    pristine = (tree / "kernel/dma/contiguous.c").read_text()
    init_series_state(tree)
    good = parse_series(fixtures / "series" / "good" / "series")
    assert switch_series(good, tree) == (0, 1)
    assert "cmdline_seen" in (tree / "kernel/dma/contiguous.c").read_text()
    assert switch_series(good, tree) == (0, 0)  # nothing to do
    empty = Series(good.path, ())
    assert switch_series(empty, tree) == (1, 0)
    assert (tree / "kernel/dma/contiguous.c").read_text() == pristine
    bad = parse_series(fixtures / "series" / "bad" / "series")
    with pytest.raises(PatchError, match="does not apply"):
        switch_series(bad, tree)
    # A failed patch leaves the tree as it was, no .rej behind, and the record consistent.
    assert (tree / "kernel/dma/contiguous.c").read_text() == pristine
    assert not list(tree.rglob("*.rej"))
    assert switch_series(good, tree) == (0, 1)
    (tree / ".cma-harness-series" / "manifest.json").write_text("{")
    with pytest.raises(TreeStateError):
        switch_series(good, tree)

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import BuildError, ConfigError, InputError
from harness.kbuild import _MakeRunner, first_error_lines, parse_fragment, verify_config
from tests.conftest import processes_with

REPO = Path(__file__).parents[1]


def test_parse_fragment_reads_set_and_unset() -> None:
    text = "# comment\nCONFIG_CMA=y\n# CONFIG_ARCH_EXYNOS5 is not set\nCONFIG_CMA_AREAS=8\n"
    assert parse_fragment(text) == {"CONFIG_CMA": "y", "CONFIG_ARCH_EXYNOS5": "n",
                                    "CONFIG_CMA_AREAS": "8"}


def test_verify_config_names_every_dropped_option() -> None:
    final = "CONFIG_CMA=y\n# CONFIG_CMA_SYSFS is not set\nCONFIG_CMA_AREAS=7\n"
    requested = {"CONFIG_CMA": "y", "CONFIG_CMA_SYSFS": "y", "CONFIG_CMA_AREAS": "8",
                 "CONFIG_DMA_CMA": "y"}
    with pytest.raises(ConfigError) as exc:
        verify_config(requested, final)
    msg = str(exc.value)
    assert "CONFIG_CMA_SYSFS=y (got n)" in msg
    assert "CONFIG_CMA_AREAS=8 (got 7)" in msg
    assert "CONFIG_DMA_CMA=y (got n (absent))" in msg
    assert "CONFIG_CMA=y" not in msg.replace("CONFIG_CMA_", "")


def test_verify_config_accepts_landed_and_absent_unset() -> None:
    verify_config({"CONFIG_CMA": "y", "CONFIG_ARCH_EXYNOS5": "n"}, "CONFIG_CMA=y\n")


def test_project_fragments_request_the_cma_options() -> None:
    opts = parse_fragment((REPO / "kernel-patches/fragments/cma.config").read_text())
    for name in ("CONFIG_CMA", "CONFIG_DMA_CMA", "CONFIG_CMA_DEBUGFS", "CONFIG_CMA_SYSFS",
                 "CONFIG_DMABUF_HEAPS_CMA", "CONFIG_MODULES", "CONFIG_DEVTMPFS"):
        assert opts.get(name) == "y", name


def test_source_version_from_a_tree_and_an_oddly_named_tarball(tmp_path: Path) -> None:
    import subprocess

    from harness.kbuild import resolve_source

    tree = tmp_path / "linux-x"
    tree.mkdir()
    (tree / "Makefile").write_text("# SPDX\nVERSION = 6\nPATCHLEVEL = 12\nSUBLEVEL = 9\n")
    (tree / "Kconfig").write_text("")
    assert resolve_source(tree).version == "6.12"
    tarball = tmp_path / "src.tar.gz"
    subprocess.run(["tar", "-czf", str(tarball), "-C", str(tmp_path), "linux-x"], check=True)
    assert resolve_source(tarball).version == "6.12"
    junk = tmp_path / "junk.tar.xz"
    junk.write_bytes(b"no")
    with pytest.raises(InputError, match="cannot unpack"):
        resolve_source(junk)
    (tree / "Makefile").write_text("all:\n")
    with pytest.raises(InputError, match="is not a kernel tree"):
        resolve_source(tree)


def test_a_failed_make_names_its_first_error_lines_and_the_log(tmp_path: Path) -> None:
    """A real make whose recipe needs a tool that is not installed (as headers_install needs rsync)."""
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "Makefile").write_text("headers_install:\n\tcma-harness-no-such-tool -a src/ dest/ && true\n")
    log = tmp_path / "build.log"
    make = _MakeRunner(tree, tmp_path / "out", log, lambda message: None)
    with pytest.raises(BuildError) as exc:
        make("headers_install")
    message = str(exc.value)
    assert "cma-harness-no-such-tool: not found" in message
    assert "*** [Makefile:2: headers_install] Error 127" in message
    assert str(log) in message and "\n" not in message


def test_first_error_lines_keep_the_order_and_drop_repeats() -> None:
    lines = ["  CC      mm/cma.o\n", "mm/cma.c:12:1: error: expected ';'\n",
             "mm/cma.c:12:1: error: expected ';'\n",
             "make[2]: *** [scripts/Makefile.build:250: mm/cma.o] Error 1\n",
             "/bin/sh: 1: rsync: not found\n"]
    assert first_error_lines(lines, most=2) == [
        "mm/cma.c:12:1: error: expected ';'", "make[2]: *** [scripts/Makefile.build:250: mm/cma.o] Error 1"]
    assert first_error_lines(["  LD      vmlinux\n"]) == []


def test_an_interrupted_build_leaves_no_make_or_compiler_behind(tmp_path: Path) -> None:
    """Issue 10: make (and what it started) kept running after the harness failed or was interrupted."""
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "Makefile").write_text("zImage:\n\tsleep 61.234 & sleep 61.234 & "
                                   "while true; do echo CC; sleep 0.05; done\n")

    def interrupt(message: str) -> None:
        raise KeyboardInterrupt

    make = _MakeRunner(tree, tmp_path / "out", tmp_path / "build.log", interrupt)
    with pytest.raises(KeyboardInterrupt):
        make("zImage")
    assert processes_with("61.234") == []

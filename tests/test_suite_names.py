"""One list of suite names: ``rootfs/cma-test/suites.def``, read by the guest program and the harness.

The guest program builds its suite table by including ``suites.def``; the
harness reads the names from it (:data:`harness.matrix.KNOWN_SUITES`).  These
tests fail when anything else starts to carry its own copy, or when the list
and the C code around it drift apart.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness import kbuild, matrix, paths, rootfs
from harness.errors import EnvironmentProblem, InputError

CMA_TEST = paths.ROOTFS_DIR / "cma-test"


def _c_code(path: Path) -> str:
    """The text of a C file without its comments."""
    return re.sub(r"/\*.*?\*/|//[^\n]*", "", path.read_text(), flags=re.DOTALL)


def test_suites_def_entries() -> None:
    assert matrix.SUITES_DEF == CMA_TEST / "suites.def"
    assert matrix.CMA_TEST_SUITES == matrix.read_suites_def()
    assert matrix.CMA_TEST_SUITES == ("alloc-free", "exhaustion", "migrate", "dma", "replay",
                                      "concurrency")


def test_known_suites_are_cma_test_suites_plus_the_kernel_selftests() -> None:
    assert matrix.KNOWN_SUITES == matrix.CMA_TEST_SUITES + matrix.SELFTEST_SUITES
    assert not set(matrix.SELFTEST_SUITES) & set(matrix.CMA_TEST_SUITES)
    assert set(matrix.AREA_SUITES) <= set(matrix.CMA_TEST_SUITES)
    # A selftest suite is a tools/testing/selftests/<dir> the build keeps and the guest gets.
    selftest_dirs = {Path(source).parent.name for source in rootfs.SELFTESTS.values()}
    for suite in matrix.SELFTEST_SUITES:
        assert suite in kbuild.SELFTEST_DIRS and suite in selftest_dirs


def test_the_c_suite_table_is_built_from_suites_def() -> None:
    main = _c_code(CMA_TEST / "cma-test.c")
    table = re.search(r"\bsuites\[\]\s*=\s*\{(.*?)\};", main, re.DOTALL)
    assert table is not None, "no suites[] table in cma-test.c"
    body = [line.strip() for line in table[1].splitlines() if line.strip()]
    assert body == ['#define SUITE(name, func) { name, func },', '#include "suites.def"', "#undef SUITE"]
    for source in CMA_TEST.glob("*.[ch]"):  # no second table of names typed in by hand
        code = _c_code(source)
        spelled = [name for name in matrix.CMA_TEST_SUITES if f'"{name}"' in code]
        assert len(spelled) <= 1, f"{source.name} lists suites {spelled} itself"  # "dma": a replay step
        assert source.name == "cma-test.c" or "suites.def" not in code


def test_every_suite_function_is_declared_and_defined_once() -> None:
    functions = re.findall(r"^SUITE\(\"[^\"]+\", (\w+)\)$", matrix.SUITES_DEF.read_text(), re.MULTILINE)
    assert len(functions) == len(matrix.CMA_TEST_SUITES)
    header = _c_code(CMA_TEST / "suite.h")
    definitions = {f.name: _c_code(f) for f in CMA_TEST.glob("suite_*.c")}
    for func in functions:
        signature = f"void {func}(struct ktap *k, struct ctx *c)"
        assert f"{signature};" in header
        defined_in = [name for name, code in definitions.items() if f"\n{signature}\n{{" in code]
        assert len(defined_in) == 1, (func, defined_in)


def test_the_readme_documents_every_suite_in_order() -> None:
    readme = (CMA_TEST / "README.md").read_text()
    table = readme.split("| Suite | Checks |", 1)[1].split("\n\n", 1)[0]
    assert tuple(re.findall(r"^\| `([a-z0-9-]+)` \|", table, re.MULTILINE)) == matrix.CMA_TEST_SUITES


def test_a_matrix_naming_an_unknown_suite_lists_the_known_ones() -> None:
    data = {"boards": ["a"], "cmdlines": [""], "suites": ["alloc-free", "nope"]}
    with pytest.raises(InputError, match=r"unknown suite\(s\) nope .*known: alloc-free, .*dmabuf-heaps"):
        matrix.parse_matrix(data, Path("m.toml"))


@pytest.mark.parametrize("text,problem", [
    ('SUITE("alloc-free", suite_alloc_free)\nSUITE(dma, suite_dma)\n', r"suites.def:2: not a SUITE"),
    ('SUITE("dma", suite_dma)\n/* a comment\n   over lines */\nSUITE("dma", suite_dma2)\n',
     r"suites.def:4: suite 'dma' is listed twice"),
    ("/* SPDX-License-Identifier: GPL-2.0 */\n\n", "lists no suite"),
    ('SUITE("dma", suite_dma) SUITE("x", suite_x)\n', "not a SUITE"),
])
def test_read_suites_def_refuses_what_it_cannot_read(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "suites.def"
    path.write_text(text)
    with pytest.raises(EnvironmentProblem, match=problem):
        matrix.read_suites_def(path)


def test_read_suites_def_skips_comments_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "suites.def"
    path.write_text('/* SPDX */\n/*\n * SUITE("not-this", suite_x)\n */\n\nSUITE("b", suite_b)\n'
                    'SUITE("a-1", suite_a1)\n')
    assert matrix.read_suites_def(path) == ("b", "a-1")
    with pytest.raises(EnvironmentProblem, match="cannot read"):
        matrix.read_suites_def(tmp_path / "missing.def")

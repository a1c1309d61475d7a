from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from harness.boards import available_boards, load_board, parse_board
from harness.errors import InputError
from harness.matrix import DEFAULT_MATRIX, filter_cells, load_matrix, parse_matrix


def test_vexpress_a9_board_file() -> None:
    board = load_board("vexpress-a9")
    assert board.machine == "vexpress-a9" and board.memory_mib == 512
    assert board.ram[0].base == 0x60000000 and board.ram[0].size == 512 << 20
    assert "console=ttyAMA0" in board.kernel_args
    assert "cma.config" in board.fragments


def test_unknown_board_lists_known_ones() -> None:
    with pytest.raises(InputError, match=r"unknown board 'nope' \(known boards: .*vexpress-a9"):
        load_board("nope")
    assert "vexpress-a9" in available_boards()


def test_board_missing_key_names_file_and_key() -> None:
    data = tomllib.loads((Path(__file__).parents[1] / "boards/vexpress-a9.toml").read_text())
    del data["qemu"]["machine"]
    with pytest.raises(InputError, match=r"x.toml \[qemu\]: missing key 'machine'"):
        parse_board("x", data, "x.toml")
    data["qemu"]["machine"] = 5
    with pytest.raises(InputError, match="'machine' must be a str"):
        parse_board("x", data, "x.toml")


def test_default_matrix_expands_with_expectations_from_data() -> None:
    m = load_matrix(DEFAULT_MATRIX)
    cmdlines = [c.cmdline for c in m.cells]
    assert {"", "cma=0", "cma=32M", "cma=64M", "cma=128M", "cma=1G", "cma=lots"} <= set(cmdlines)
    by = {c.cmdline: c.expect for c in m.cells}
    assert (by["cma=32M"].outcome, by["cma=32M"].size_mib) == ("reserved", 32)
    assert by["cma=1G"].outcome == "failed" and by["cma=0"].outcome == "none"
    assert all(c.board == "vexpress-a9" for c in m.cells)
    assert m.cells[0].name == "vexpress-a9:(default)"


@pytest.mark.parametrize("data,msg", [
    ({"boards": [], "cells": [{"expect": {"cma": "none"}}]}, "'boards' must be a non-empty list"),
    ({"boards": ["b"]}, r"no \[\[cells\]\]"),
    ({"boards": ["b"], "cells": [{"cmdline": "cma=1;x", "expect": {"cma": "none"}}]}, "';'"),
    ({"boards": ["b"], "cells": [{"cmdline": "cma=1M", "expect": {"cma": "big"}}]}, "expect.cma must"),
    ({"boards": ["b"], "cells": [{"cmdline": "cma=1M", "expect": {"cma": "reserved"}}]}, "size_mib"),
    ({"boards": ["b"], "cells": [{"cmdlin": "x", "expect": {"cma": "none"}}]}, "unknown key"),
])
def test_bad_matrices_name_file_and_key(data: dict[str, object], msg: str) -> None:
    with pytest.raises(InputError, match=msg) as exc:
        parse_matrix(data, Path("m.toml"))
    assert "m.toml" in str(exc.value)


def test_filters_that_leave_nothing_are_errors() -> None:
    m = load_matrix(DEFAULT_MATRIX)
    assert [c.cmdline for c in filter_cells(m, None, "cma=64M")] == ["cma=64M"]
    with pytest.raises(InputError, match="no cell matching"):
        filter_cells(m, "smdkc210", None)

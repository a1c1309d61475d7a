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


def test_default_matrix_crosses_four_boards_and_leaves_expectations_to_the_oracle() -> None:
    m = load_matrix(DEFAULT_MATRIX)
    assert {c.board for c in m.cells} == {"vexpress-a9", "vexpress-a15", "smdkc210", "virt"}
    per_board = {b: [c.cmdline for c in m.cells if c.board == b] for b in {c.board for c in m.cells}}
    for cmdlines in per_board.values():
        assert len(cmdlines) >= 10 and {"", "cma=0", "cma=lots", "cma=64M"} <= set(cmdlines)
        assert any("@" in c and "-" in c.split("@")[1] for c in cmdlines)  # an @start-end range
        assert any("@" in c and "-" not in c.split("@")[1] for c in cmdlines)  # a fixed base
    assert all(c.expect is None for c in m.cells)  # none typed in by hand
    assert all(c.xfail for c in m.cells if c.cmdline == "cma=64M@0x10000000")
    assert m.cells[0].name == "vexpress-a9:(default)"
    assert "migrate" in m.cells[0].suites and m.cells[0].area_suites


def test_every_board_file_loads_and_its_ram_adds_up() -> None:
    for name in available_boards():
        board = load_board(name)
        assert sum(b.size for b in board.ram) == board.memory_mib << 20
    assert load_board("smdkc210").memory_fixed and load_board("smdkc210").smp == 2
    assert load_board("virt").dtb == "" and "virt-lpae.config" in load_board("virt").fragments


def test_board_ram_must_match_memory_mib() -> None:
    data = tomllib.loads((Path(__file__).parents[1] / "boards/vexpress-a9.toml").read_text())
    data["qemu"]["memory_mib"] = 256
    with pytest.raises(InputError, match=r"x.toml \[memory\]: 'banks' add up to 512 MiB"):
        parse_board("x", data, "x.toml")


@pytest.mark.parametrize("data,msg", [
    ({"boards": [], "cells": [{"expect": {"cma": "none"}}]}, "'boards' must be a non-empty list"),
    ({"boards": ["b"]}, "expands to no cell"),
    ({"boards": ["b"], "cmdlines": ["cma=1M", "cma=1M"]}, "lists 'cma=1M' twice"),
    ({"boards": ["b"], "cmdlines": ["x"], "cells": [{"cmdline": "y", "boards": ["c"]}]},
     "c not in the matrix"),
    ({"boards": ["b"], "cmdlines": ["x"], "cells": [{"cmdline": "x", "xfail": ""}]},
     "'xfail' must be a non-empty"),
    ({"boards": ["b"], "cmdlines": ["x"], "cells": [{"cmdline": "x", "xfail": "r", "skip": "s"}]},
     "not both"),
    ({"boards": ["b"], "cells": [{"cmdline": "y"}, {"cmdline": "y"}]}, "b:y is listed twice"),
    ({"boards": ["b"], "cmdline": ["x"]}, r"unknown key\(s\) cmdline"),
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
    assert [c.name for c in filter_cells(m, "vexpress-a9", "cma=64M")] == ["vexpress-a9:cma=64M"]
    with pytest.raises(InputError, match="no cell matching"):
        filter_cells(m, "smdkc210", "cma=1")


def test_axes_cross_and_cells_refine_or_add() -> None:
    data = {"boards": ["a", "b"], "cmdlines": ["", "cma=0"], "suites": ["alloc-free"],
            "area_suites": ["exhaustion"], "required_subtests": ["cma-test/alloc-free/area-restored"],
            "cells": [{"cmdline": "cma=0", "boards": ["b"], "xfail": "known bug"},
                      {"cmdline": "cma=lots", "boards": ["a"], "skip": "slow",
                       "expect": {"cma": "none"}}]}
    m = parse_matrix(data, Path("m.toml"), known_boards=("a", "b"))
    assert [c.name for c in m.cells] == ["a:(default)", "a:cma=0", "a:cma=lots", "b:(default)", "b:cma=0"]
    by = {c.name: c for c in m.cells}
    assert by["b:cma=0"].xfail == "known bug" and by["a:cma=0"].xfail == ""
    assert by["a:(default)"].expect is None and by["a:(default)"].suites == ("alloc-free",)
    assert by["a:(default)"].area_suites == ("exhaustion",)
    assert by["a:cma=lots"].skip == "slow" and by["a:cma=lots"].suites == ()
    assert by["a:cma=lots"].expect is not None and by["a:cma=lots"].expect.outcome == "none"


def test_matrix_with_unknown_board_is_refused() -> None:
    with pytest.raises(InputError, match=r"m.toml: 'boards': unknown board\(s\) zz"):
        parse_matrix({"boards": ["a", "zz"], "cmdlines": [""]}, Path("m.toml"), known_boards=("a",))

"""The one marker parser, on streams cut anywhere; and the cell script it parses."""

from __future__ import annotations

import pytest

from harness.matrix import load_matrix
from harness.script import MAX_LINE, BudgetKind, Step, build_script, step_line
from harness.transcript import StepParser, parse_log, split_log

N = "0123456789ab"
LOG = (f"echo of printf '\\n@@%s begin %s' {N}\n@@{N} begin command loop 1.00\n"
       f"@@{N} begin suite inner:a 1.10\nKTAP version 1\n[    2.000000] a kernel record\nok 1 x\n"
       f"@@{N} end inner:a 0 3.60\n@@{N} end nosuch 0 3.70\n"
       f"@@{N} end loop 0 3.70\n@@{N} begin command guarded 3.80\n@@{N} end guarded - 3.80\n"
       f"@@{N} begin command last 4.00\noutput without end")


def test_nested_skipped_and_unfinished_steps() -> None:
    t = parse_log(LOG.encode(), N)
    assert [r.id for r in t.roots] == ["loop", "guarded", "last"]
    inner = t.steps["inner:a"]
    assert (inner.kind, inner.status, inner.seconds) == ("suite", 0, 2.5)
    assert inner.output == "KTAP version 1\nok 1 x"
    assert t.steps["loop"].children == [inner] and t.steps["guarded"].skipped
    assert not t.steps["last"].complete and t.records == ["[    2.000000] a kernel record"]
    assert t.records_before(t.steps["inner:a"].start) == []
    assert t.records_before(t.steps["loop"].stop) == t.records


def test_the_stream_cut_at_every_byte_parses_the_same() -> None:
    whole = parse_log(LOG.encode(), N)
    user = split_log(LOG.encode()).user
    for cut in range(len(user)):
        parser = StepParser(N)
        parser.scan(user[:cut])
        parser.scan(user)
        assert [(r.id, r.status, r.output) for r in parser.by_id.values()] == [
            (r.id, r.status, r.output) for r in whole.steps.values()]


def test_every_default_matrix_line_fits_the_tty_and_ids_are_unique() -> None:
    for cell in load_matrix().cells:
        script = build_script(cell, N)
        assert len(set(script.ids())) == len(script.ids())
        assert all(len(step_line(s, N)) <= MAX_LINE for s in script.steps)
    with pytest.raises(ValueError, match="the tty takes"):
        step_line(Step("x", "true " * 1000), N)


def test_guards_and_sets_in_the_typed_line() -> None:
    line = step_line(Step("s", "cmd", BudgetKind.SUITE, when="a", sets="b"), N)
    assert 'if [ -n "$a" ]; then cmd; s=$?; else s=-; fi; [ "$s" = 0 ] && b=1' in line
    assert f"@@%s begin %s %s %s\\n' {N} suite \"s\"" in line and f"@@{N}" not in line

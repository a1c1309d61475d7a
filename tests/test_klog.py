from __future__ import annotations

from harness.klog import ConsoleSplitter, ProblemKind, classify, find_problems, timestamp


def test_record_in_the_middle_of_a_user_line_is_cut_out() -> None:
    s = ConsoleSplitter()
    records = s.feed("abc12[   12.345678] random: crng init done\ndefB\nout\n")
    assert records == ["[   12.345678] random: crng init done"]
    assert s.user == "abc12defB\nout\n"


def test_record_split_across_chunks_is_held_back() -> None:
    s = ConsoleSplitter()
    assert s.feed("mark[   1") == []
    assert s.user == "mark"
    assert s.feed("2.000001] WARNING: CPU: 0 PID: 1 at mm/cma.c:1 x\n") == [
        "[   12.000001] WARNING: CPU: 0 PID: 1 at mm/cma.c:1 x"]
    assert s.feed("erE 0\n") == []
    assert s.user == "markerE 0\n"


def test_bracket_that_is_not_a_record_is_released() -> None:
    s = ConsoleSplitter()
    s.feed("[ a list ]\n")
    assert s.user == "[ a list ]\n"
    s.feed("x [")
    assert s.user.endswith("x ")
    s.flush()
    assert s.user.endswith("x [")


def test_dmesg_raw_lines_stay_user_output() -> None:
    s = ConsoleSplitter()
    assert s.feed("<6>[    0.000000] Booting Linux on physical CPU 0x0\n") == []
    assert s.user.startswith("<6>[    0.000000] Booting")


def test_classify_kernel_problems() -> None:
    assert classify("[  1.0] Kernel panic - not syncing: VFS") is ProblemKind.PANIC
    assert classify("[  1.0] Internal error: Oops: 5 [#1] SMP ARM") is ProblemKind.OOPS
    assert classify("[  1.0] kernel BUG at mm/cma.c:42!") is ProblemKind.BUG
    assert classify("[  1.0] BUG: sleeping function called from invalid context") is ProblemKind.BUG
    assert classify("[  1.0] WARNING: CPU: 0 PID: 1 at mm/page_alloc.c:5 f+0x1/0x2") is ProblemKind.WARNING
    assert classify("[  1.0] cma: Reserved 16 MiB at 0x7f000000") is None
    assert classify("[  1.0] debug: skip boot console de-registration.") is None
    assert [p.kind for p in find_problems(["a", "kernel BUG at x:1!", "b"])] == [ProblemKind.BUG]


def test_timestamp() -> None:
    assert timestamp("[   12.345678] x") == 12.345678
    assert timestamp("x") is None

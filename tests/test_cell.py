"""The cell's verdict from console logs (a fake guest prints them): faults become error, failed or
skipped testcases, exactly as judged from what the guest printed."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pexpect

from harness.boards import load_board
from harness.cellresult import CellResult, Ending, EndKind
from harness.checks import CmaExpectation, Status
from harness.expectation import Expectation
from harness.job import CellJob
from harness.judge import judge
from harness.matrix import Cell
from harness.qemu import BootSpec
from harness.script import build_script, step_line
from tests.fakeguest import FakeGuest

AREAS = ("# abi=1 areas=1 max_align_order=8 page_size=4096\n"
         "idx name base size total free\n0   reserved 0x007c000000 67108864 16384 16320\n")
KTAP = "KTAP version 1\n1..1\nok 1 alloc-free\n"
PROBE = ("before.used=0\nalloc.status=0\nafter_alloc.used=64\nfree.status=0\nafter_free.used=0\n"
         "before.maxchunk=16384\nafter_free.maxchunk=16384\n")
CELL = Cell("vexpress-a9", "cma=64M", CmaExpectation("reserved", 64), suites=("alloc-free", "migrate"),
            required=("cma-test/alloc-free",))
COUNTERS = "reserved.used=64\n"
GOOD: dict[str, str | tuple[str, int]] = {
    "meminfo": "CmaTotal: 65536 kB\nCmaFree: 65280 kB\n", "debugfs-list": "reserved\n",
    "probe:reserved": PROBE, "cma-dev-areas": AREAS,
    "alloc-probe": "handle=1 phys=0x7c100000 size=1048576 order=4 latency_us=9",
    "dma-probe": "handle=2 dma=0x7c200000 phys=0x7c200000 latency_us=9",
    **{f"counters-{w}:{s}": COUNTERS for w in ("before", "after") for s in ("alloc-free", "migrate", "dma")},
    **{f"suite:{s}": KTAP.replace("alloc-free", s) for s in ("alloc-free", "migrate", "dma")}}
PANIC = "[    3.406080] Kernel panic - not syncing: sysrq triggered crash\r\n"


def _job(cell: Cell = CELL) -> CellJob:
    spec = BootSpec(load_board("vexpress-a9"), Path("zImage"), Path("a.dtb"), Path("initrd"), "cma=64M")
    return CellJob.local(cell, spec, Expectation.hand_written(CmaExpectation("reserved", 64)))


def _judge(answers: dict[str, str | tuple[str, int]], cell: Cell = CELL, stop: str = "",
           ending: Ending | None = None, extra: str = "") -> CellResult:
    job = _job(cell)
    log = FakeGuest(job, answers, stop, extra).log()
    return judge(log, job, ending or Ending(EndKind.GONE if stop else EndKind.POWEROFF, stop,
                                            boot_seconds=1.5, seconds=9.0))


def _names(result: CellResult) -> dict[str, tuple[Status, str]]:
    return {c.name: (c.status, c.message) for c in result.checks}


def test_all_good() -> None:
    result = _judge(GOOD)
    names = _names(result)
    assert all(s is Status.PASS for s, _ in names.values()), names
    assert {"boot", "cma-reservation", "cma-meminfo", "cma-dev/load", "cma-dev/alloc-in-area",
            "cma-test/alloc-free.no-leak", "cma-test/migrate.no-leak", "cma-test/required-subtests",
            "cma-debugfs[reserved]", "kernel-log-clean"} <= set(names)
    assert names["boot"] == (Status.PASS, "shell after 1.50s")
    assert [r.path for r in result.suites] == ["cma-test/alloc-free", "cma-test/migrate"]
    assert result.suites[0].before == {"reserved.used": "64"} and result.suites[0].seconds == 0.25
    assert [a.name for a in result.areas] == ["reserved"] and result.cma is not None
    assert result.cma.cma_total_kb == 65536


def test_module_that_fails_to_load_is_a_failed_testcase_and_no_suite_runs() -> None:
    result = _judge({**GOOD, "cma-dev-load": ("modprobe: can't load module cma-dev", 1)})
    dev = [c for c in result.checks if c.name.startswith(("cma-dev", "cma-test"))]
    assert [(c.name, c.status) for c in dev] == [("cma-dev/load", Status.FAIL)]
    assert "can't load module" in dev[0].details and dev[0].message.endswith("(exit status 1)")


def test_hung_suite_is_an_error_testcase_and_ends_the_cell() -> None:
    ending = Ending(EndKind.TIMEOUT, "suite:migrate", 300.0, boot_seconds=1.0)
    result = _judge(GOOD, stop="suite:migrate", ending=ending)
    last = next(c for c in result.checks if c.name == "cma-test/migrate")
    assert (last.status, last.infrastructure) == (Status.ERROR, False)
    assert last.message == "the suite did not finish: no answer from the guest within 300s"
    assert "@@" in last.details  # the console excerpt: the log's last lines
    assert _names(result)["cma-test/alloc-free"][0] is Status.PASS


def test_a_suite_killed_by_a_panic_names_the_panic_and_skips_the_rest() -> None:
    cell = replace(CELL, suites=("alloc-free", "migrate", "dma"))
    got = _names(_judge(GOOD, cell, stop="suite:migrate", extra=PANIC))
    gone = ("the guest stopped (QEMU exited) after a kernel panic: "
            "Kernel panic - not syncing: sysrq triggered crash")
    assert got["cma-test/migrate"] == (Status.ERROR, f"the suite did not finish: {gone}")
    assert got["cma-test/alloc-free"][0] is got["cma-meminfo"][0] is got["cma-debugfs[reserved]"][0] \
        is Status.PASS
    why = "not run: the guest stopped first (see cma-test/migrate)"
    assert got["cma-test/dma"] == got["cma-test/required-subtests"] == (Status.SKIP, why)
    assert "cma-test/migrate.no-leak" not in got and "cma-test/alloc-free.no-leak" in got
    assert got["kernel-log-clean"][0] is Status.FAIL


def test_qemu_killed_from_outside_mid_suite_is_infrastructure() -> None:
    ending = Ending(EndKind.GONE, "suite:migrate", host="QEMU was killed by SIGKILL", boot_seconds=1.0)
    suite = next(c for c in _judge(GOOD, stop="suite:migrate", ending=ending).checks
                 if c.name == "cma-test/migrate")
    assert (suite.status, suite.infrastructure) == (Status.ERROR, True)
    assert suite.message == ("the suite did not finish: QEMU was killed by SIGKILL: the guest stopped "
                             "(QEMU exited)")


def test_leak_after_a_suite_is_caught() -> None:
    got = _names(_judge({**GOOD, "counters-after:alloc-free": "reserved.used=320\n"}))
    assert got["cma-test/alloc-free.no-leak"][0] is Status.FAIL
    assert got["cma-test/migrate.no-leak"][0] is Status.PASS


def test_a_guest_that_dies_before_the_suites_skips_every_check_it_never_got_to() -> None:
    got = _names(_judge(GOOD, stop="meminfo"))
    why = "not run: the guest stopped first (see guest-commands)"
    assert {n: v for n, v in got.items() if v[0] is Status.SKIP} == {
        n: (Status.SKIP, why) for n in ("cma-meminfo", "cma-test/alloc-free", "cma-test/migrate",
                                        "cma-test/required-subtests", "cma-debugfs")}
    assert got["guest-commands"] == (Status.ERROR, "the guest stopped (QEMU exited)")
    assert got["kernel-log-clean"][0] is Status.PASS


def test_a_guest_that_never_boots_is_a_boot_error_with_the_kernel_log_judged() -> None:
    job = _job()
    log = b"[    0.000000] Booting Linux\r\n" + PANIC.encode()
    result = judge(log, job, Ending(EndKind.GONE, "shell", qemu_argv=("qemu-system-arm", "-M", "x")))
    assert [(c.name, c.status) for c in result.checks] == [("boot", Status.ERROR),
                                                           ("kernel-log-clean", Status.FAIL)]
    assert result.checks[0].message.startswith("the guest stopped (QEMU exited) after a kernel panic")
    assert "QEMU command line:\nqemu-system-arm -M x" in result.checks[0].details
    timeout = judge(b"", job, Ending(EndKind.TIMEOUT, "shell", 60.0, "QEMU exited with status 1 before "
                                     "the kernel ran"))
    assert timeout.checks[0].infrastructure and timeout.checks[0].message == (
        "QEMU exited with status 1 before the kernel ran: no answer from the guest within 60s")


def test_garbage_in_the_debugfs_listing_is_a_clear_error_and_never_typed() -> None:
    """Nothing the guest prints is ever typed back: the script is built from the cell alone."""
    listing = "reserved\n\x15\x03;reboot\n\ufffd\x1b[2J\n"
    got = _names(_judge({**GOOD, "debugfs-list": listing}))
    status, message = got["cma-debugfs"]
    assert status is Status.ERROR and message.startswith("/sys/kernel/debug/cma: cannot read the listing: ")
    assert "'\\x15\\x03;reboot'" in message and "is no CMA area name (not probed)" in message
    assert got["cma-debugfs[reserved]"][0] is Status.PASS
    lines = [step_line(s, "n") for s in build_script(CELL, "n").steps]
    assert not any("reboot" in line or "\x15" in line for line in lines)


def test_without_an_ending_the_log_alone_gives_the_same_testcases() -> None:
    job = _job()
    for stop in ("", "suite:migrate", "dmesg"):
        log = FakeGuest(job, GOOD, stop, PANIC if stop else "").log()
        recorded = judge(log, job, Ending(EndKind.GONE if stop else EndKind.POWEROFF, stop, boot_seconds=1.0))
        inferred = judge(log, job)
        assert [(c.name, c.status) for c in inferred.checks] == [(c.name, c.status) for c in recorded.checks]
        assert [c.message for c in inferred.checks][1:] == [c.message for c in recorded.checks][1:]


def test_a_guest_started_while_the_run_is_being_stopped_dies_at_once() -> None:
    """Ctrl-C raced a worker that was starting QEMU: that guest ran on and held up the exit."""
    from harness.cell import allow_guests, kill_all_guests, running_qemu

    kill_all_guests()
    try:
        with running_qemu(["sleep", "30"]) as child:
            child.expect(pexpect.EOF, timeout=5)
            assert not child.isalive()
    finally:
        allow_guests()
    with running_qemu(["sleep", "5"]) as child:
        assert child.isalive()


POOLS = AREAS + ("1   pool@5f000000 0x005f000000 16777216 4096 4096\n"
                 "2   bad,name 0x005e000000 4194304 1024 1024\n")


def test_area_suites_run_in_a_guest_loop_over_the_other_areas() -> None:
    cell = replace(CELL, suites=("alloc-free",), required=(), area_suites=("alloc-free", "exhaustion"))
    answers = {**GOOD, "cma-dev-areas": POOLS,
               **{f"suite:{s}@pool@5f000000": KTAP.replace("alloc-free", s)
                  for s in ("alloc-free", "exhaustion")},
               **{f"counters-{w}:{s}@pool@5f000000": "pool@5f000000.used=0\n" for w in ("before", "after")
                  for s in ("alloc-free", "exhaustion")}}
    result = _judge(answers, cell)
    got = _names(result)
    assert got["cma-test@pool@5f000000/exhaustion"][0] is Status.PASS
    assert got["cma-test@pool@5f000000/alloc-free.no-leak"][0] is Status.PASS
    assert got["cma-test@bad,name"] == (Status.ERROR, "area name unfit for a shell command; suites not run")
    assert [r.path for r in result.suites] == ["cma-test/alloc-free", "cma-test@pool@5f000000/alloc-free",
                                               "cma-test@pool@5f000000/exhaustion"]
    stopped = _names(_judge(answers, cell, stop="suite:exhaustion@pool@5f000000"))
    assert stopped["cma-test@pool@5f000000/exhaustion"][1].startswith("the suite did not finish")

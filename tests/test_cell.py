"""The cell's guest dialogue over a fake console: faults become error, failed or skipped testcases."""

from __future__ import annotations

from dataclasses import replace

import pexpect
import pytest

from harness.cell import _cma_dev, _drive, _evaluate, _Evidence
from harness.checks import CheckResult, CmaBootReport, CmaExpectation, CmaReservation, Status
from harness.console import CommandResult, ConsoleTimeout, GuestGone
from harness.errors import BootError
from harness.matrix import Cell

AREAS = ("# abi=1 areas=1 max_align_order=8 page_size=4096\n"
         "idx name base size total free\n0   reserved 0x007c000000 67108864 16384 16320\n")
KTAP = "KTAP version 1\n1..1\nok 1 alloc-free\n"
PROBE = ("before.used=0\nalloc.status=0\nafter_alloc.used=64\nfree.status=0\nafter_free.used=0\n"
         "before.maxchunk=16384\nafter_free.maxchunk=16384\n")


class FakeConsole:
    """Answers commands from a table; a value that is an exception is raised."""

    def __init__(self, answers: dict[str, object]) -> None:
        self.answers = answers
        self.ran: list[str] = []

    def run(self, command: str, budget: object) -> CommandResult:
        self.ran.append(command)
        for prefix, answer in sorted(self.answers.items(), key=lambda kv: -len(kv[0])):
            if command.startswith(prefix):
                if isinstance(answer, BaseException):
                    raise answer
                out, status = answer if isinstance(answer, tuple) else (answer, 0)
                return CommandResult(command, str(out), int(status), 0.01)
        return CommandResult(command, "", 0, 0.01)

    def poweroff(self, budget: object) -> bool:
        return True


REPORT = CmaBootReport(reserved=[CmaReservation(64, 0x7C000000)])
CELL = Cell("vexpress-a9", "cma=64M", CmaExpectation("reserved", 64), suites=("alloc-free", "migrate"),
            required=("cma-test/alloc-free",))
GOOD = {"modprobe": "", "cma-test areas": AREAS,
        "cma-test alloc": "handle=1 phys=0x7c100000 size=1048576 order=4 latency_us=9",
        "cma-test dma-alloc": "handle=2 dma=0x7c200000 phys=0x7c200000 latency_us=9",
        "cma-counters": "reserved.used=64\n", "cma-test suite": KTAP}


def _names(ev: _Evidence) -> dict[str, Status]:
    return {r.name: r.status for r in ev.dev_results}


def test_all_good() -> None:
    ev = _Evidence()
    _cma_dev(FakeConsole(GOOD), CELL, REPORT, ev)  # type: ignore[arg-type]
    names = _names(ev)
    assert all(s is Status.PASS for s in names.values()), names
    assert {"cma-dev/load", "cma-dev/alloc-in-area", "cma-test/alloc-free.no-leak",
            "cma-test/migrate.no-leak", "cma-test/required-subtests"} <= set(names)


def test_module_that_fails_to_load_is_a_failed_testcase() -> None:
    ev = _Evidence()
    console = FakeConsole({**GOOD, "modprobe": ("modprobe: can't load module cma-dev", 1)})
    _cma_dev(console, CELL, REPORT, ev)  # type: ignore[arg-type]
    assert [(r.name, r.status) for r in ev.dev_results] == [("cma-dev/load", Status.FAIL)]
    assert "can't load module" in ev.dev_results[0].details
    assert not any(c.startswith("cma-test suite") for c in console.ran)


@pytest.mark.parametrize("fault", [ConsoleTimeout("no answer from the guest within 300s", "tail"),
                                   GuestGone("the guest stopped (QEMU exited)", "Internal error: Oops")])
def test_hung_or_killed_suite_is_an_error_testcase_and_ends_the_cell(fault: BootError) -> None:
    ev = _Evidence()
    console = FakeConsole({**GOOD, "cma-test suite migrate": fault})
    with pytest.raises(BootError):
        _cma_dev(console, CELL, REPORT, ev)  # type: ignore[arg-type]
    last = ev.dev_results[-1]
    assert (last.name, last.status, last.infrastructure) == ("cma-test/migrate", Status.ERROR, False)
    assert str(fault) in last.message and last.details == fault.excerpt
    assert ev.suite_aborted and _names(ev)["cma-test/alloc-free"] is Status.PASS


def test_leak_after_a_suite_is_caught() -> None:
    ev = _Evidence()
    counters = iter(["reserved.used=64\n", "reserved.used=320\n", "reserved.used=320\n",
                     "reserved.used=320\n"])

    class Leaky(FakeConsole):
        def run(self, command: str, budget: object) -> CommandResult:
            if command == "cma-counters":
                return CommandResult(command, next(counters), 0, 0.01)
            return super().run(command, budget)

    _cma_dev(Leaky(GOOD), CELL, REPORT, ev)  # type: ignore[arg-type]
    assert _names(ev)["cma-test/alloc-free.no-leak"] is Status.FAIL


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


def _stopped_in(console: FakeConsole, cell: Cell = CELL) -> dict[str, tuple[Status, str]]:
    """What run_cell reports when the guest stops during ``console``'s dialogue."""
    ev = _Evidence()
    with pytest.raises(BootError):
        _drive(console, cell, REPORT, ev)  # type: ignore[arg-type]
    if not ev.suite_aborted:
        ev.dev_results.append(CheckResult("guest-commands", Status.ERROR, "the guest stopped"))
    ev.stopped = ev.dev_results[-1].name
    return {r.name: (r.status, r.message) for r in _evaluate(cell, REPORT, ev, [])}


DEBUGFS = {"ls /sys/kernel/debug/cma": "reserved\n", "cma-debugfs-probe reserved": PROBE,
           "cat /proc/meminfo": "CmaTotal: 65536 kB\nCmaFree: 65280 kB\n"}


def test_what_ran_before_the_guest_died_keeps_its_verdict_and_the_rest_is_skipped() -> None:
    cell = replace(CELL, suites=("alloc-free", "migrate", "dma"))
    gone = GuestGone("the guest stopped (QEMU exited) after a kernel panic: Kernel panic - ...", "")
    got = _stopped_in(FakeConsole({**GOOD, **DEBUGFS, "cma-test suite migrate": gone}), cell)
    assert got["cma-test/migrate"] == (Status.ERROR, f"the suite did not finish: {gone}")
    assert got["cma-test/alloc-free"][0] is got["cma-meminfo"][0] is got["cma-debugfs[reserved]"][0] \
        is Status.PASS
    why = "not run: the guest stopped first (see cma-test/migrate)"
    assert got["cma-test/dma"] == got["cma-test/required-subtests"] == (Status.SKIP, why)
    assert "cma-test/migrate.no-leak" not in got and "cma-test/alloc-free.no-leak" in got


def test_a_guest_that_dies_before_the_suites_skips_every_check_it_never_got_to() -> None:
    got = _stopped_in(FakeConsole({**GOOD, "cat /proc/meminfo": GuestGone("the guest stopped", "")}))
    why = "not run: the guest stopped first (see guest-commands)"
    assert {n: v for n, v in got.items() if v[0] is Status.SKIP} == {
        n: (Status.SKIP, why) for n in ("cma-meminfo", "cma-test/alloc-free", "cma-test/migrate",
                                        "cma-test/required-subtests", "cma-debugfs")}
    assert got["kernel-log-clean"][0] is Status.PASS


def test_garbage_in_the_debugfs_listing_is_never_typed_and_is_a_clear_error() -> None:
    """Control characters from the console would end up typed into the guest's shell."""
    listing = "reserved\n\x15\x03;reboot\n\ufffd\x1b[2J\n"
    console = FakeConsole({**GOOD, **DEBUGFS, "ls /sys/kernel/debug/cma": listing, "dmesg": ""})
    ev = _Evidence()
    _drive(console, CELL, REPORT, ev)  # type: ignore[arg-type]
    assert [c for c in console.ran if c.startswith("cma-debugfs-probe")] == ["cma-debugfs-probe reserved 64"]
    got = {r.name: (r.status, r.message) for r in _evaluate(CELL, REPORT, ev, [])}
    status, message = got["cma-debugfs"]
    assert status is Status.ERROR and message.startswith("/sys/kernel/debug/cma: cannot read the listing: ")
    assert "'\\x15\\x03;reboot'" in message and "is no CMA area name (not probed)" in message
    assert got["cma-debugfs[reserved]"][0] is Status.PASS

"""Running one matrix cell: boot the guest, collect evidence, run the checks.

This is the only module that combines the console with the checks; it passes
plain data (lines, dicts) to ``harness.checks`` and returns a :class:`CellResult`.
"""

from __future__ import annotations

import contextlib
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import cast

import pexpect

from harness import checks, oracle, qemu
from harness.checks import CheckResult, Status
from harness.console import Budget, Console, GuestGone
from harness.errors import BootError
from harness.matrix import Cell
from harness.qemu import BootSpec, printable, qemu_argv

BOOT_SECONDS = 60.0
COMMAND_SECONDS = 30.0
SUITE_SECONDS = 300.0
POWEROFF_SECONDS = 10.0
DEBUGFS_PAGES = 64  # 256 KiB with 4 KiB pages: small enough for every area
PROBE_ALLOC_BYTES = 1 << 20  # cma-dev allocations the host checks against the boot log
PROBE_ALLOC_ORDER = 4
_AREA_NAME = re.compile(r"[A-Za-z0-9@._-]+")  # names from cma_init_reserved_mem(): DT node names


@dataclass
class CellResult:
    """The outcome of one cell.

    Attributes:
        cell: the matrix cell.
        checks: one result per check, in the order run.
        log: the console log file (every byte QEMU printed).
        seconds: wall time of the whole cell, boot to QEMU exit.
        boot_seconds: QEMU start to the first shell prompt, or None.
        properties: provenance and measurements, for JUnit ``<properties>``.
    """

    cell: Cell
    checks: list[CheckResult]
    log: Path
    seconds: float
    boot_seconds: float | None = None
    properties: dict[str, str] = field(default_factory=dict)

    @property
    def status(self) -> Status:
        return checks.worst(c.status for c in self.checks)


_live: set[pexpect.spawn[bytes]] = set()
_live_lock = threading.Lock()
_stopping = threading.Event()  # set by kill_all_guests(): a guest started after it dies at once


def allow_guests() -> None:
    """Let :func:`running_qemu` start guests again (a new run after :func:`kill_all_guests`)."""
    _stopping.clear()


def kill_all_guests() -> int:
    """Kill every QEMU started by :func:`running_qemu` that is still running, and any started later.

    For Ctrl-C while cells run in worker threads: the threads' own cleanup only
    runs once their blocking read returns, which killing QEMU makes immediate.
    A worker that was starting a guest at that moment has it killed as soon as
    it is registered, until :func:`allow_guests`.  Returns the number of guests
    still registered.
    """
    with _live_lock:
        _stopping.set()
        children = list(_live)
    for child in children:
        if child.isalive():
            child.kill(signal.SIGKILL)
    return len(children)


@contextlib.contextmanager
def running_qemu(argv: list[str]) -> Iterator[pexpect.spawn[bytes]]:
    """Start QEMU under a pty; on leaving (normally, on error or Ctrl-C) kill it."""
    # encoding=None: a bytes child (the stubs cannot infer it).
    child = cast("pexpect.spawn[bytes]", pexpect.spawn(
        argv[0], argv[1:], timeout=None, preexec_fn=qemu.die_with_parent, encoding=None))
    with _live_lock:
        _live.add(child)
        if _stopping.is_set():
            child.kill(signal.SIGKILL)
    try:
        yield child
    finally:
        with _live_lock:
            _live.discard(child)
        if child.isalive():
            child.terminate(force=True)
        child.close(force=True)


def host_ended(child: pexpect.spawn[bytes], gone: bool, kernel_ran: bool) -> str:
    """Why QEMU is gone if the host, not the guest, ended it; ``""`` otherwise.

    ``gone``: the console reached EOF (QEMU exited); its exit is then awaited up
    to 2 s.  A guest that powers off or panics (``panic=-1`` with ``-no-reboot``)
    makes QEMU exit 0, a verdict on the kernel.  QEMU killed by a signal it did
    not get from the harness, or exiting non-zero before the kernel printed a
    record (a missing or unreadable dtb, zImage or initrd), is infrastructure.
    """
    deadline = time.monotonic() + (2.0 if gone else 0.0)
    while child.isalive() and time.monotonic() < deadline:
        time.sleep(0.02)
    if child.isalive():
        return ""
    if child.signalstatus is not None:
        return f"QEMU was killed by {signal.Signals(child.signalstatus).name}"
    if child.exitstatus and not kernel_ran:
        return f"QEMU exited with status {child.exitstatus} before the kernel ran"
    return ""


def _boot_error(name: str, exc: BootError, argv: list[str], host: str = "") -> CheckResult:
    return CheckResult(name, Status.ERROR, f"{host}: {exc}" if host else str(exc),
                       f"QEMU command line:\n{printable(argv)}\n\nconsole (last lines):\n{exc.excerpt}",
                       infrastructure=bool(host))


@dataclass
class _Evidence:
    """What the guest printed, gathered while it runs; checked after QEMU exits.

    ``None`` marks evidence never gathered because the guest stopped first;
    ``stopped`` then names the testcase holding that error.
    """

    meminfo: dict[str, int] | None = None
    debugfs_areas: list[str] | None = None  # the names /sys/kernel/debug/cma lists
    probes: dict[str, dict[str, str]] = field(default_factory=dict)
    areas: list[checks.DevArea] | None = None  # what ``cma-test areas`` lists
    dmesg: list[str] = field(default_factory=list)
    dev_results: list[CheckResult] = field(default_factory=list)
    props: dict[str, str] = field(default_factory=dict)
    suite_aborted: bool = False
    suites_done: bool = False  # cma-dev and every suite it could run are behind us
    stopped: str = ""


def _suite_name(suite: str, area: str = "") -> str:
    """The testcase path of one suite run: ``cma-test/<suite>`` or ``cma-test@<area>/<suite>``."""
    return f"cma-test@{area}/{suite}" if area else f"cma-test/{suite}"


def _suite_plan(cell: Cell, areas: list[checks.DevArea] | None) -> list[tuple[str, str]]:
    """The ``(suite, area)`` runs of ``cell``, in order (area "" = the default area).

    The cell's suites run on the default area ("reserved") if cma-dev lists it,
    its area suites on every other area with a name fit for a shell command.
    ``areas`` None (never listed: the guest stopped first): the default suites.
    """
    default = areas is None or any(a.name == "reserved" for a in areas)
    plan = [(suite, "") for suite in cell.suites] if default else []
    for area in (areas or []) if cell.area_suites else []:
        if area.name != "reserved" and _AREA_NAME.fullmatch(area.name):
            plan += [(suite, area.name) for suite in cell.area_suites]
    return plan


def _required(cell: Cell) -> list[str]:
    """The cell's required subtests that belong to one of its suites ("cma-test/<suite>/<test>")."""
    return [r for r in cell.required if r.split("/")[1:2] and r.split("/")[1] in cell.suites]


def _suite(console: Console, suite: str, area: str = "") -> tuple[list[CheckResult], dict[str, str]]:
    """Run one suite with the CMA counters read before and after.

    ``area`` names a CMA area other than the default one (``CMA_TEST_AREA``);
    its testcases are then named ``cma-test@<area>/<suite>/...``.

    Raises:
        BootError: the guest hung or died; the caller records it and ends the cell.
    """
    prefix = f"cma-test@{area}" if area else "cma-test"
    before = checks.parse_key_values(console.run("cma-counters", Budget(COMMAND_SECONDS)).output)
    if suite == "dmabuf-heaps":
        out = console.run("dmabuf-heap", Budget(SUITE_SECONDS))
        results, metrics = checks.dmabuf_heap_checks(out.output, out.status)
    else:
        env = f"CMA_TEST_AREA={area} " if area else ""
        out = console.run(f"{env}cma-test suite {suite}", Budget(SUITE_SECONDS))
        results, metrics = checks.ktap_checks(prefix, out.output, out.status)
    after = checks.parse_key_values(console.run("cma-counters", Budget(COMMAND_SECONDS)).output)
    results.append(checks.check_counters_restored(f"{prefix}/{suite}", before, after))
    props = {**metrics, f"{prefix}/{suite}.seconds": f"{out.duration:.3f}"}
    props.update({f"{prefix}/{suite}.before.{k}": v for k, v in before.items()})
    props.update({f"{prefix}/{suite}.after.{k}": v for k, v in after.items()})
    return results, props


def _run_suites(console: Console, plan: list[tuple[str, str]], ev: _Evidence) -> None:
    """Run each ``(suite, area)`` of ``plan``; a hung or dead guest ends the cell.

    The suite the guest stopped in becomes an ERROR testcase (the verdict on the
    kernel is ``kernel-log-clean``'s, whose panic or Oops line it names).
    """
    for suite, area in plan:
        try:
            suite_results, suite_props = _suite(console, suite, area)
        except BootError as exc:
            ev.dev_results.append(CheckResult(_suite_name(suite, area), Status.ERROR,
                                              f"the suite did not finish: {exc}", exc.excerpt))
            ev.suite_aborted = True
            raise
        ev.dev_results.extend(suite_results)
        ev.props.update(suite_props)


def _cma_dev(console: Console, cell: Cell, report: checks.CmaBootReport, ev: _Evidence) -> None:
    """Load cma-dev, cross-check it against the boot log, run the cell's suites.

    Appends to ``ev``.  A suite that hangs or kills the guest becomes an ERROR
    testcase carrying the console excerpt; then BootError is re-raised so the
    cell ends (the next cell boots afresh).
    """
    results = ev.dev_results
    load = console.run("modprobe cma-dev", Budget(COMMAND_SECONDS))
    if load.status != 0:
        results.append(CheckResult("cma-dev/load", Status.FAIL,
                                   f"modprobe cma-dev failed (exit status {load.status})", load.output))
        return
    results.append(CheckResult("cma-dev/load", Status.PASS, "modprobe cma-dev", seconds=load.duration))
    areas = checks.parse_cma_test_areas(console.run("cma-test areas", Budget(COMMAND_SECONDS)).output)
    ev.areas = areas
    results.append(checks.check_dev_areas(report, areas))
    for area in areas:
        ev.props[f"area.{area.name}.base"] = f"{area.base:#x}"
        ev.props[f"area.{area.name}.size"] = str(area.size)
    default = next((a for a in areas if a.name == "reserved"), None)
    run_default_suites = default is not None and bool(cell.suites)
    if default is not None:
        for cmd, order in ((f"cma-test alloc reserved {PROBE_ALLOC_BYTES} {PROBE_ALLOC_ORDER}",
                            PROBE_ALLOC_ORDER), (f"cma-test dma-alloc {PROBE_ALLOC_BYTES}", 0)):
            out = console.run(cmd, Budget(COMMAND_SECONDS)).output
            results.append(checks.check_alloc_in_area(default, out, PROBE_ALLOC_BYTES, order))
    for area in areas if cell.area_suites else []:
        if area.name != "reserved" and not _AREA_NAME.fullmatch(area.name):
            results.append(CheckResult(f"cma-test@{area.name}", Status.ERROR,
                                       "area name unfit for a shell command; suites not run"))
    first = len(results)
    _run_suites(console, _suite_plan(cell, areas), ev)
    # A required subtest counts where its suite ran ("cma-test/<suite>/<test>").
    required = _required(cell)
    if run_default_suites and required:
        results.append(checks.check_required_tests(results[first:], required))


def _drive(console: Console, cell: Cell, report: checks.CmaBootReport, ev: _Evidence) -> None:
    """Every guest interaction after boot, in order; raises BootError if the guest fails."""
    ev.meminfo = checks.parse_meminfo(console.run("cat /proc/meminfo", Budget(COMMAND_SECONDS)).output)
    listing = console.run("ls /sys/kernel/debug/cma", Budget(COMMAND_SECONDS))
    ev.debugfs_areas = listing.output.split() if listing.status == 0 else []
    # Only names fit for a shell command are probed (garbage on the console can land in
    # the listing); _debugfs_checks reports the others.
    for area in filter(_AREA_NAME.fullmatch, ev.debugfs_areas):
        out = console.run(f"cma-debugfs-probe {area} {DEBUGFS_PAGES}", Budget(COMMAND_SECONDS))
        ev.probes[area] = checks.parse_key_values(out.output)
    _cma_dev(console, cell, report, ev)
    ev.suites_done = True
    ev.dmesg = console.run("dmesg -r", Budget(COMMAND_SECONDS)).lines
    console.poweroff(Budget(POWEROFF_SECONDS))


def _not_run(cell: Cell, ev: _Evidence, why: str) -> list[CheckResult]:
    """SKIP testcases for the suites (and the required-subtests check) the stopped guest never ran."""
    if ev.suites_done:
        return []
    done = [r.name for r in ev.dev_results]
    plan = _suite_plan(cell, ev.areas)
    names = [_suite_name(suite, area) for suite, area in plan]
    if _required(cell) and any(area == "" for _, area in plan):
        names.append("cma-test/required-subtests")
    return [CheckResult(name, Status.SKIP, why) for name in names
            if not any(d == name or d.startswith((f"{name}/", f"{name}.")) for d in done)]


def _debugfs_checks(report: checks.CmaBootReport, ev: _Evidence, why: str) -> list[CheckResult]:
    """``cma-debugfs[<area>]`` for each area probed; ERROR for a listing that names no area."""
    if ev.debugfs_areas is None:
        return [CheckResult("cma-debugfs", Status.SKIP, why)]
    results = []
    unfit = [a for a in ev.debugfs_areas if not _AREA_NAME.fullmatch(a)]
    if unfit:
        shown = ", ".join(repr(a[:40]) for a in unfit[:3])
        shown += f" and {len(unfit) - 3} more" if len(unfit) > 3 else ""
        results.append(CheckResult("cma-debugfs", Status.ERROR,
                                   f"/sys/kernel/debug/cma: cannot read the listing: {shown} is no CMA area "
                                   "name (not probed)", " ".join(ev.debugfs_areas)))
    for area in filter(_AREA_NAME.fullmatch, ev.debugfs_areas):
        results.append(checks.check_debugfs_area(area, DEBUGFS_PAGES, ev.probes[area]) if area in ev.probes
                       else CheckResult(f"cma-debugfs[{area}]", Status.SKIP, why))
    if results:
        return results
    if report.total_mib:
        return [CheckResult("cma-debugfs", Status.FAIL, f"the boot log reserved {report.total_mib} MiB but "
                            "/sys/kernel/debug/cma lists no area")]
    return [CheckResult("cma-debugfs", Status.SKIP, "no CMA area to exercise")]


def _evaluate(cell: Cell, report: checks.CmaBootReport, ev: _Evidence,
              records: list[str]) -> list[CheckResult]:
    """The checks on everything gathered after boot.

    When the guest stopped early (``ev.stopped``), what it printed before still
    gets its verdict; each check it never got to is a SKIP saying so.
    """
    why = f"not run: the guest stopped first (see {ev.stopped})"
    meminfo = ev.meminfo
    results = [CheckResult("cma-meminfo", Status.SKIP, why) if meminfo is None
               else checks.check_meminfo(report, meminfo), *ev.dev_results]
    if ev.stopped:
        results += _not_run(cell, ev, why)
    results += _debugfs_checks(report, ev, why)
    # dmesg -r lines carry a "<N>" priority prefix; the console saw the same records.
    kernel_lines = list(dict.fromkeys([*records, *(ln.split(">", 1)[-1] for ln in ev.dmesg)]))
    results.append(checks.check_kernel_log(kernel_lines))
    ev.props.update({"cma.reserved_mib": str(report.total_mib),
                     "meminfo.CmaTotal_kB": str((meminfo or {}).get("CmaTotal", "")),
                     "meminfo.CmaFree_kB": str((meminfo or {}).get("CmaFree", ""))})
    if report.reserved:
        ev.props["cma.base"] = f"{report.reserved[0].base:#x}"
    if report.failed:
        ev.props["cma.failed_mib"] = str(report.failed[0])
    return results


ReservationCheck = Callable[[checks.CmaBootReport, list[str]], CheckResult]
"""Judges the default CMA area's reservation from the boot: (parsed ``cma:`` lines, kernel records)."""


def oracle_expectation(prediction: oracle.Prediction) -> ReservationCheck:
    """The ``cma-reservation`` check against the cma= oracle's ``prediction``.

    Fails (printing prediction and the kernel's ``cma:`` lines) when the boot
    log disagrees: outcome, size, base or range, DT CMA pools, or the order of
    the predicted ``cma:`` messages (:func:`harness.oracle.check_against_oracle`).
    """
    def check(report: checks.CmaBootReport, records: list[str]) -> CheckResult:
        ok, message = oracle.check_against_oracle(prediction, "\n".join(records))
        if ok:
            return CheckResult("cma-reservation", Status.PASS, message)
        first, _, rest = message.partition("\n")
        return CheckResult("cma-reservation", Status.FAIL, first, rest)
    return check


def run_cell(cell: Cell, spec: BootSpec, log_path: Path,
             expectation: ReservationCheck | None = None) -> CellResult:
    """Boot ``spec`` and check ``cell``'s expectation; never raises for guest trouble.

    ``expectation`` judges the ``cma-reservation`` check (the cma= oracle's
    prediction); without it the cell's hand-written ``expect`` is used.

    A guest that does not boot, dies or stops answering makes the affected
    check ``ERROR`` (``boot``, ``guest-commands`` or the suite it stopped in)
    with the console excerpt (and the QEMU command line); the checks it never
    got to are skipped.  The error is ``infrastructure`` when the host ended
    the guest (:func:`host_ended`).
    """
    argv = qemu_argv(spec)
    start = time.monotonic()
    with log_path.open("wb") as log, running_qemu(argv) as child:
        console = Console(child, log)
        try:
            boot_seconds = console.wait_for_shell(Budget(BOOT_SECONDS))
        except BootError as exc:
            records = console.transcript.records
            host = host_ended(child, isinstance(exc, GuestGone), bool(records))
            results = [_boot_error("boot", exc, argv, host), checks.check_kernel_log(records)]
            return CellResult(cell, results, log_path, time.monotonic() - start)
        results = [CheckResult("boot", Status.PASS, f"shell after {boot_seconds:.2f}s", seconds=boot_seconds)]
        report = checks.parse_cma_lines(console.transcript.records)
        if expectation is not None:
            results.append(expectation(report, console.transcript.records))
        elif cell.expect is not None:
            results.append(checks.check_cma_reservation(cell.expect, report))
        else:
            results.append(CheckResult("cma-reservation", Status.ERROR,
                                       "the cell has no expectation (neither oracle nor 'expect')"))
        ev = _Evidence()
        try:
            _drive(console, cell, report, ev)
        except BootError as exc:
            host = host_ended(child, isinstance(exc, GuestGone), True)
            if not ev.suite_aborted:
                ev.dev_results.append(_boot_error("guest-commands", exc, argv, host))
            elif host:  # QEMU killed from outside mid-suite: not the suite's doing
                ev.dev_results[-1] = replace(ev.dev_results[-1], infrastructure=True,
                                             message=f"the suite did not finish: {host}: {exc}")
            ev.stopped = ev.dev_results[-1].name
    results += _evaluate(cell, report, ev, console.transcript.records)
    return CellResult(cell, results, log_path, time.monotonic() - start, boot_seconds, ev.props)

"""Running one matrix cell: boot the guest, collect evidence, run the checks.

This is the only module that combines the console with the checks; it passes
plain data (lines, dicts) to ``harness.checks`` and returns a :class:`CellResult`.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import pexpect

from harness import checks
from harness.checks import CheckResult, Status
from harness.console import Budget, Console
from harness.errors import BootError
from harness.matrix import Cell
from harness.qemu import BootSpec, printable, qemu_argv

BOOT_SECONDS = 60.0
COMMAND_SECONDS = 30.0
POWEROFF_SECONDS = 10.0
DEBUGFS_PAGES = 64  # 256 KiB with 4 KiB pages: small enough for every area


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


def _die_with_parent() -> None:
    """In the QEMU child: get SIGKILL when the harness dies, even by SIGKILL."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG, include/uapi/linux/prctl.h


@contextlib.contextmanager
def running_qemu(argv: list[str]) -> Iterator[pexpect.spawn[bytes]]:
    """Start QEMU under a pty; on leaving (normally, on error or Ctrl-C) kill it."""
    # encoding=None: a bytes child (the stubs cannot infer it).
    child = cast("pexpect.spawn[bytes]", pexpect.spawn(
        argv[0], argv[1:], timeout=None, preexec_fn=_die_with_parent, encoding=None))
    try:
        yield child
    finally:
        if child.isalive():
            child.terminate(force=True)
        child.close(force=True)


def _boot_error(name: str, exc: BootError, argv: list[str]) -> CheckResult:
    return CheckResult(name, Status.ERROR, str(exc),
                       f"QEMU command line:\n{printable(argv)}\n\nconsole (last lines):\n{exc.excerpt}")


def _evidence(console: Console, areas: list[str]) -> tuple[dict[str, int], dict[str, dict[str, str]],
                                                          list[str]]:
    """Read /proc/meminfo, probe each CMA area through debugfs, read the kernel log."""
    meminfo = checks.parse_meminfo(console.run("cat /proc/meminfo", Budget(COMMAND_SECONDS)).output)
    probes = {}
    for area in areas:
        out = console.run(f"cma-debugfs-probe {area} {DEBUGFS_PAGES}", Budget(COMMAND_SECONDS))
        probes[area] = checks.parse_key_values(out.output)
    dmesg = console.run("dmesg -r", Budget(COMMAND_SECONDS)).lines
    return meminfo, probes, dmesg


def run_cell(cell: Cell, spec: BootSpec, log_path: Path) -> CellResult:
    """Boot ``spec`` and check ``cell``'s expectation; never raises for guest trouble.

    A guest that does not boot, dies or stops answering makes the affected
    checks ``ERROR`` with the console excerpt and the QEMU command line.
    """
    argv = qemu_argv(spec)
    results: list[CheckResult] = []
    start = time.monotonic()
    boot_seconds: float | None = None
    with log_path.open("wb") as log, running_qemu(argv) as child:
        console = Console(child, log)
        try:
            boot_seconds = console.wait_for_shell(Budget(BOOT_SECONDS))
            results.append(CheckResult("boot", Status.PASS, f"shell after {boot_seconds:.2f}s",
                                       seconds=boot_seconds))
        except BootError as exc:
            results.append(_boot_error("boot", exc, argv))
            results.append(checks.check_kernel_log(console.transcript.records))
            return CellResult(cell, results, log_path, time.monotonic() - start)
        report = checks.parse_cma_lines(console.transcript.records)
        results.append(checks.check_cma_reservation(cell.expect, report))
        try:
            listing = console.run("ls /sys/kernel/debug/cma", Budget(COMMAND_SECONDS))
            areas = listing.output.split() if listing.status == 0 else []
            meminfo, probes, dmesg = _evidence(console, areas)
            console.poweroff(Budget(POWEROFF_SECONDS))
        except BootError as exc:
            results.append(_boot_error("guest-commands", exc, argv))
            results.append(checks.check_kernel_log(console.transcript.records))
            return CellResult(cell, results, log_path, time.monotonic() - start, boot_seconds)
    results.append(checks.check_meminfo(report, meminfo))
    if probes:
        results += [checks.check_debugfs_area(a, DEBUGFS_PAGES, p) for a, p in probes.items()]
    elif report.total_mib:
        results.append(CheckResult("cma-debugfs", Status.FAIL,
                                   f"the boot log reserved {report.total_mib} MiB but "
                                   "/sys/kernel/debug/cma lists no area"))
    else:
        results.append(CheckResult("cma-debugfs", Status.SKIP, "no CMA area to exercise"))
    # dmesg -r lines carry a "<N>" priority prefix; the console saw the same records.
    kernel_lines = list(dict.fromkeys(
        [*console.transcript.records, *(ln.split(">", 1)[-1] for ln in dmesg)]))
    results.append(checks.check_kernel_log(kernel_lines))
    props = {"cma.reserved_mib": str(report.total_mib),
             "meminfo.CmaTotal_kB": str(meminfo.get("CmaTotal", "")),
             "meminfo.CmaFree_kB": str(meminfo.get("CmaFree", ""))}
    if report.reserved:
        props["cma.base"] = f"{report.reserved[0].base:#x}"
    if report.failed:
        props["cma.failed_mib"] = str(report.failed[0])
    return CellResult(cell, results, log_path, time.monotonic() - start, boot_seconds, props)


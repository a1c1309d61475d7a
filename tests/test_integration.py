"""Integration: the real kernel (built and cached here) booted in real QEMU.

Every checker of ``harness.checks`` is exercised here on real boots: the default
matrix covers reserved / failed / absent CMA areas and the debugfs round trip,
and a deliberate crash proves the Oops and panic detection.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from junitparser import JUnitXml

from harness import boards, kbuild, qemu, rootfs
from harness.cell import CellResult, run_cell, running_qemu
from harness.checks import CmaExpectation, Status
from harness.console import Budget, Console, GuestGone
from harness.klog import ProblemKind
from harness.matrix import Cell, load_matrix
from harness.series import parse_series
from tests.conftest import DefaultRun, default_sigint, processes_with
from tests.junit_schema import assert_valid_junit

pytestmark = pytest.mark.integration
REPO = Path(__file__).parents[1]
CLI = [sys.executable, "-m", "harness.cli"]
A9_MATRIX = REPO / "tests/fixtures/matrices/vexpress-a9-suites.toml"


@pytest.fixture(scope="module")
def vexpress() -> tuple[boards.Board, kbuild.KernelBuild, rootfs.Initramfs]:
    board = boards.load_board("vexpress-a9")
    source = kbuild.resolve_source(kbuild.DEFAULT_SOURCE)
    series = parse_series(kbuild.PATCHES_DIR / "series", source.version)
    request = kbuild.board_request(board.defconfig, board.fragments, source, series, os.cpu_count() or 1)
    kernel = kbuild.build_kernel(request, lambda msg: None)
    return board, kernel, rootfs.build_initramfs(kernel)


def _spec(vexpress: tuple[boards.Board, kbuild.KernelBuild, rootfs.Initramfs],
          cmdline: str) -> qemu.BootSpec:
    board, kernel, initramfs = vexpress
    return qemu.BootSpec(board, kernel.zimage, kernel.dtb(board.dtb), initramfs.path,
                         qemu.kernel_cmdline(board, cmdline))


def _checks(result: CellResult) -> dict[str, tuple[Status, str]]:
    return {c.name: (c.status, c.message) for c in result.checks}


@pytest.mark.parametrize("cell", load_matrix(A9_MATRIX).cells, ids=lambda c: c.name)
def test_vexpress_a9_cell_with_every_suite(
        vexpress: tuple[boards.Board, kbuild.KernelBuild, rootfs.Initramfs], cell: Cell,
        tmp_path: Path) -> None:
    result = run_cell(cell, _spec(vexpress, cell.cmdline), tmp_path / "console.log")
    checks = _checks(result)
    assert result.status is Status.PASS, checks
    assert {"boot", "cma-reservation", "cma-meminfo", "kernel-log-clean"} <= set(checks)
    assert cell.expect is not None
    if cell.expect.outcome == "reserved":
        assert cell.expect.size_mib is not None
        # cma-dev and cma-test ran: the host's own cross-checks and the suites' proofs.
        for name in ("cma-dev/load", "cma-dev/areas-match-boot-log", "cma-dev/alloc-in-area",
                     "cma-dev/dma-alloc-in-area", "cma-test/required-subtests",
                     "cma-test/migrate/cma-occupied-by-movable-pages", "cma-test/migrate.no-leak"):
            assert checks[name][0] is Status.PASS, (name, checks.get(name))
        if "dmabuf-heaps" in cell.suites:
            assert checks["selftests/dmabuf-heaps/reserved/allocation-and-importing"][0] is Status.PASS
        assert int(result.properties["cma-test/migrate.latency_us.max"]) > 0
        assert result.properties["cma.reserved_mib"] == str(cell.expect.size_mib)
        assert int(result.properties["meminfo.CmaTotal_kB"]) == cell.expect.size_mib * 1024
        assert checks["cma-debugfs[reserved]"][0] is Status.PASS
        base = int(result.properties["cma.base"], 16)
        ram = vexpress[0].ram[0]
        assert ram.base <= base and base + cell.expect.size_mib * 2**20 <= ram.base + ram.size
    else:
        assert result.properties["meminfo.CmaTotal_kB"] == "0"
        assert checks["cma-debugfs"][0] is Status.SKIP
    log = (tmp_path / "console.log").read_text(errors="replace")
    assert "cma-harness: init ready" in log


def test_wrong_expectation_is_a_failure_that_says_both(
        vexpress: tuple[boards.Board, kbuild.KernelBuild, rootfs.Initramfs], tmp_path: Path) -> None:
    cell = Cell("vexpress-a9", "cma=32M", CmaExpectation("reserved", 48))
    result = run_cell(cell, _spec(vexpress, "cma=32M"), tmp_path / "console.log")
    status, message = _checks(result)["cma-reservation"]
    assert status is Status.FAIL
    assert "expected 'cma: Reserved 48 MiB'" in message and "Reserved 32 MiB at 0x" in message
    assert result.status is Status.FAIL


def test_warning_bug_and_oops_are_noticed_the_moment_they_happen(
        vexpress: tuple[boards.Board, kbuild.KernelBuild, rootfs.Initramfs], tmp_path: Path) -> None:
    """LKDTM (drivers/misc/lkdtm) provokes a real WARN_ON and a real BUG() in the guest."""
    argv = qemu.qemu_argv(_spec(vexpress, "cma=16M"))
    direct = "/sys/kernel/debug/provoke-crash/DIRECT"
    with (tmp_path / "console.log").open("wb") as log, running_qemu(argv) as child:
        console = Console(child, log)
        console.wait_for_shell(Budget(60))
        assert console.run("modprobe lkdtm", Budget(30)).status == 0
        warned = console.run(f"echo WARNING > {direct}; echo still here", Budget(30))
        # The WARNING record was cut out of the command's output, not mixed into it.
        assert (warned.status, warned.output) == (0, "still here\n")
        assert [p.kind for p in console.transcript.problems] == [ProblemKind.WARNING]
        with pytest.raises(GuestGone):
            console.run(f"echo BUG > {direct}", Budget(30))
    kinds = [p.kind for p in console.transcript.problems]
    assert ProblemKind.BUG in kinds and ProblemKind.OOPS in kinds
    assert "cma-harness: shell exited; powering off" in console.splitter.user


def test_boot_that_panics_is_an_error_with_the_command_line(
        vexpress: tuple[boards.Board, kbuild.KernelBuild, rootfs.Initramfs], tmp_path: Path) -> None:
    cell = Cell("vexpress-a9", "rdinit=/no-such-init", CmaExpectation("reserved", 16))
    result = run_cell(cell, _spec(vexpress, cell.cmdline), tmp_path / "console.log")
    checks = {c.name: c for c in result.checks}
    assert checks["boot"].status is Status.ERROR
    assert not checks["boot"].infrastructure  # QEMU exited 0 after panic=-1: a verdict on the kernel
    assert "qemu-system-arm -M vexpress-a9" in checks["boot"].details
    assert checks["kernel-log-clean"].status is Status.FAIL
    assert "panic" in checks["kernel-log-clean"].message


def test_a_guest_whose_console_goes_silent_is_a_guest_error_and_its_qemu_is_stopped(
        vexpress: tuple[boards.Board, kbuild.KernelBuild, rootfs.Initramfs], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """console=tty0 sends everything to a display nobody watches: the serial line stays quiet."""
    monkeypatch.setenv("CMA_HARNESS_TIMEOUT_FACTOR", "0.1")  # the 60 s boot budget becomes 6 s
    cell = Cell("vexpress-a9", "console=tty0", CmaExpectation("reserved", 16))
    result = run_cell(cell, _spec(vexpress, cell.cmdline), tmp_path / "console.log")
    checks = {c.name: c for c in result.checks}
    assert checks["boot"].status is Status.ERROR and not checks["boot"].infrastructure
    assert result.seconds < 30
    assert not processes_with("console=tty0"), "the silent guest's QEMU is still running"


def test_cli_run_writes_junit_and_summary(tmp_path: Path) -> None:
    proc = subprocess.run([*CLI, "run", "-m", str(A9_MATRIX), "--cmdline", "cma=64M", "-o", str(tmp_path)],
                          capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1/1 cells met their expectation" in proc.stdout
    run_dirs = [p for p in tmp_path.iterdir() if not p.is_symlink()]
    assert len(run_dirs) == 1 and (tmp_path / "latest").resolve() == run_dirs[0].resolve()
    xml = JUnitXml.fromfile(str(run_dirs[0] / "junit.xml"))
    suite = next(iter(xml))
    assert suite.name == "vexpress-a9:cma=64M" and suite.failures == 0 and suite.errors == 0
    props = {p.name: p.value for p in suite.properties()}
    assert props["kernel.release"].startswith("6.1.") and len(props["series.hash"]) == 64
    assert (run_dirs[0] / "logs" / "vexpress-a9_cma=64M.log").is_file()
    for junit in [run_dirs[0] / "junit.xml", *(run_dirs[0] / "cells").glob("*.xml")]:
        assert_valid_junit(junit)  # junit-10.xsd, and the same totals by every reader


def _cases(junit: Path) -> list[tuple[str, str, str]]:
    """(testcase, result kind or "pass", message) of every testcase, in order."""
    out = []
    for suite in JUnitXml.fromfile(str(junit)):
        for case in suite:
            kind = type(case.result[0]).__name__.lower() if case.result else "pass"
            out.append((case.name, kind, case.result[0].message or "" if case.result else ""))
    return out


def test_a_runs_cell_job_reruns_with_cell_and_its_log_rejudges_to_the_same_testcases(tmp_path: Path) -> None:
    """The job a run kept runs again with ``cell``; ``judge`` of the run's log gives its testsuite."""
    run = subprocess.run([*CLI, "run", "-m", str(A9_MATRIX), "--cmdline", "cma=64M",
                          "-o", str(tmp_path / "r")], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    logs, slug = tmp_path / "r" / "latest" / "logs", "vexpress-a9_cma=64M"
    live = _cases(tmp_path / "r" / "latest" / "cells" / f"{slug}.xml")
    assert len(live) > 20 and all(kind in ("pass", "skipped") for _, kind, _ in live)
    again = subprocess.run([*CLI, "cell", str(logs / f"{slug}.job.json"), "-o", str(tmp_path / "c")],
                           capture_output=True, text=True, cwd=REPO, timeout=600)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert [(n, k) for n, k, _ in _cases(tmp_path / "c" / f"{slug}.xml")] == [(n, k) for n, k, _ in live]
    judged = subprocess.run([*CLI, "judge", str(logs / f"{slug}.log"),
                             "--job", str(logs / f"{slug}.job.json"),
                             "--result", str(logs / f"{slug}.result.json"), "-o", str(tmp_path / "j.xml")],
                            capture_output=True, text=True, cwd=REPO, timeout=120)
    assert judged.returncode == 0, judged.stdout[-2000:] + judged.stderr[-2000:]
    assert _cases(tmp_path / "j.xml") == live
    assert_valid_junit(tmp_path / "j.xml")


def _suites(junit: Path) -> dict[str, dict[str, Any]]:
    """{cell: {testcase: case}} plus the cell's properties under the key ``"@props"``."""
    out: dict[str, dict[str, Any]] = {}
    for suite in JUnitXml.fromfile(str(junit)):
        out[suite.name] = {c.name: c for c in suite}
        out[suite.name]["@props"] = {p.name: p.value for p in suite.properties()}
    return out


def test_default_matrix_all_boards_green_and_as_the_oracle_predicts(default_matrix_run: DefaultRun) -> None:
    """The default matrix, four boards, two guests at a time: the issue-4 acceptance run."""
    proc, run_dir = default_matrix_run.proc, default_matrix_run.run_dir
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr
    cells = _suites(run_dir / "junit.xml")
    for junit in [run_dir / "junit.xml", *(run_dir / "cells").glob("*.xml")]:
        assert_valid_junit(junit)
    assert {name.split(":")[0] for name in cells} == {"vexpress-a9", "vexpress-a15", "smdkc210", "virt"}
    for name, cases in cells.items():
        props = cases["@props"]
        assert isinstance(props, dict)
        if props.get("xfail"):
            assert props["xfail.outcome"] == "failed as expected", name
            continue
        assert cases["cma-reservation"].is_passed, (name, cases["cma-reservation"].result)
        assert cases["kernel-log-clean"].is_passed, name
    smdk = cells["smdkc210:(default)"]
    for area in ("region-mfc-left", "region-mfc-right"):
        mine = [c for n, c in smdk.items() if n.startswith(f"cma-test@{area}/")]
        assert len(mine) > 10 and all(c.is_passed or c.is_skipped for c in mine), area
    assert smdk["cma-test/migrate/cma-occupied-by-movable-pages"].is_passed
    assert cells["virt:(default)"]["cma-test/migrate/moved-pages-left-area"].is_passed
    log = (run_dir / "logs" / "smdkc210_default.log").read_text(errors="replace")
    assert "Samsung smdkv310 evaluation board based on Exynos4210" in log
    assert "SMP: Total of 2 processors activated" in log and "Switched to clocksource mct-frc" in log
    assert "Reserved memory: created CMA memory pool at" in log


@pytest.mark.parametrize("version", ["6.12", "7.2"])
def test_newer_base_kernels_end_to_end(version: str, tmp_path: Path) -> None:
    """The default matrix's cells on Debian's linux-source-6.12 (6.12/ patch copies) and
    unstable's linux-source-7.2 (6.15/ copies; CMA areas made of ranges), as the oracle predicts."""
    boards = ["vexpress-a9"]  # the board with the most cma= forms in the default matrix
    proc = subprocess.run([*CLI, "run", "--kernel-src", f"/usr/src/linux-source-{version}.tar.xz",
                           "--board", boards[0], "-o", str(tmp_path)],
                          capture_output=True, text=True, cwd=REPO, timeout=3600)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr
    cells = _suites(tmp_path / "latest" / "junit.xml")
    assert {name.split(":")[0] for name in cells} == set(boards)
    props = cells[f"{boards[0]}:(default)"]["@props"]
    assert isinstance(props, dict) and props["kernel.release"].startswith(f"{version}.")
    cases = cells[f"{boards[0]}:cma=64M"]
    for name in ("cma-reservation", "cma-dev/alloc-in-area", "cma-dev/dma-alloc-in-area",
                 "cma-dev/ranges-cover-areas",
                 "cma-test/migrate/cma-occupied-by-movable-pages", "cma-test/migrate/moved-pages-left-area",
                 "cma-test/exhaustion/area-restored", "cma-test/required-subtests", "kernel-log-clean"):
        assert cases[name].is_passed, name
    assert any(n.startswith("selftests/dmabuf-heaps/") for n in cases)


def _bad(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*CLI, *args, "-o", str(tmp_path / "res")] if args[0] == "run" else
                          [*CLI, *args], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert not (tmp_path / "res").exists() or not any((tmp_path / "res").iterdir())
    return proc


@pytest.mark.parametrize("args,msg", [
    (["run", "--board", "nope"], "unknown board 'nope'"),
    (["build", "--board", "nope"], "unknown board 'nope'"),
    (["run", "--cmdline", "cma=32M;reboot"], "character ';' is not allowed"),
    (["run", "--cmdline", "cma=32M\ninit=/bin/sh"], "character '\\n' is not allowed"),
    (["run", "--kernel-src", "/nonexistent.tar.xz"], "kernel source /nonexistent.tar.xz does not exist"),
    (["run", "-m", "/nonexistent.toml"], "cannot read matrix /nonexistent.toml"),
])
def test_bad_input_is_one_error_line_and_exit_2(args: list[str], msg: str, tmp_path: Path) -> None:
    proc = _bad(args, tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cma-harness: error:"), proc.stderr
    assert msg in lines[0]


def test_unreadable_tarball(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar.xz"
    junk.write_bytes(b"not a tarball")
    proc = _bad(["run", "--kernel-src", str(junk)], tmp_path)
    assert "cannot unpack" in proc.stderr


def test_patch_that_does_not_apply_is_named_with_its_hunk(tmp_path: Path) -> None:
    series = REPO / "tests/fixtures/series/bad/series"
    proc = _bad(["build", "--series", str(series)], tmp_path)
    first = proc.stderr.splitlines()[0]
    assert first.startswith("cma-harness: error: patch 0001-dma-contiguous-remember-that-cma-was-given"
                            ".patch does not apply: Hunk #1 FAILED")
    assert "+static bool cmdline_seen __initdata;" in proc.stderr


def test_no_qemu_outlives_an_interrupted_run(tmp_path: Path) -> None:
    proc = subprocess.Popen([*CLI, "run", "-o", str(tmp_path / "res")], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_sigint)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not _qemu_children(proc.pid):
        time.sleep(0.2)
    qemus = _qemu_children(proc.pid)
    assert qemus, "QEMU never started"
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)  # read the pipes: a full one would block the harness
    assert proc.returncode == 130, stdout[-2000:] + stderr[-2000:]
    time.sleep(0.5)
    assert not [pid for pid in qemus if Path(f"/proc/{pid}").exists()]
    assert not (tmp_path / "res").exists() or not any((tmp_path / "res").iterdir())


def test_boot_qemu_dies_with_a_sigkilled_harness() -> None:
    """Issue 10: ``cma-harness boot`` started QEMU without the parent-death signal."""
    proc = subprocess.Popen([*CLI, "boot", "--cmdline", "cma=64M"], cwd=REPO, stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not _qemu_children(proc.pid):
        time.sleep(0.2)
    qemus = _qemu_children(proc.pid)
    assert qemus, "QEMU never started"
    proc.kill()
    proc.wait(timeout=10)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and [p for p in qemus if Path(f"/proc/{p}").exists()]:
        time.sleep(0.1)
    assert not [p for p in qemus if Path(f"/proc/{p}").exists()], "QEMU outlived the harness"


def test_every_guest_runs_under_qemus_seccomp_sandbox(tmp_path: Path) -> None:
    """Issue 10: no NIC, no monitor, and -sandbox on where this QEMU supports it (Debian's does)."""
    proc = subprocess.Popen([*CLI, "run", "--board", "virt", "--cmdline", "cma=64M", "-o", str(tmp_path)],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not _qemu_children(proc.pid):
            time.sleep(0.2)
        qemus = _qemu_children(proc.pid)
        assert qemus, "QEMU never started"
        argv = Path(f"/proc/{qemus[0]}/cmdline").read_bytes().split(b"\0")
        assert b"-sandbox" in argv and argv[argv.index(b"-sandbox") + 1].startswith(b"on,")
        assert argv[argv.index(b"-nic") + 1] == b"none" and argv[argv.index(b"-monitor") + 1] == b"none"
        status = Path(f"/proc/{qemus[0]}/status").read_text()
        assert re.search(r"^Seccomp:\s+2$", status, re.M), "QEMU is not under a seccomp filter"
    finally:
        assert proc.wait(timeout=300) == 0


def _qemu_children(pid: int) -> list[int]:
    """Guests (QEMU with -kernel) started by ``pid``; not the preflight's ``-machine help`` queries."""
    out = subprocess.run(["ps", "-ww", "-o", "pid=,ppid=,args=", "-e"], capture_output=True, text=True)
    return [int(p) for p, pp, args in (ln.split(None, 2) for ln in out.stdout.splitlines())
            if int(pp) == pid and Path(args.split()[0]).name.startswith("qemu-system")
            and " -kernel " in args]



BREAKING = REPO / "tests/fixtures/patches/0005-mm-cma-clear-every-bitmap-bit-a-released-range-spans.patch"


def test_compare_names_the_testcases_a_bad_patch_regressed(tmp_path: Path) -> None:
    """Issue 5: the series, the same run again, and the series plus a patch that leaks CMA pages."""
    cell = ["--board", "vexpress-a9", "--cmdline", "cma=64M"]
    runs = {}
    for name, extra in (("base", []), ("again", []), ("broken", ["--patch", str(BREAKING)])):
        proc = subprocess.run([*CLI, "run", *cell, *extra, "-o", str(tmp_path / name)],
                              capture_output=True, text=True, cwd=REPO, timeout=3600)
        assert proc.returncode == (1 if name == "broken" else 0), proc.stdout[-3000:] + proc.stderr
        runs[name] = tmp_path / name / "latest"
    info = json.loads((runs["broken"] / "run.json").read_text())
    assert [p["name"] for p in info["kernels"]["vexpress-a9"]["patches"]][-1] == f"extra/{BREAKING.name}"

    clean = subprocess.run([*CLI, "compare", str(runs["base"]), str(runs["again"]), "-o",
                            str(tmp_path / "clean")], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert clean.returncode == 0, clean.stdout + clean.stderr

    proc = subprocess.run([*CLI, "compare", str(runs["base"]), str(runs["broken"]), "-o",
                           str(tmp_path / "cmp")], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = JUnitXml.fromfile(str(tmp_path / "cmp" / "compare.xml"))
    regressed = {c.name for s in report for c in s if c.result and type(c.result[0]).__name__ == "Failure"}
    broken = _suites(runs["broken"] / "junit.xml")["vexpress-a9:cma=64M"]
    failing_now = {n for n, c in broken.items() if n != "@props" and not (c.is_passed or c.is_skipped)}
    # Exactly the testcases that passed before and fail with the patch: the leak shows in the
    # area's accounting, nowhere else.
    assert regressed == failing_now
    assert {"cma-debugfs[reserved]", "cma-test/alloc-free.no-leak",
            "cma-test/exhaustion/area-restored"} <= regressed
    assert not {"boot", "cma-reservation", "kernel-log-clean"} & regressed
    assert "regression" in (tmp_path / "cmp" / "compare.md").read_text().lower()

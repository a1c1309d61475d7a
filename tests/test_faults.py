"""Faults injected for real, on real boots: nothing is lost, no process is left behind.

Each test runs ``cma-harness run`` on a small matrix of quick vexpress-a9 cells (no
suites), hurts it from outside the way an unlucky CI machine would, and checks that
the other cells are unaffected, that every finished cell is on disk, that no QEMU
outlives the harness, and that ``--resume`` completes the run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from junitparser import Error, JUnitXml

from tests.test_integration import CLI, REPO, _qemu_children

pytestmark = pytest.mark.integration
CMDLINES = ("cma=32M", "cma=48M", "cma=64M")


_MATRIX_TEXT = 'boards = ["vexpress-a9"]\ncmdlines = [' + ", ".join(f'"{c}"' for c in CMDLINES) + "]\n"


def _matrix(tmp_path: Path) -> Path:
    path = tmp_path / "three.toml"
    path.write_text(_MATRIX_TEXT)
    return path


def _start(tmp_path: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*CLI, "run", "-j1", "-m", str(_matrix(tmp_path)), "-o", str(tmp_path / "res"),
                             *extra], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _first_guest(proc: subprocess.Popen[str]) -> int:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        guests = _qemu_children(proc.pid)
        if guests:
            return guests[0]
        time.sleep(0.05)
    raise AssertionError("QEMU never started")


def _suites(junit: Path) -> dict[str, tuple[int, int]]:
    """testsuite name -> (failures, errors) of a junit.xml."""
    return {s.name: (s.failures, s.errors) for s in JUnitXml.fromfile(str(junit))}


def _error_types(junit: Path, suite_name: str) -> dict[str, str]:
    """testcase name -> its <error> type, in one testsuite."""
    suite = next(s for s in JUnitXml.fromfile(str(junit)) if s.name == suite_name)
    return {case.name: r.type for case in suite for r in case.result if isinstance(r, Error)}


def _gone(pids: list[int], within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not [p for p in pids if Path(f"/proc/{p}").exists()]:
            return True
        time.sleep(0.05)
    return False


def test_qemu_killed_mid_cell_is_that_cells_error_and_the_others_run(tmp_path: Path) -> None:
    proc = _start(tmp_path)
    guest = _first_guest(proc)
    os.kill(guest, signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1, stdout[-2000:] + stderr[-2000:]
    suites = _suites(tmp_path / "res" / "latest" / "junit.xml")
    assert len(suites) == len(CMDLINES)
    hurt = [name for name, (_, errors) in suites.items() if errors]
    assert len(hurt) == 1, suites
    assert all(counts == (0, 0) for name, counts in suites.items() if name not in hurt), suites
    types = _error_types(tmp_path / "res" / "latest" / "junit.xml", hurt[0])
    assert set(types.values()) == {"infrastructure"}, types
    assert _gone([guest])


def test_qemu_that_exits_at_once_is_an_infrastructure_error(tmp_path: Path) -> None:
    """A board whose QEMU refuses to start (here an option it does not know)."""
    boards_dir = tmp_path / "boards"
    boards_dir.mkdir()
    text = (REPO / "boards" / "vexpress-a9.toml").read_text()
    text = text.replace("extra_args = []", 'extra_args = ["-no-such-option"]\nallow_unsafe_args = true')
    (boards_dir / "broken-a9.toml").write_text(text)
    matrix = tmp_path / "one.toml"
    matrix.write_text('boards = ["broken-a9"]\ncmdlines = ["cma=64M"]\n')
    proc = subprocess.run([*CLI, "run", "-m", str(matrix), "--boards-dir", str(boards_dir), "-o",
                           str(tmp_path / "res")], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    junit = tmp_path / "res" / "latest" / "junit.xml"
    assert _error_types(junit, "broken-a9:cma=64M") == {"boot": "infrastructure"}
    assert "QEMU exited with status 1 before the kernel ran" in junit.read_text()


def test_harness_sigkilled_mid_run_keeps_its_cells_and_resume_completes(tmp_path: Path) -> None:
    proc = _start(tmp_path)
    deadline = time.monotonic() + 300
    partial: list[Path] = []
    while time.monotonic() < deadline and not partial:
        partial = [p for p in (tmp_path / "res").glob(".*.partial") if any(p.glob("cells/*.xml"))]
        time.sleep(0.05)
    assert partial, "no cell finished"
    guests = _qemu_children(proc.pid)
    proc.kill()
    proc.communicate(timeout=30)
    assert _gone(guests), "QEMU outlived the SIGKILLed harness"
    done = {p.name for p in partial[0].glob("cells/*.xml")}
    assert done
    resumed = subprocess.run([*CLI, "run", "--resume", str(partial[0])], cwd=REPO, capture_output=True,
                             text=True, timeout=300, check=False)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    final = tmp_path / "res" / "latest"
    assert done <= {p.name for p in final.glob("cells/*.xml")}
    suites = _suites(final / "junit.xml")
    assert len(suites) == len(CMDLINES) and all(c == (0, 0) for c in suites.values()), suites


# --- Faults inside the guest, on real boots --------------------------------------------------------
#
# The guest is hurt through the harness's own dialogue: ``_faulty_main`` runs the real
# ``cma-harness run`` in a subprocess with ``Console.run_step`` wrapped, so that in one cell (named by
# its cmdline) chosen steps of the cell script carry a little extra shell.  No line of the harness
# changes; the guest does the damage itself, as a buggy driver or program would.

FAULT_ENV, TARGET_ENV = "CMA_HARNESS_TEST_FAULT", "CMA_HARNESS_TEST_FAULT_CELL"
TARGET = "cma=48M"
# 4 KiB of random bytes from a fixed seed (busybox awk: the same bytes every run), then crafted
# junk: ANSI escapes, NULs, a bare CR, invalid UTF-8, a fake prompt, a fake end marker, a fake
# panic as plain text, and a fake kernel-record start with no newline (it swallows the rest of
# its line, which is where a command marker used to be).
GARBAGE_TAIL = (r"\033[2J\033[1;31m\000\000\r\377\376\300\200 cma-harness# \n0123456789E 0\n"
                r"Kernel panic - not syncing: fake\n\033[0m[    9.999999] fake record, no newline")
MAKE_GARBAGE = ("awk 'BEGIN{srand(1); for(i=0;i<4096;i++) printf \"%c\", int(rand()*256)}' > /tmp/g; "
                f"printf '{GARBAGE_TAIL}' >> /tmp/g")


def _faulty_main(argv: list[str]) -> int:
    """``cma-harness`` with the fault ``$CMA_HARNESS_TEST_FAULT`` in the cell ``$..._CELL``.

    ``sysrq``: while the cell's ``migrate`` suite runs, the guest writes ``c`` to
    /proc/sysrq-trigger (a real kernel panic; ``panic=-1`` makes QEMU exit).
    ``garbage``: the guest writes the garbage to its console between two steps (by a command
    typed with no markers around it) and at the end of the output of ``cat /proc/meminfo`` and
    of the ``alloc-free`` suite (which keeps its exit status).
    """
    from dataclasses import replace

    from harness import cli
    from harness.console import Budget, Console
    from harness.script import Budgets, Step
    from harness.transcript import StepRecord

    fault, target = os.environ[FAULT_ENV], os.environ[TARGET_ENV]
    original = Console.run_step

    def run_step(self: Console, step: Step, budgets: Budgets) -> StepRecord:
        args = [str(a) for a in self.child.args]
        command = step.command
        if target not in args[args.index("-append") + 1].split():
            return original(self, step, budgets)
        if fault == "sysrq" and command == "cma-test suite migrate":
            command = f"(sleep 2; echo c > /proc/sysrq-trigger) & {command}"
        elif fault == "garbage" and command == "cat /proc/meminfo":
            self.run(MAKE_GARBAGE, Budget(budgets.command))
            self.child.send(b"cat /tmp/g > /dev/console\n")
            command = f"{command}; cat /tmp/g"
        elif fault == "garbage" and command == "cma-test suite alloc-free":
            command = f"{command}; s=$?; cat /tmp/g; (exit $s)"
        return original(self, replace(step, command=command), budgets)

    setattr(Console, "run_step", run_step)  # noqa: B010 (mypy: assigning to a method)
    return cli.main(argv)


_FAULTY_ENTRY = "import sys, tests.test_faults as t; sys.exit(t._faulty_main(sys.argv[1:]))"


def _faulty_run(tmp_path: Path, fault: str, matrix: str) -> tuple[int, str, list[int]]:
    """Run the matrix with ``fault``; (exit status, output, every QEMU pid seen while it ran)."""
    path = tmp_path / "faulty.toml"
    path.write_text(matrix)
    out = tmp_path / "out.txt"
    with out.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-c", _FAULTY_ENTRY, "run", "-j1", "-m", str(path), "-o", str(tmp_path / "res")],
            cwd=REPO, stdout=sink,
            stderr=subprocess.STDOUT, text=True, env={**os.environ, FAULT_ENV: fault, TARGET_ENV: TARGET})
        guests: set[int] = set()
        deadline = time.monotonic() + 600
        while proc.poll() is None and time.monotonic() < deadline:
            guests.update(_qemu_children(proc.pid))
            time.sleep(0.1)
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
    return proc.returncode, out.read_text(), sorted(guests)


def _cases(junit: Path, suite_name: str) -> dict[str, tuple[str, str, str]]:
    """testcase -> (outcome, <error>/<failure> type or "", message) in one testsuite."""
    suite = next(s for s in JUnitXml.fromfile(str(junit)) if s.name == suite_name)
    out = {}
    for case in suite:
        r = case.result[0] if case.result else None
        out[case.name] = (type(r).__name__.lower() if r is not None else "passed",
                          (r.type or "") if r is not None else "", (r.message or "") if r is not None else "")
    return out


def _assert_others_pass_and_all_on_disk(tmp_path: Path) -> Path:
    final = tmp_path / "res" / "latest"
    suites = _suites(final / "junit.xml")
    assert set(suites) == {f"vexpress-a9:{c}" for c in CMDLINES}, suites
    assert all(counts == (0, 0) for name, counts in suites.items() if name != f"vexpress-a9:{TARGET}"), suites
    assert {p.name for p in final.glob("cells/*.xml")} == {f"vexpress-a9_{c}.xml" for c in CMDLINES}
    assert {p.name for p in final.glob("logs/*.log")} == {f"vexpress-a9_{c}.log" for c in CMDLINES}
    return final


def test_guest_panic_mid_suite_is_a_guest_error_naming_the_panic(tmp_path: Path) -> None:
    """sysrq-c during ``cma-test suite migrate``: the kernel died, a verdict on the kernel."""
    status, out, guests = _faulty_run(tmp_path, "sysrq", _MATRIX_TEXT + (
        f'[[cells]]\ncmdline = "{TARGET}"\nsuites = ["alloc-free", "migrate", "dma"]\n'))
    assert status == 1, out[-3000:]
    final = _assert_others_pass_and_all_on_disk(tmp_path)
    assert len(guests) >= len(CMDLINES) and _gone(guests), "a QEMU outlived its cell"
    cases = _cases(final / "junit.xml", f"vexpress-a9:{TARGET}")
    outcome, kind, message = cases["cma-test/migrate"]
    assert (outcome, kind) == ("error", "GuestError"), cases["cma-test/migrate"]
    assert message.startswith("the suite did not finish: the guest stopped (QEMU exited)"), message
    assert "Kernel panic - not syncing: sysrq triggered crash" in message
    outcome, _, message = cases["kernel-log-clean"]
    assert outcome == "failure" and "panic" in message and "sysrq triggered crash" in message, message
    # What ran before the panic keeps its verdict; what it prevented says so.
    assert cases["cma-test/alloc-free/area-restored"][0] == "passed"
    assert cases["cma-meminfo"][0] == "passed" and cases["cma-debugfs[reserved]"][0] == "passed"
    assert cases["cma-test/dma"][0] == "skipped" and "not run" in cases["cma-test/dma"][2]
    assert not [n for n, c in cases.items() if c[1] == "infrastructure"]
    log = (final / "logs" / f"vexpress-a9_{TARGET}.log").read_bytes()
    assert log.index(b"cma-test suite migrate") < log.index(b"sysrq: Trigger a crash")


def test_garbage_on_the_console_is_ignored_and_later_commands_stay_in_step(tmp_path: Path) -> None:
    status, out, guests = _faulty_run(tmp_path, "garbage", _MATRIX_TEXT + (
        f'[[cells]]\ncmdline = "{TARGET}"\nsuites = ["alloc-free"]\n'))
    assert status == 0, out[-3000:]
    final = _assert_others_pass_and_all_on_disk(tmp_path)
    assert len(guests) >= len(CMDLINES) and _gone(guests), "a QEMU outlived its cell"
    cases = _cases(final / "junit.xml", f"vexpress-a9:{TARGET}")
    assert all(c[0] == "passed" for c in cases.values()), {n: c for n, c in cases.items() if c[0] != "passed"}
    assert {"cma-meminfo", "cma-test/alloc-free/area-restored", "cma-test/alloc-free.no-leak",
            "cma-debugfs[reserved]", "kernel-log-clean"} <= set(cases)
    # The log on disk keeps every byte: three copies of the garbage, NULs and invalid UTF-8 included
    # (the echo of the typed printf holds the escapes as text, not these bytes).
    log = (final / "logs" / f"vexpress-a9_{TARGET}.log").read_bytes()
    assert log.count(b"\x1b[2J\x1b[1;31m\x00\x00\r\xff\xfe\xc0\x80 cma-harness# ") == 3
    assert log.count(b"\x1b[0m[    9.999999] fake record, no newline") == 3


def test_qemu_killed_mid_suite_is_infrastructure_not_the_suites_failure(tmp_path: Path) -> None:
    """SIGKILL from outside while ``migrate`` runs: the suite's error names the host, not the kernel."""
    matrix = tmp_path / "suite.toml"
    matrix.write_text(_MATRIX_TEXT + f'[[cells]]\ncmdline = "{TARGET}"\nsuites = ["migrate"]\n')
    proc = subprocess.Popen([*CLI, "run", "-j1", "-m", str(matrix), "-o", str(tmp_path / "res")], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    logs: list[Path] = []
    while time.monotonic() < deadline and not logs:  # the suite has started
        logs = [p for p in (tmp_path / "res").glob(f".*.partial/logs/vexpress-a9_{TARGET}.log")
                if b"cma-test suite migrate" in p.read_bytes()]
        time.sleep(0.05)
    assert logs, "the suite never started"
    guest = _first_guest(proc)
    assert f" {TARGET}" in Path(f"/proc/{guest}/cmdline").read_bytes().decode().replace("\0", " ")
    os.kill(guest, signal.SIGKILL)
    stdout, _ = proc.communicate(timeout=300)
    assert proc.returncode == 1, stdout[-3000:]
    final = _assert_others_pass_and_all_on_disk(tmp_path)
    assert _gone([guest])
    cases = _cases(final / "junit.xml", f"vexpress-a9:{TARGET}")
    assert cases["cma-test/migrate"] == (
        "error", "infrastructure", "the suite did not finish: QEMU was killed by SIGKILL: the guest stopped "
        "(QEMU exited)"), cases["cma-test/migrate"]
    assert cases["kernel-log-clean"][0] == "passed"

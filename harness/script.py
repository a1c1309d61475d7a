"""The guest commands of a cell, as data: a :class:`CellScript` built from the cell alone.

A script is an ordered list of :class:`Step`.  Each is sent as one line that
prints a begin marker, runs the command and prints an end marker with the exit
status; work over the CMA areas is a guest-side shell loop inside one step,
each iteration printing nested markers of its own.  Markers are printed with
``printf`` so the tty's echo of the typed line (which holds the format string
``@@%s``, not the expanded ``@@<nonce>``) never matches, and each carries the
guest's ``/proc/uptime``, so step durations can be read back from the log::

    @@<nonce> begin <kind> <step-id> <uptime>
    @@<nonce> end <step-id> <status> <uptime>

``<status>`` is ``-`` for a step its guard skipped.  A guard (``when``) is a
shell variable set by an earlier step (``sets``) whose command exited 0: the
guest, not the host, decides what runs, so any executor that can type the
script's lines on a console and return the transcript runs the cell.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from harness.matrix import Cell

DEBUGFS_PAGES = 64  # 256 KiB with 4 KiB pages: small enough for every area
PROBE_ALLOC_BYTES = 1 << 20  # cma-dev allocations the host checks against the boot log
PROBE_ALLOC_ORDER = 4
AREA_NAME = re.compile(r"[A-Za-z0-9@._-]+")  # names from cma_init_reserved_mem(): DT node names
MAX_LINE = 4000  # the tty's canonical input line holds 4095 bytes (N_TTY_BUF_SIZE)
_AREAS_FILE = "/tmp/cmah-areas"
_CMA_DEV, _DEFAULT = "cmah_dev", "cmah_default"  # the guards' shell variables
# Rows of ``cma-test areas`` as harness.checks.parse_cma_test_areas reads them:
# idx name base size total free.
_AREA_ROW = r'NF == 6 && $1 ~ /^[0-9]+$/ && $3 ~ /^0x[0-9a-f]+$/'
# Names a shell loop may use as they are (the rest is reported by the host, never typed).
_UNFIT = "*[!A-Za-z0-9@._-]*"


class BudgetKind(StrEnum):
    """The kinds of guest step, each with its own time budget (:class:`Budgets`)."""

    BOOT = "boot"
    COMMAND = "command"
    SUITE = "suite"
    POWEROFF = "poweroff"


@dataclass(frozen=True)
class Budgets:
    """Seconds each kind of step may take before the guest counts as hung.

    Scaled on the host that runs the cell by ``$CMA_HARNESS_TIMEOUT_FACTOR``
    (:func:`harness.console.timeout_factor`).
    """

    boot: float = 60.0  # QEMU start to the first shell answer
    command: float = 30.0  # one ordinary command
    suite: float = 300.0  # one test suite
    poweroff: float = 10.0  # poweroff to QEMU exit

    def seconds(self, kind: BudgetKind) -> float:
        """The budget of ``kind``, in seconds (unscaled)."""
        return float(getattr(self, kind.value))


@dataclass(frozen=True)
class Step:
    """One line sent to the guest shell.

    Attributes:
        id: unique in the script, no whitespace (nested steps' ids are built by the loop).
        command: the shell command (one line, no control character).
        kind: whose budget it gets (a nested step's begin marker names its own).
        when: a guard: the step runs only if this shell variable is set ("" always).
        sets: the shell variable this step sets when its command exits 0 ("" none).
    """

    id: str
    command: str
    kind: BudgetKind = BudgetKind.COMMAND
    when: str = ""
    sets: str = ""


@dataclass(frozen=True)
class CellScript:
    """The steps of one cell after the shell answered, in order (poweroff follows them)."""

    steps: tuple[Step, ...]

    def ids(self) -> list[str]:
        """The top-level step ids, in order."""
        return [s.id for s in self.steps]


def _begin(nonce: str, kind: str, step_id: str) -> str:
    return (f"read -r u _ </proc/uptime; printf '\\n@@%s begin %s %s %s\\n' {nonce} {kind} "
            f"\"{step_id}\" \"${{u:-0}}\"")


def _end(nonce: str, step_id: str) -> str:
    return (f"read -r u _ </proc/uptime; printf '\\n@@%s end %s %s %s\\n' {nonce} \"{step_id}\" \"$s\" "
            "\"${u:-0}\"")


def nested(nonce: str, kind: BudgetKind, step_id: str, command: str) -> str:
    """``command`` wrapped in the markers of a nested step ``step_id`` (may hold ``$a`` etc.)."""
    return f"{_begin(nonce, kind.value, step_id)}; {command}; s=$?; {_end(nonce, step_id)}"


def step_line(step: Step, nonce: str) -> str:
    """The line typed for ``step`` (without the newline), markers and guard included.

    Raises:
        ValueError: the line is longer than the tty takes (:data:`MAX_LINE`).
    """
    run = f"{step.command}; s=$?"
    if step.when:
        run = f"if [ -n \"${step.when}\" ]; then {run}; else s=-; fi"
    sets = f"; [ \"$s\" = 0 ] && {step.sets}=1" if step.sets else ""
    line = f"{_begin(nonce, step.kind.value, step.id)}; {run}{sets}; {_end(nonce, step.id)}"
    if len(line) > MAX_LINE:
        raise ValueError(f"step {step.id}: its line is {len(line)} bytes, the tty takes {MAX_LINE}")
    return line


def suite_command(suite: str, area: str = "") -> str:
    """The guest command of one suite; ``area`` (a shell word, e.g. ``$a``) other than the default one."""
    if suite == "dmabuf-heaps":
        return "dmabuf-heap"
    return f"{f'CMA_TEST_AREA={area} ' if area else ''}cma-test suite {suite}"


def suite_step_ids(suite: str, area: str = "") -> tuple[str, str, str]:
    """Ids of a suite run's steps: counters before, the suite, counters after."""
    key = f"{suite}@{area}" if area else suite
    return f"counters-before:{key}", f"suite:{key}", f"counters-after:{key}"


def _default_suite_steps(cell: Cell) -> list[Step]:
    steps = []
    for suite in cell.suites:
        before, run, after = suite_step_ids(suite)
        steps += [Step(before, "cma-counters", when=_DEFAULT),
                  Step(run, suite_command(suite), BudgetKind.SUITE, when=_DEFAULT),
                  Step(after, "cma-counters", when=_DEFAULT)]
    return steps


def _area_suites_step(cell: Cell, nonce: str) -> Step:
    """One loop over every named area but the default one, running each area suite in it."""
    body = []
    for suite in cell.area_suites:
        before, run, after = suite_step_ids(suite, "$a")
        body += [nested(nonce, BudgetKind.COMMAND, before, "cma-counters"),
                 nested(nonce, BudgetKind.SUITE, run, suite_command(suite, "$a")),
                 nested(nonce, BudgetKind.COMMAND, after, "cma-counters")]
    areas = f"awk '{_AREA_ROW} && $2 != \"reserved\" {{print $2}}' {_AREAS_FILE}"
    loop = (f"set -f; for a in $({areas}); do case \"$a\" in {_UNFIT}) continue;; esac; "
            f"{'; '.join(body)}; done; set +f")
    return Step("area-suites", loop, when=_CMA_DEV)


def _debugfs_steps(nonce: str) -> list[Step]:
    probe = nested(nonce, BudgetKind.COMMAND, "probe:$a", f"cma-debugfs-probe \"$a\" {DEBUGFS_PAGES}")
    loop = (f"set -f; for a in $(ls /sys/kernel/debug/cma 2>/dev/null); do case \"$a\" in {_UNFIT}) "
            f"continue;; esac; {probe}; done; set +f")
    return [Step("debugfs-list", "ls /sys/kernel/debug/cma"), Step("debugfs-probe", loop)]


def _cma_dev_steps(cell: Cell, nonce: str) -> list[Step]:
    has_default = f"awk '{_AREA_ROW} && $2 == \"reserved\" {{f = 1}} END {{exit !f}}' {_AREAS_FILE}"
    steps = [Step("cma-dev-load", "modprobe cma-dev", sets=_CMA_DEV),
             Step("cma-dev-areas", f"cma-test areas | tee {_AREAS_FILE}", when=_CMA_DEV),
             Step("default-area", has_default, when=_CMA_DEV, sets=_DEFAULT),
             Step("alloc-probe", f"cma-test alloc reserved {PROBE_ALLOC_BYTES} {PROBE_ALLOC_ORDER}",
                  when=_DEFAULT),
             Step("dma-probe", f"cma-test dma-alloc {PROBE_ALLOC_BYTES}", when=_DEFAULT),
             *_default_suite_steps(cell)]
    return steps + ([_area_suites_step(cell, nonce)] if cell.area_suites else [])


def build_script(cell: Cell, nonce: str) -> CellScript:
    """The guest steps of ``cell`` after the shell answered; markers carry ``nonce``.

    In order: /proc/meminfo; the debugfs listing and a probe of each area in it;
    cma-dev: load, list areas, check for the default one, two allocations in it,
    each suite on it (counters before and after); a loop running the area suites
    on every other area; ``dmesg -r``.  cma-dev's steps run only when it loaded,
    the default area's only when cma-dev lists it.
    """
    return CellScript((Step("meminfo", "cat /proc/meminfo"), *_debugfs_steps(nonce),
                       *_cma_dev_steps(cell, nonce), Step("dmesg", "dmesg -r")))

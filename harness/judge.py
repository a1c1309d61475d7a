"""The verdict of a cell: a pure function of its console log (and how the guest stopped).

:func:`judge` parses the whole log with the parser the live driver used
(:func:`harness.transcript.parse_log`), then reads the recorded steps back in
the order the guest ran them (:class:`Replay`) and runs every check on what
they printed.  What the log alone cannot show -- poweroff, a timeout and its
budget, QEMU killed from outside, the host's clock -- is the small
:class:`~harness.cellresult.Ending` the live driver records beside it; without
one, a log that ends mid-step reads as "the guest stopped".

A guest that stopped (died or hung) makes the affected check ``ERROR``
(``boot``, ``guest-commands`` or the suite it stopped in) with the console
excerpt and the QEMU command line; what it printed before keeps its verdict,
and each check it never got to is a SKIP saying so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from harness import checks
from harness.cellresult import AreaInfo, CellResult, CmaFacts, Ending, EndKind, SuiteRun
from harness.checks import CheckResult, Status
from harness.console import SHELL_STEP, CommandResult, ConsoleTimeout, GuestGone
from harness.errors import BootError
from harness.expectation import Expectation
from harness.job import CellJob
from harness.matrix import Cell
from harness.qemu import printable
from harness.script import AREA_NAME, DEBUGFS_PAGES, PROBE_ALLOC_BYTES, PROBE_ALLOC_ORDER, CellScript
from harness.script import suite_step_ids as _ids
from harness.transcript import StepRecord, Transcript, gone_message, parse_log

ReservationCheck = Callable[[checks.CmaBootReport, list[str]], CheckResult]
"""Judges the default CMA area's reservation from the boot: (parsed ``cma:`` lines, kernel records)."""


def stop_error(ending: Ending, transcript: Transcript) -> BootError:
    """The error the guest's stop was, as the live console raised it (message and excerpt)."""
    if ending.kind is EndKind.TIMEOUT:
        return ConsoleTimeout(f"no answer from the guest within {ending.budget_seconds:.0f}s",
                              transcript.tail)
    return GuestGone(gone_message(transcript.problems), transcript.tail)


class Replay:
    """The recorded steps of a transcript, read back by id.

    :meth:`get` raises the guest's stop (:func:`stop_error`) for a step that
    never ended or never began: the guest stopped there (or before).
    """

    def __init__(self, transcript: Transcript, ending: Ending) -> None:
        self.transcript = transcript
        self.ending = ending

    def get(self, step_id: str, within: str = "") -> CommandResult | None:
        """The step's output, exit status (-1: skipped by its guard) and guest seconds.

        ``within``: the loop step it is nested in; if that ended without running
        this one, None.

        Raises:
            ConsoleTimeout, GuestGone: the guest stopped before the step ended.
        """
        record = self.transcript.steps.get(step_id)
        if record is not None and record.complete:
            status = record.status if record.status is not None else -1
            return CommandResult(step_id, record.output, status, record.seconds)
        parent = self.transcript.steps.get(within) if within else None
        if record is None and parent is not None and parent.complete:
            return None
        raise stop_error(self.ending, self.transcript)

    def run(self, step_id: str) -> CommandResult:
        """:meth:`get` of a top-level step (it always ran, or the guest stopped)."""
        result = self.get(step_id)
        assert result is not None  # get() returns None only for a nested step
        return result


def boot_error(name: str, exc: BootError, argv: list[str], host: str = "") -> CheckResult:
    """The ERROR testcase ``name`` for a guest that stopped: the error, QEMU's command line, the console."""
    return CheckResult(name, Status.ERROR, f"{host}: {exc}" if host else str(exc),
                       f"QEMU command line:\n{printable(argv)}\n\nconsole (last lines):\n{exc.excerpt}",
                       infrastructure=bool(host))


@dataclass
class Evidence:
    """What the guest printed, read step by step; checked at the end.

    ``None`` marks evidence never gathered because the guest stopped first;
    ``stopped`` then names the testcase holding that error.
    """

    meminfo: dict[str, int] | None = None
    debugfs_areas: list[str] | None = None  # the names /sys/kernel/debug/cma lists
    probes: dict[str, dict[str, str]] = field(default_factory=dict)
    areas: list[checks.DevArea] | None = None  # what ``cma-test areas`` lists
    default_area: bool | None = None  # the guest found the default area (None: never asked)
    dmesg: list[str] = field(default_factory=list)
    dev_results: list[CheckResult] = field(default_factory=list)
    suite_runs: list[SuiteRun] = field(default_factory=list)
    suite_aborted: bool = False
    suites_done: bool = False  # cma-dev and every suite it could run are behind us
    stopped: str = ""


def suite_name(suite: str, area: str = "") -> str:
    """The testcase path of one suite run: ``cma-test/<suite>`` or ``cma-test@<area>/<suite>``."""
    return f"cma-test@{area}/{suite}" if area else f"cma-test/{suite}"


def suite_plan(cell: Cell, ev: Evidence) -> list[tuple[str, str]]:
    """The ``(suite, area)`` runs of ``cell``, in order (area "" = the default area).

    The cell's suites run on the default area ("reserved") if the guest found it
    (else, if never asked, if cma-dev lists it), its area suites on every other
    area with a name fit for a shell command.  Areas never listed (the guest
    stopped first): the default suites.
    """
    areas = ev.areas
    default = ev.default_area
    if default is None:
        default = areas is None or any(a.name == "reserved" for a in areas)
    plan = [(suite, "") for suite in cell.suites] if default else []
    for area in (areas or []) if cell.area_suites else []:
        if area.name != "reserved" and AREA_NAME.fullmatch(area.name):
            plan += [(suite, area.name) for suite in cell.area_suites]
    return plan


def required_of(cell: Cell) -> list[str]:
    """The cell's required subtests that belong to one of its suites ("cma-test/<suite>/<test>")."""
    return [r for r in cell.required if r.split("/")[1:2] and r.split("/")[1] in cell.suites]


class NotRun(Exception):
    """The guest ended a loop without running one of the host's planned iterations."""


def _suite(replay: Replay, suite: str, area: str = "",
           areas: Sequence[checks.DevArea] = ()) -> tuple[list[CheckResult], SuiteRun]:
    """One suite run's checks, with the CMA counters read before and after.

    ``areas`` (what cma-dev listed) excuse the dmabuf-heaps failures a heap of
    its size cannot avoid (:func:`harness.checks.excuse_small_heaps`).

    Raises:
        BootError: the guest stopped in it.
        NotRun: the guest's area loop did not run it.
    """
    prefix = f"cma-test@{area}" if area else "cma-test"
    within = "area-suites" if area else ""
    outs = [replay.get(step_id, within) for step_id in _ids(suite, area)]
    if any(o is None for o in outs):
        raise NotRun(f"the guest did not run it: its area listing differs from {area!r}")
    before_out, out, after_out = (o for o in outs if o is not None)
    before = checks.parse_key_values(before_out.output)
    if suite == "dmabuf-heaps":
        output, status = checks.excuse_small_heaps(out.output, areas, out.status)
        results, measured = checks.dmabuf_heap_results(output, status)
    else:
        results, measured = checks.ktap_results(prefix, out.output, out.status)
    after = checks.parse_key_values(after_out.output)
    results.append(checks.check_counters_restored(f"{prefix}/{suite}", before, after))
    return results, SuiteRun(f"{prefix}/{suite}", out.duration, before, after, tuple(measured))


def _run_suites(replay: Replay, plan: list[tuple[str, str]], ev: Evidence) -> None:
    """Each ``(suite, area)`` of ``plan``; the suite the guest stopped in is an ERROR, then re-raised."""
    for suite, area in plan:
        try:
            suite_results, run = _suite(replay, suite, area, ev.areas or ())
        except NotRun as exc:
            ev.dev_results.append(CheckResult(suite_name(suite, area), Status.ERROR, str(exc)))
            continue
        except BootError as exc:
            ev.dev_results.append(CheckResult(suite_name(suite, area), Status.ERROR,
                                              f"the suite did not finish: {exc}", exc.excerpt))
            ev.suite_aborted = True
            raise
        ev.dev_results.extend(suite_results)
        ev.suite_runs.append(run)


def _probes(replay: Replay, default: checks.DevArea, results: list[CheckResult]) -> None:
    """The two allocations in the default area, checked against where cma-dev says it is."""
    for step_id, order in (("alloc-probe", PROBE_ALLOC_ORDER), ("dma-probe", 0)):
        out = replay.run(step_id).output
        results.append(checks.check_alloc_in_area(default, out, PROBE_ALLOC_BYTES, order))


def _cma_dev(replay: Replay, cell: Cell, report: checks.CmaBootReport, ev: Evidence) -> None:
    """cma-dev: loaded, its areas against the boot log, the probes, the suites (appends to ``ev``).

    Raises:
        BootError: the guest stopped (a suite it stopped in is already an ERROR testcase).
    """
    results = ev.dev_results
    load = replay.run("cma-dev-load")
    if load.status != 0:
        results.append(CheckResult("cma-dev/load", Status.FAIL,
                                   f"modprobe cma-dev failed (exit status {load.status})", load.output))
        return
    results.append(CheckResult("cma-dev/load", Status.PASS, "modprobe cma-dev", seconds=load.duration))
    listing = replay.run("cma-dev-areas").output
    areas = ev.areas = checks.parse_cma_test_areas(listing)
    results.append(checks.check_dev_areas(report, areas))
    if checks.cma_dev_abi(listing) >= 2:  # ranges are listed since ABI 2
        results.append(checks.check_dev_ranges(areas))
    ev.default_area = replay.run("default-area").status == 0
    default = next((a for a in areas if a.name == "reserved"), None)
    if default is not None and ev.default_area:
        _probes(replay, default, results)
    for area in areas if cell.area_suites else []:
        if area.name != "reserved" and not AREA_NAME.fullmatch(area.name):
            results.append(CheckResult(f"cma-test@{area.name}", Status.ERROR,
                                       "area name unfit for a shell command; suites not run"))
    first = len(results)
    _run_suites(replay, suite_plan(cell, ev), ev)
    # A required subtest counts where its suite ran ("cma-test/<suite>/<test>").
    required = required_of(cell)
    if ev.default_area and cell.suites and required:
        results.append(checks.check_required_tests(results[first:], required))


def _debugfs(replay: Replay, ev: Evidence) -> None:
    """The debugfs listing and the probe of each area in it fit for a shell command."""
    listing = replay.run("debugfs-list")
    ev.debugfs_areas = listing.output.split() if listing.status == 0 else []
    # Only names fit for a shell command are probed (garbage on the console can land in
    # the listing); debugfs_checks reports the others.
    for area in filter(AREA_NAME.fullmatch, ev.debugfs_areas):
        out = replay.get(f"probe:{area}", "debugfs-probe")
        ev.probes[area] = checks.parse_key_values(out.output) if out is not None else {}


def read_steps(replay: Replay, cell: Cell, report: checks.CmaBootReport, ev: Evidence) -> None:
    """Every guest step after boot, in order; raises the guest's stop where it stopped."""
    ev.meminfo = checks.parse_meminfo(replay.run("meminfo").output)
    _debugfs(replay, ev)
    _cma_dev(replay, cell, report, ev)
    ev.suites_done = True
    ev.dmesg = replay.run("dmesg").lines


def _not_run(cell: Cell, ev: Evidence, why: str) -> list[CheckResult]:
    """SKIP testcases for the suites (and the required-subtests check) the stopped guest never ran."""
    if ev.suites_done:
        return []
    done = [r.name for r in ev.dev_results]
    plan = suite_plan(cell, ev)
    names = [suite_name(suite, area) for suite, area in plan]
    if required_of(cell) and any(area == "" for _, area in plan):
        names.append("cma-test/required-subtests")
    return [CheckResult(name, Status.SKIP, why) for name in names
            if not any(d == name or d.startswith((f"{name}/", f"{name}.")) for d in done)]


def debugfs_checks(report: checks.CmaBootReport, ev: Evidence, why: str) -> list[CheckResult]:
    """``cma-debugfs[<area>]`` for each area probed; ERROR for a listing that names no area."""
    if ev.debugfs_areas is None:
        return [CheckResult("cma-debugfs", Status.SKIP, why)]
    results = []
    unfit = [a for a in ev.debugfs_areas if not AREA_NAME.fullmatch(a)]
    if unfit:
        shown = ", ".join(repr(a[:40]) for a in unfit[:3])
        shown += f" and {len(unfit) - 3} more" if len(unfit) > 3 else ""
        results.append(CheckResult("cma-debugfs", Status.ERROR,
                                   f"/sys/kernel/debug/cma: cannot read the listing: {shown} is no CMA area "
                                   "name (not probed)", " ".join(ev.debugfs_areas)))
    for area in filter(AREA_NAME.fullmatch, ev.debugfs_areas):
        results.append(checks.check_debugfs_area(area, DEBUGFS_PAGES, ev.probes[area]) if area in ev.probes
                       else CheckResult(f"cma-debugfs[{area}]", Status.SKIP, why))
    if results:
        return results
    if report.total_mib:
        return [CheckResult("cma-debugfs", Status.FAIL, f"the boot log reserved {report.total_mib} MiB but "
                            "/sys/kernel/debug/cma lists no area")]
    return [CheckResult("cma-debugfs", Status.SKIP, "no CMA area to exercise")]


def evaluate(cell: Cell, report: checks.CmaBootReport, ev: Evidence, records: list[str]) -> list[CheckResult]:
    """The checks on everything read after boot.

    When the guest stopped early (``ev.stopped``), what it printed before still
    gets its verdict; each check it never got to is a SKIP saying so.
    """
    why = f"not run: the guest stopped first (see {ev.stopped})"
    meminfo = ev.meminfo
    results = [CheckResult("cma-meminfo", Status.SKIP, why) if meminfo is None
               else checks.check_meminfo(report, meminfo), *ev.dev_results]
    if ev.stopped:
        results += _not_run(cell, ev, why)
    results += debugfs_checks(report, ev, why)
    # dmesg -r lines carry a "<N>" priority prefix; the console saw the same records.
    kernel_lines = list(dict.fromkeys([*records, *(ln.split(">", 1)[-1] for ln in ev.dmesg)]))
    results.append(checks.check_kernel_log(kernel_lines))
    return results


def record_stop(ev: Evidence, exc: BootError, argv: list[str], host: str) -> None:
    """Note where the guest stopped: a ``guest-commands`` ERROR, or the aborted suite's.

    With ``host`` (the host ended the guest) the error is infrastructure.
    """
    if not ev.suite_aborted:
        ev.dev_results.append(boot_error("guest-commands", exc, argv, host))
    elif host:  # QEMU killed from outside mid-suite: not the suite's doing
        ev.dev_results[-1] = replace(ev.dev_results[-1], infrastructure=True,
                                     message=f"the suite did not finish: {host}: {exc}")
    ev.stopped = ev.dev_results[-1].name


def _cma_facts(report: checks.CmaBootReport, meminfo: dict[str, int] | None) -> CmaFacts:
    """The boot's CMA facts: the boot log's ``cma:`` lines and /proc/meminfo (None: never read)."""
    return CmaFacts(report.total_mib, report.reserved[0].base if report.reserved else None,
                    report.failed[0] if report.failed else None,
                    (meminfo or {}).get("CmaTotal"), (meminfo or {}).get("CmaFree"))


def infer_ending(transcript: Transcript, script: CellScript) -> Ending:
    """How the guest stopped, read from a log alone: poweroff after the last step, else gone.

    The boot time is then the guest's uptime at the shell's first answer.
    """
    shell = transcript.steps.get(SHELL_STEP)
    boot = shell.end if shell is not None and shell.complete else None
    ids = [SHELL_STEP, *script.ids()]
    missing = [i for i in ids if i not in transcript.steps or not transcript.steps[i].complete]
    ups = [r.end or r.begin for r in transcript.steps.values()]
    seconds = max(ups, default=0.0)
    if not missing:
        return Ending(EndKind.POWEROFF, boot_seconds=boot, seconds=seconds)
    step = _innermost(transcript.roots) or missing[0]
    return Ending(EndKind.GONE, step, boot_seconds=boot, seconds=seconds)


def _innermost(records: list[StepRecord]) -> str:
    """The id of the innermost step begun and never ended, or ""."""
    for record in reversed(records):
        if not record.complete:
            return _innermost(record.children) or record.id
    return ""


def as_reserved(report: checks.CmaBootReport, expectation: Expectation) -> checks.CmaBootReport:
    """``report`` with the default area at the size the kernel reserved, not the size it printed.

    Since 6.15, cma_declare_contiguous_nid() (mm/cma.c) prints the size it was
    asked for while __cma_declare_contiguous_nid() reserves it rounded up to
    the pageblock (CMA_MIN_ALIGNMENT_BYTES): ``cma=5M`` logs "Reserved 5 MiB"
    and CmaTotal shows 8 MiB.  When the oracle predicted exactly that (its
    ``printed_size``) and the log agrees, the checks that compare what the
    guest sees with the boot log (CmaTotal, cma-dev's areas, debugfs) use the
    oracle's rounded ``size``; otherwise ``report`` is returned as it is.
    """
    prediction = expectation.prediction
    if (prediction is None or prediction.printed_size is None or prediction.outcome != "reserved"
            or len(report.reserved) != 1 or report.reserved[0].size_mib != prediction.printed_size >> 20):
        return report
    default = replace(report.reserved[0], size_mib=prediction.size >> 20)
    return replace(report, reserved=[default])


def judge(log: bytes, job: CellJob, ending: Ending | None = None, log_path: Path = Path("console.log"),
          reservation: ReservationCheck | None = None) -> CellResult:
    """Every testcase of ``job``'s cell from its console ``log`` (see the module docstring).

    ``ending``: how the guest stopped (the live driver's record); None to infer
    it from the log.  ``reservation``: judges ``cma-reservation`` instead of the
    job's expectation.  The result's ``log`` is ``log_path``; its mark is none
    (xfail and retries are the runner's).
    """
    transcript = parse_log(log, job.nonce)
    ending = ending or infer_ending(transcript, job.script())
    argv = list(ending.qemu_argv)
    shell = transcript.steps.get(SHELL_STEP)
    if shell is None or not shell.complete:
        results = [boot_error("boot", stop_error(ending, transcript), argv, ending.host),
                   checks.check_kernel_log(transcript.records)]
        return CellResult(job.cell, results, log_path, ending.seconds, ending=ending)
    boot = ending.boot_seconds if ending.boot_seconds is not None else shell.end or 0.0
    at_boot = transcript.records_before(shell.stop)
    report = checks.parse_cma_lines(at_boot)
    results = [CheckResult("boot", Status.PASS, f"shell after {boot:.2f}s", seconds=boot),
               (reservation or job.expectation)(report, at_boot)]
    report = as_reserved(report, job.expectation)
    ev = Evidence()
    try:
        read_steps(Replay(transcript, ending), job.cell, report, ev)
    except BootError as exc:
        record_stop(ev, exc, argv, ending.host)
    results += evaluate(job.cell, report, ev, transcript.records)
    areas = tuple(AreaInfo(a.name, a.base, a.size) for a in ev.areas or [])
    return CellResult(job.cell, results, log_path, ending.seconds, boot, areas=areas,
                      suites=tuple(ev.suite_runs), cma=_cma_facts(report, ev.meminfo), ending=ending)

"""The typed result of one cell, and the one function that flattens it to JUnit properties.

A :class:`CellResult` carries what the cell measured as typed fields: the CMA
areas cma-dev listed (:class:`AreaInfo`), each suite run with its counters
before and after and its measurements (:class:`SuiteRun`), what the boot log
and /proc/meminfo said of the default area (:class:`CmaFacts`), the boot time
and a :class:`Mark` (xfail, xpass, flaky, retried).  :func:`cell_properties`
is the only place that turns them into ``name=value`` strings; its keys and
values are those the harness always wrote (``compare`` reads old runs).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from harness.boards import read_input_text
from harness.checks import CheckResult, Measurement, measurement_dict
from harness.codec import Fields, cell_from_dict, cell_to_dict, check_from_dict, check_schema, check_to_dict
from harness.errors import InputError
from harness.matrix import Cell
from harness.outcome import Status, worst

RESULT_KIND, RESULT_SCHEMA = "cma-harness cell result", 1
XFAIL_AS_EXPECTED = "failed as expected"  # the xfail.outcome property of an xfail cell that failed
XPASS = "xpass"
LATENCY = "latency_us"
_STATS = ("min", "median", "max", "n")


class Mark(StrEnum):
    """How the runner qualified a cell's outcome."""

    NONE = "none"
    XFAIL = "xfail"  # marked xfail and failed: its failures are reported as skipped
    XPASS = "xpass"  # marked xfail but passed: the mark is stale (a failing ``xfail`` testcase)
    FLAKY = "flaky"  # failed, then passed on a retry
    RETRIED = "retried"  # failed on every attempt


@dataclass(frozen=True)
class AreaInfo:
    """A CMA area as cma-dev listed it: physical ``base`` and ``size`` in bytes."""

    name: str
    base: int
    size: int


@dataclass(frozen=True)
class SuiteRun:
    """One suite run on one CMA area.

    Attributes:
        path: its testcase path, ``cma-test/<suite>`` or ``cma-test@<area>/<suite>``.
        seconds: how long the suite's command ran.
        before: ``cma-counters`` before it, ``{"<area>.<counter>": value as printed}``
            (pages, or a count for ``alloc_pages_success``/``_fail``).
        after: the same after it.
        measurements: what its tests measured (KTAP diagnostics), in order.
    """

    path: str
    seconds: float
    before: dict[str, str] = field(default_factory=dict)
    after: dict[str, str] = field(default_factory=dict)
    measurements: tuple[Measurement, ...] = ()

    def latencies(self) -> dict[str, dict[str, int]]:
        """``{"<test>": {"min"|"median"|"max"|"n": µs or count}}`` of its ``latency_us`` measurements."""
        out: dict[str, dict[str, int]] = {}
        for m in self.measurements:
            stat = m.key.removeprefix(f"{LATENCY}.")
            if m.key.startswith(f"{LATENCY}.") and stat in _STATS and m.value.isdigit():
                out.setdefault(m.test, {})[stat] = int(m.value)
        return out


@dataclass(frozen=True)
class CmaFacts:
    """What the boot log and /proc/meminfo said of the CMA areas.

    Attributes:
        reserved_mib: MiB of every area the boot log announced (default and DT pools).
        base: physical base of the default area, if it was reserved.
        failed_mib: the MiB of ``cma: Failed to reserve``, if the kernel printed it.
        cma_total_kb: /proc/meminfo's CmaTotal (kB), None if never read.
        cma_free_kb: /proc/meminfo's CmaFree (kB), None if never read.
    """

    reserved_mib: int
    base: int | None = None
    failed_mib: int | None = None
    cma_total_kb: int | None = None
    cma_free_kb: int | None = None


class EndKind(StrEnum):
    """How the guest stopped."""

    POWEROFF = "poweroff"  # every step ran, then the guest was powered off
    GONE = "gone"  # QEMU exited (a panic, or killed) before the last step ended
    TIMEOUT = "timeout"  # a step did not end within its budget


@dataclass(frozen=True)
class Ending:
    """What the console log alone cannot show of a cell: how its guest stopped, and the host's clock.

    Attributes:
        kind: see :class:`EndKind`.
        step: the innermost step the guest stopped in ("" after poweroff).
        budget_seconds: for a timeout, the budget that ran out (seconds, scaled).
        host: why the host ended the guest, e.g. ``QEMU was killed by SIGKILL``
            ("" when it did not): the cell's error is then infrastructure.
        boot_seconds: QEMU start to the shell's first answer (host clock), None if never.
        seconds: wall time of the whole cell.
        qemu_argv: QEMU's command line, for error details.
    """

    kind: EndKind
    step: str = ""
    budget_seconds: float = 0.0
    host: str = ""
    boot_seconds: float | None = None
    seconds: float = 0.0
    qemu_argv: tuple[str, ...] = ()


@dataclass
class CellResult:
    """The outcome of one cell.

    Attributes:
        cell: the matrix cell.
        checks: one result per check, in the order run.
        log: the console log file (every byte QEMU printed).
        seconds: wall time of the whole cell, boot to QEMU exit.
        boot_seconds: QEMU start to the first shell prompt, or None.
        extra: properties no typed field holds (written first, as given).
        areas: the CMA areas cma-dev listed.
        suites: the suite runs, in order.
        cma: the boot's CMA facts; None when the guest never booted.
        mark: see :class:`Mark`.
        attempts: how many times the cell ran (``--retries``).
        ending: how its guest stopped (None: not booted, or not recorded).
    """

    cell: Cell
    checks: list[CheckResult]
    log: Path
    seconds: float
    boot_seconds: float | None = None
    extra: dict[str, str] = field(default_factory=dict)
    areas: tuple[AreaInfo, ...] = ()
    suites: tuple[SuiteRun, ...] = ()
    cma: CmaFacts | None = None
    mark: Mark = Mark.NONE
    attempts: int = 1
    ending: Ending | None = None

    @property
    def status(self) -> Status:
        """The worst status of its checks; ERROR for none at all."""
        return worst(c.status for c in self.checks)

    @property
    def properties(self) -> dict[str, str]:
        """:func:`cell_properties` of this result (a new dict each time)."""
        return cell_properties(self)

    def to_json(self, relative_to: Path | None = None) -> str:
        """The result as JSON text; the log path is written relative to ``relative_to`` if under it."""
        return json.dumps(result_to_dict(self, relative_to), indent=1) + "\n"

    @classmethod
    def load(cls, path: Path) -> CellResult:
        """Read a result file written by :meth:`to_json`; a relative log path resolves beside it.

        Raises:
            InputError: unreadable, not JSON, not a result of this schema, or a bad field.
        """
        try:
            data = json.loads(read_input_text(path, "cell result"))
        except ValueError as exc:
            raise InputError(f"{path}: not JSON: {exc}") from exc
        return result_from_dict(data, str(path), path.parent)


def _suite_properties(run: SuiteRun) -> dict[str, str]:
    props = {**measurement_dict(run.measurements), f"{run.path}.seconds": f"{run.seconds:.3f}"}
    props.update({f"{run.path}.before.{k}": v for k, v in run.before.items()})
    props.update({f"{run.path}.after.{k}": v for k, v in run.after.items()})
    return props


def _cma_properties(cma: CmaFacts) -> dict[str, str]:
    props = {"cma.reserved_mib": str(cma.reserved_mib),
             "meminfo.CmaTotal_kB": "" if cma.cma_total_kb is None else str(cma.cma_total_kb),
             "meminfo.CmaFree_kB": "" if cma.cma_free_kb is None else str(cma.cma_free_kb)}
    if cma.base is not None:
        props["cma.base"] = f"{cma.base:#x}"
    if cma.failed_mib is not None:
        props["cma.failed_mib"] = str(cma.failed_mib)
    return props


def _mark_properties(result: CellResult) -> dict[str, str]:
    if result.mark in (Mark.XFAIL, Mark.XPASS):
        outcome = XFAIL_AS_EXPECTED if result.mark is Mark.XFAIL else XPASS
        return {"xfail": result.cell.xfail, "xfail.outcome": outcome}
    if result.mark is Mark.FLAKY:
        return {"retry.attempts": str(result.attempts), "retry.flaky": "true"}
    if result.mark is Mark.RETRIED:
        return {"retry.attempts": str(result.attempts)}
    return {}


def cell_properties(result: CellResult) -> dict[str, str]:
    """Every measurement of ``result`` as JUnit ``<properties>``, in the order they are written.

    ``extra``; ``area.<name>.base`` (hex) and ``.size`` (bytes); per suite run its
    measurements (``<test>.latency_us.min``...), ``<path>.seconds`` (3 decimals),
    ``<path>.before.<area>.<counter>`` and ``.after.``; ``cma.reserved_mib``,
    ``meminfo.CmaTotal_kB``/``CmaFree_kB`` (empty if never read), ``cma.base``,
    ``cma.failed_mib``; ``xfail`` and ``xfail.outcome`` (``failed as expected`` or
    ``xpass``) or ``retry.attempts`` and ``retry.flaky=true``; ``boot.seconds``.
    """
    props = dict(result.extra)
    for area in result.areas:
        props[f"area.{area.name}.base"] = f"{area.base:#x}"
        props[f"area.{area.name}.size"] = str(area.size)
    for run in result.suites:
        props.update(_suite_properties(run))
    if result.cma is not None:
        props.update(_cma_properties(result.cma))
    props.update(_mark_properties(result))
    if result.boot_seconds is not None:
        props["boot.seconds"] = f"{result.boot_seconds:.3f}"
    return props


def _suite_to_dict(run: SuiteRun) -> dict[str, Any]:
    return {"path": run.path, "seconds": run.seconds, "before": run.before, "after": run.after,
            "measurements": [[m.test, m.key, m.value] for m in run.measurements]}


def _suite_from_dict(f: Fields) -> SuiteRun:
    raw = f.data.get("measurements", [])
    if not isinstance(raw, list) or not all(isinstance(m, list) and len(m) == 3 and
                                            all(isinstance(x, str) for x in m) for m in raw):
        raise InputError(f"{f.where}: 'measurements' must be a list of [test, key, value] strings")
    return SuiteRun(f.text("path"), f.number("seconds"), f.string_map("before"), f.string_map("after"),
                    tuple(Measurement(*m) for m in raw))


def _cma_from_dict(f: Fields) -> CmaFacts:
    def opt(key: str) -> int | None:
        return None if f.data.get(key) is None else f.integer(key)
    return CmaFacts(f.integer("reserved_mib"), opt("base"), opt("failed_mib"), opt("cma_total_kb"),
                    opt("cma_free_kb"))


def result_to_dict(result: CellResult, relative_to: Path | None = None) -> dict[str, Any]:
    """``result`` as a JSON-ready dict (:func:`result_from_dict` reads it back equal)."""
    log = result.log
    if relative_to is not None and log.is_relative_to(relative_to):
        log = log.relative_to(relative_to)
    return {"kind": RESULT_KIND, "schema": RESULT_SCHEMA, "cell": cell_to_dict(result.cell),
            "checks": [check_to_dict(c) for c in result.checks], "log": str(log),
            "seconds": result.seconds, "boot_seconds": result.boot_seconds, "extra": result.extra,
            "areas": [vars(a).copy() for a in result.areas],
            "suites": [_suite_to_dict(r) for r in result.suites],
            "cma": None if result.cma is None else vars(result.cma).copy(),
            "mark": result.mark.value, "attempts": result.attempts,
            "ending": None if result.ending is None else ending_to_dict(result.ending)}


def result_from_dict(data: object, where: str, base_dir: Path) -> CellResult:
    """The inverse of :func:`result_to_dict`; a relative log path resolves in ``base_dir``.

    Raises:
        InputError: not a result of this schema, or a missing or mistyped field.
    """
    f = Fields(data, where)
    check_schema(f, RESULT_KIND, RESULT_SCHEMA)
    try:
        mark = Mark(f.text("mark"))
    except ValueError as exc:
        raise InputError(f"{where}: 'mark' must be one of {', '.join(Mark)}") from exc
    log = Path(f.text("log"))
    return CellResult(
        cell_from_dict(f.obj("cell")), [check_from_dict(c) for c in f.objects("checks")],
        log if log.is_absolute() else base_dir / log, f.number("seconds"), f.optional_number("boot_seconds"),
        f.string_map("extra"),
        tuple(AreaInfo(a.text("name"), a.integer("base"), a.integer("size")) for a in f.objects("areas")),
        tuple(_suite_from_dict(s) for s in f.objects("suites")),
        None if f.data.get("cma") is None else _cma_from_dict(f.obj("cma")), mark, f.integer("attempts"),
        None if f.data.get("ending") is None else ending_from_dict(f.obj("ending")))


def ending_to_dict(ending: Ending) -> dict[str, Any]:
    """An ending as a JSON object (:func:`ending_from_dict` reads it back equal)."""
    return {**vars(ending), "kind": ending.kind.value, "qemu_argv": list(ending.qemu_argv)}


def ending_from_dict(f: Fields) -> Ending:
    """The inverse of :func:`ending_to_dict`.

    Raises:
        InputError: a missing or mistyped field.
    """
    try:
        kind = EndKind(f.text("kind"))
    except ValueError as exc:
        raise InputError(f"{f.where}: 'kind' must be one of {', '.join(EndKind)}") from exc
    return Ending(kind, f.text("step", ""), f.number("budget_seconds"), f.text("host", ""),
                  f.optional_number("boot_seconds"), f.number("seconds"), f.strings("qemu_argv"))

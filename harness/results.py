"""Results: JUnit XML (built with junitparser), the terminal summary, the results directory.

JUnit is built at the edge from :class:`harness.cell.CellResult`: one
``<testsuite>`` per matrix cell named ``board:cmdline``, one ``<testcase>`` per
check; a check that disagreed is a ``<failure>``, trouble getting evidence an
``<error>``; provenance goes to ``<properties>``, the console log to the
suite's ``<system-out>``.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import math
import os
import re
import secrets
import shutil
import socket
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from junitparser import Error, Failure, JUnitXml, Skipped, SystemOut, TestCase, TestSuite
from rich.console import Console as RichConsole
from rich.table import Table

from harness.boards import read_input_text
from harness.cache import atomic_write, sync_dir
from harness.cellresult import XFAIL_AS_EXPECTED, XPASS, CellResult, Mark
from harness.checks import Status
from harness.compare import INFRASTRUCTURE_ERROR, parse_junit
from harness.errors import EnvironmentProblem, InputError

# XML 1.0 forbids most C0 control characters; console logs hold some (escape
# sequences of the shell's line editor).  Lone surrogates (a path's undecodable
# bytes, as Python's file system encoding keeps them) are no characters at all.
_XML_INVALID = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_MAX_LOG_CHARS = 2_000_000
# A subset of junit-10.xsd's SUREFIRE_TIME (the type of a testsuite's ``time``).
_SCHEMA_TIME = re.compile(r"[0-9]*(?:\.[0-9]{0,3})?")


def xml_safe(text: str) -> str:
    """``text`` with characters XML 1.0 cannot carry replaced by ``?``... or dropped (ESC)."""
    return _XML_INVALID.sub(lambda m: "" if m.group(0) == "\x1b" else "?", text)


@dataclass(frozen=True)
class Provenance:
    """Where a run's results came from; every suite carries these as properties."""

    kernel_release: str
    kernel_source: str
    series_hash: str
    config_hash: str
    toolchain: str
    qemu: str

    def as_properties(self) -> dict[str, str]:
        """The JUnit properties: ``kernel.release``, ``kernel.source``, ``series.hash``... ``qemu``."""
        return {
            "kernel.release": self.kernel_release, "kernel.source": self.kernel_source,
            "series.hash": self.series_hash, "config.hash": self.config_hash,
            "toolchain": self.toolchain, "qemu": self.qemu,
        }


def _schema_time(elem: Any) -> None:
    """Give ``elem`` a ``time`` junit-10.xsd accepts: at most 3 decimals, no sign or exponent.

    An unreadable or non-finite time is dropped (the attribute is optional).
    """
    text = elem.get("time")
    if text is None or _SCHEMA_TIME.fullmatch(text):
        return
    try:
        value = float(text.replace(",", ""))
    except ValueError:
        value = math.nan
    if math.isfinite(value):
        elem.set("time", f"{max(value, 0.0):.3f}")
    else:
        del elem.attrib["time"]


def _hoist_case_properties(suite: Any) -> None:
    """Move each testcase's ``<properties>`` to its suite as ``testcase.<case>.<name>``.

    junit-10.xsd has no ``<properties>`` in a ``<testcase>`` (other tools write a
    ``flaky`` marker there; :mod:`harness.compare` reads it back from either place).
    """
    moved = []
    for case in suite.findall("testcase"):
        for props in case.findall("properties"):
            case.remove(props)
            moved += [(f"testcase.{case.get('name', '')}.{p.get('name', '')}", p.get("value", ""))
                      for p in props.findall("property")]
    if not moved:
        return
    target = suite.find("properties")
    if target is None:
        target = suite.makeelement("properties", {})
        suite.insert(0, target)
    for name, value in moved:
        target.append(target.makeelement("property", {"name": name, "value": value}))


def junit_bytes(xml: JUnitXml) -> bytes:
    """``xml`` as pretty-printed UTF-8 bytes, ready for :func:`harness.cache.atomic_write`.

    Made valid for the Jenkins xunit plugin's junit-10.xsd, in place: the
    ``skipped`` attribute is removed from ``<testsuites>`` (junitparser's
    ``update_statistics`` sets it, the schema only allows it on ``<testsuite>``),
    a ``time`` of the root or a suite with more than 3 decimals (or in exponent
    form) is rounded, and testcase ``<properties>`` (from a merged file) move to
    their suite (:func:`_hoist_case_properties`).  ``tests``, ``failures`` and
    ``errors`` stay as the caller left them (call ``update_statistics`` first).
    """
    root = xml._elem  # junitparser has no API to delete an attribute or move an element
    root.attrib.pop("skipped", None)
    suites = list(root.iter("testsuite"))
    for elem in [root, *suites]:
        _schema_time(elem)
    for suite in suites:
        _hoist_case_properties(suite)
    buffer = io.BytesIO()
    xml.write(buffer, pretty=True)
    return buffer.getvalue()


def update_totals(xml: JUnitXml) -> None:
    """Recount every suite's and the root's tests, failures, errors and skips from their testcases.

    Each suite keeps its own ``time`` (a cell's wall time, in seconds: junitparser's
    ``update_statistics`` would replace it with the sum of its testcases' times, which
    leaves out everything between checks); the root's is the sum of the suites'.
    """
    wall = [suite.time for suite in xml]  # the attribute when set, else junitparser's sum
    xml.update_statistics()
    total = 0.0
    for suite, seconds in zip(xml, wall, strict=True):
        if seconds is not None:
            suite.time = seconds
        total += float(suite.time or 0.0)
    xml.time = round(total, 3)


def single_suite(suite: TestSuite) -> bytes:
    """A ``<testsuites>`` document holding only ``suite``, as :func:`junit_bytes`."""
    xml = JUnitXml("cma-harness")
    xml.add_testsuite(suite)
    update_totals(xml)
    return junit_bytes(xml)


# JUnit <error> types: the guest misbehaved (a verdict on the kernel), or the host
# ended it (a verdict on the machine, worth a retry elsewhere).
GUEST_ERROR = "GuestError"


def _testcase(suite_name: str, check_name: str, status: Status, message: str,
              details: str, seconds: float, infrastructure: bool = False) -> TestCase:
    case = TestCase(xml_safe(check_name), classname=xml_safe(suite_name), time=round(seconds, 3))
    if status is Status.FAIL:
        case.result = [Failure(xml_safe(message), type_="CheckFailed")]
    elif status is Status.ERROR:
        case.result = [Error(xml_safe(message),
                             type_=INFRASTRUCTURE_ERROR if infrastructure else GUEST_ERROR)]
    elif status is Status.SKIP:
        case.result = [Skipped(xml_safe(message))]
    if status in (Status.FAIL, Status.ERROR) and details:
        case.result[0].text = xml_safe(details)
    elif details or message:
        case.system_out = xml_safe(f"{message}\n{details}".strip())
    return case


def cell_testsuite(result: CellResult, provenance: Provenance, full_cmdline: str,
                   timestamp: dt.datetime) -> TestSuite:
    """The ``<testsuite>`` of one finished cell: properties, one testcase per check, the log.

    ``full_cmdline`` is the whole kernel command line the guest booted with;
    the console log (read from ``result.log``) goes to ``<system-out>``,
    truncated to its last 2,000,000 characters.
    """
    suite = TestSuite(xml_safe(result.cell.name))
    suite.timestamp = timestamp.isoformat(timespec="seconds")
    suite.hostname = socket.gethostname()
    suite.time = round(result.seconds, 3)
    expect = result.cell.expect.describe() if result.cell.expect else "cma= oracle"
    props = {"board": result.cell.board, "cmdline": result.cell.cmdline,
             "kernel.cmdline": full_cmdline, "expect.cma": expect,
             **provenance.as_properties(), **result.properties}
    for key, value in props.items():
        suite.add_property(xml_safe(key), xml_safe(value))
    for check in result.checks:
        suite.add_testcase(_testcase(result.cell.name, check.name, check.status,
                                     check.message, check.details, check.seconds, check.infrastructure))
    if not result.checks:  # a cell that produced nothing is an error, never an empty green suite
        suite.add_testcase(_testcase(result.cell.name, "checks", Status.ERROR,
                                     "the cell produced no check result", "", result.seconds))
    log = result.log.read_bytes().decode("utf-8", errors="replace").replace("\r", "")
    if len(log) > _MAX_LOG_CHARS:
        log = f"[console log truncated; full log: {result.log.name}]\n" + log[-_MAX_LOG_CHARS:]
    suite.append(SystemOut(xml_safe(log)))
    suite.update_statistics()
    suite.time = round(result.seconds, 3)  # the cell's wall time, not the sum of its checks
    return suite


def build_junit(cells: Sequence[CellResult], provenance: Provenance, full_cmdlines: dict[str, str],
                timestamp: dt.datetime) -> JUnitXml:
    """One ``<testsuites>`` document for a whole run (one ``<testsuite>`` per cell)."""
    xml = JUnitXml("cma-harness")
    for result in cells:
        xml.add_testsuite(cell_testsuite(result, provenance, full_cmdlines.get(result.cell.name, ""),
                                         timestamp))
    update_totals(xml)
    return xml


def cell_metrics(result: CellResult) -> dict[str, object]:
    """The CMA metrics of one cell for ``metrics.json``, from its typed fields.

    Shape: ``{"board", "cmdline", "status", "seconds", "boot_seconds",
    "areas": {name: {"base": "0x..", "size": bytes}}, "reserved_mib",
    "counters": {"<suite>.<before|after>.<area>.<counter>": int},
    "latency_us": {"<suite>": {"min", "median", "max", "n"}}, "xfail", "flaky"}``;
    latencies in microseconds, sizes in bytes (``reserved_mib`` in MiB).
    Counters are those of cma-test's suite runs that read as integers.
    """
    areas: dict[str, dict[str, object]] = {a.name: {"base": f"{a.base:#x}", "size": a.size}
                                           for a in result.areas}
    counters: dict[str, int] = {}
    latency: dict[str, dict[str, int]] = {}
    for run in result.suites:
        if run.path.startswith("cma-test"):
            for when, readings in (("before", run.before), ("after", run.after)):
                counters.update({f"{run.path}.{when}.{k}": int(v)
                                 for k, v in readings.items() if v.isdigit()})
        for test, stats in run.latencies().items():
            latency.setdefault(test, {}).update(stats)
    return {
        "board": result.cell.board, "cmdline": result.cell.cmdline, "status": result.status.value,
        "seconds": round(result.seconds, 3), "boot_seconds": result.boot_seconds,
        "reserved_mib": result.cma.reserved_mib if result.cma is not None else None,
        "areas": areas, "counters": counters, "latency_us": latency,
        "xfail": {Mark.XFAIL: XFAIL_AS_EXPECTED, Mark.XPASS: XPASS}.get(result.mark),
        "flaky": result.mark is Mark.FLAKY,
    }


def previous_seconds(root: Path) -> dict[str, float]:
    """Seconds each cell took in ``root/latest`` (its metrics.json), by slug; ``{}`` if none."""
    try:
        metrics = json.loads((root / "latest" / "metrics.json").read_text())
        return {slug: float(m["seconds"]) for slug, m in metrics.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def save(path: Path, data: bytes) -> None:
    """:func:`harness.cache.atomic_write`; an OSError becomes an EnvironmentProblem naming ``path``.

    Raises:
        EnvironmentProblem: ``cannot write <path>: <reason> (nothing half written was left)``.
    """
    try:
        atomic_write(path, data)
    except OSError as exc:
        raise EnvironmentProblem(f"cannot write {path}: {exc.strerror or exc} "
                                 "(nothing half written was left)") from exc


def _write_json(path: Path, data: object) -> None:
    save(path, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode())


def point_latest(root: Path, run_id: str) -> None:
    """Point the symlink ``root/latest`` at ``run_id`` (a relative target) atomically.

    The new link is made under a unique hidden name in ``root`` and renamed
    onto ``latest`` (``os.replace``), so ``latest`` never goes missing and two
    runs finishing at once never collide: the last rename wins.  A ``latest``
    that is a real directory or file (CI replaces the link by the run's copy)
    is left alone.

    Raises:
        OSError: the link cannot be made in ``root`` (the temporary link is removed).
    """
    latest = root / "latest"
    if latest.exists() and not latest.is_symlink():
        return
    tmp = root / f".latest.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    tmp.symlink_to(run_id)
    try:
        os.replace(tmp, latest)
    except IsADirectoryError:  # a directory appeared as ``latest`` meanwhile: leave it
        pass
    finally:
        tmp.unlink(missing_ok=True)
    sync_dir(root)


def check_results_root(root: Path) -> None:
    """Refuse a results root that a run could not write into, before anything is built.

    The nearest existing one of ``root`` and its parents must be a directory
    in which a directory can be made: a temporary one is made there and
    removed at once, so nothing is left behind (and ``root`` is not created).

    Raises:
        InputError: ``<root>: <ancestor> is not a directory`` (e.g. ``-o`` names
            an existing file, or a path under one), or ``<root>: cannot write
            results there: <reason>`` (read-only, no permission, a dangling link).
    """
    existing = next((p for p in (root, *root.parents) if os.path.lexists(p)), Path("."))
    if not existing.is_dir():
        what = "not a directory" if existing.exists() else "a dangling symbolic link"
        where = f"{root}: " + ("" if existing == root else f"{existing} is ")
        raise InputError(f"{where}{what}; results need a directory")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".cma-harness-probe-", dir=existing))
    except OSError as exc:
        raise InputError(f"{root}: cannot write results there: {exc.strerror or exc}") from exc


def exit_status(cells: Sequence[CellResult]) -> int:
    """0 when every cell met its expectation, 1 otherwise (a failure or error in a check)."""
    if not cells:
        return 2
    return 0 if all(c.status in (Status.PASS, Status.SKIP) for c in cells) else 1


def exit_status_of_run(run_dir: Path) -> int:
    """0 when the run's junit.xml has no failure and no error, else 1 (for resumed runs).

    Counts the ``<failure>``/``<error>`` elements (not the count attributes);
    a junit.xml holding no testcase is 1.

    Raises:
        InputError: junit.xml unreadable or corrupt.
    """
    cases = [case for suite in parse_junit(run_dir / "junit.xml") for case in suite]
    if not cases:
        return 1
    return 1 if any(isinstance(r, (Failure, Error)) for case in cases for r in case.result) else 0


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable or corrupt JSON: {exc}") from exc


def _cma_column(result: CellResult) -> str:
    cma = result.cma
    if cma is None:
        return "?"
    if cma.failed_mib is not None:
        return f"failed ({cma.failed_mib} MiB)"
    if cma.reserved_mib == 0:
        return "none"
    return f"{cma.reserved_mib} MiB @ {f'{cma.base:#x}' if cma.base is not None else '?'}"


def print_summary(cells: Sequence[CellResult], out: RichConsole, results_dir: Path | None) -> None:
    """A one-screen table: one row per cell."""
    table = Table(title="cma-harness summary", show_lines=False)
    for col in ("cell", "result", "checks", "boot", "CMA", "first problem"):
        table.add_column(col, overflow="fold")
    style = {Status.PASS: "green", Status.SKIP: "yellow", Status.FAIL: "red", Status.ERROR: "red"}
    for r in cells:
        passed = sum(c.status is Status.PASS for c in r.checks)
        skipped = sum(c.status is Status.SKIP for c in r.checks)
        bad = next((c for c in r.checks if c.status in (Status.FAIL, Status.ERROR)), None)
        verdict = f"[{style[r.status]}]{r.status.value.upper()}[/]"
        if r.mark is Mark.XFAIL:
            verdict = "[yellow]XFAIL[/]"
        elif r.mark is Mark.FLAKY:
            verdict = f"[yellow]FLAKY ({r.attempts} attempts)[/]"
        table.add_row(
            r.cell.name, verdict,
            f"{passed}/{len(r.checks) - skipped}" + (f" ({skipped} skipped)" if skipped else ""),
            f"{r.boot_seconds:.1f}s" if r.boot_seconds is not None else "-",
            _cma_column(r), f"{bad.name}: {bad.message}"[:120] if bad else "",
        )
    out.print(table)
    n_ok = sum(r.status in (Status.PASS, Status.SKIP) for r in cells)
    out.print(f"{n_ok}/{len(cells)} cells met their expectation"
              + (f"; results in {results_dir}" if results_dir else ""))


_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _field_error(where: Path, field: str, rule: str) -> InputError:
    return InputError(f"--resume {where}: '{field}' must be {rule}")


def _check_run_info(info: dict[str, object], where: Path) -> None:
    """Check what :class:`ResultsDir` takes from a run.json: ``run_id``, ``timestamp``, ``kernels``.

    Raises:
        InputError: ``--resume <where>: '<field>' must be ...``.
    """
    if not isinstance(info.get("run_id"), str) or not _RUN_ID.fullmatch(str(info["run_id"])):
        raise _field_error(where, "run_id", "a plain name ([A-Za-z0-9._-]+)")
    try:
        dt.datetime.fromisoformat(str(info["timestamp"]))
    except (KeyError, ValueError) as exc:
        raise _field_error(where, "timestamp", "an ISO 8601 date and time") from exc
    kernels = info.get("kernels", {})
    if not isinstance(kernels, dict) or not all(isinstance(k, dict) for k in kernels.values()):
        raise _field_error(where, "kernels", "a table of tables")


def resume_invocation(info: dict[str, object], run_dir: Path) -> dict[str, Any]:
    """The ``invocation`` table of a run.json (from :meth:`ResultsDir.unfinished`), its fields checked.

    ``kernel_src`` and ``series`` are non-empty strings (paths), ``patches`` a
    list of strings (default empty), ``board`` and ``cmdline`` a string or null.

    Raises:
        InputError: ``--resume <run_dir>/run.json: 'invocation.<field>' must be ...``.
    """
    where = run_dir / "run.json"
    run = info.get("invocation")
    if not isinstance(run, dict):
        raise _field_error(where, "invocation", "a table")
    for key in ("kernel_src", "series"):
        if not isinstance(run.get(key), str) or not run[key]:
            raise _field_error(where, f"invocation.{key}", "a non-empty string (a path)")
    patches = run.get("patches", [])
    if not isinstance(patches, list) or not all(isinstance(x, str) for x in patches):
        raise _field_error(where, "invocation.patches", "a list of paths")
    for key in ("board", "cmdline"):
        if run.get(key) is not None and not isinstance(run[key], str):
            raise _field_error(where, f"invocation.{key}", "a string or null")
    return run


class ResultsDir:
    """A run's results directory: written cell by cell, published when complete.

    Layout of ``<root>/<run-id>/``: ``run.json`` (provenance: run id,
    timestamp, kernel source and version, series and per-patch hashes, config
    hashes, toolchain, QEMU, the command), ``boards/*.toml`` and ``matrix.toml``
    (copies of what was used), ``cells/<cell>.xml`` and ``cells/<cell>.json``
    (each finished cell's testsuite and CMA metrics, written the moment it
    finishes, atomically), ``logs/<cell>.log``, and at the end ``junit.xml``
    and ``metrics.json`` assembled from the cells.  While running it is
    ``<root>/.<run-id>.partial``; an interrupted run (Ctrl-C, a crash, a full
    disk) keeps it, with every finished cell, for ``run --resume``.
    ``<root>/latest`` points at the newest complete run.
    """

    def __init__(self, root: Path, resume: Path | None = None) -> None:
        """A new run directory under ``root``, or the unfinished one ``resume`` to complete.

        Raises:
            InputError: ``resume`` is not an unfinished run directory.
        """
        if resume is not None:
            info = self.unfinished(resume)
            self.run_id = str(info["run_id"])
            self.timestamp = dt.datetime.fromisoformat(str(info["timestamp"]))
            self.root = resume.parent
            self.partial = resume
        else:
            stamp = dt.datetime.now(dt.UTC)
            self.timestamp = stamp
            self.run_id = stamp.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)
            self.root = root
            self.partial = root / f".{self.run_id}.partial"
        self.final = self.root / self.run_id
        self.logs = self.partial / "logs"
        self.cells = self.partial / "cells"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.cells.mkdir(exist_ok=True)

    @staticmethod
    def unfinished(path: Path) -> dict[str, object]:
        """The ``run.json`` of the unfinished run directory ``path``, its fields checked.

        ``run_id`` is a plain name, ``timestamp`` an ISO date, ``kernels`` (if
        present) a table of tables; see :func:`resume_invocation` for the rest.

        Raises:
            InputError: ``path`` is missing, already complete, or its run.json is
                missing, not a regular file, not a JSON object, or lacks or
                mistypes one of those fields (the message names the field).
        """
        if not path.is_dir():
            raise InputError(f"--resume {path}: no such directory")
        # A ".partial" directory is unpublished even with its junit.xml written (the
        # harness died before the rename): resuming assembles and publishes it again.
        if (path / "junit.xml").exists() and not path.name.endswith(".partial"):
            raise InputError(f"--resume {path}: the run is already complete")
        try:
            info = json.loads(read_input_text(path / "run.json"))
        except (InputError, ValueError) as exc:
            raise InputError(f"--resume {path}: not an unfinished cma-harness run "
                             f"(run.json unreadable: {exc})") from exc
        if not isinstance(info, dict) or "run_id" not in info:
            raise InputError(f"--resume {path}: run.json has no run_id")
        _check_run_info(info, path / "run.json")
        return info

    def done_cells(self) -> set[str]:
        """Slugs of the cells already written (an interrupted run's finished cells)."""
        return {p.stem for p in self.cells.glob("*.xml")}

    def write_provenance(self, info: dict[str, object], board_files: list[Path], matrix_file: Path) -> None:
        """Write run.json and copies of the board files and the matrix (first thing a run does).

        Every file is written atomically (:func:`harness.cache.atomic_write`).

        Raises:
            InputError: a board file or the matrix cannot be read.
            EnvironmentProblem: a file cannot be written (a full disk...).
        """
        (self.partial / "boards").mkdir(exist_ok=True)
        for source, copy in [*((b, self.partial / "boards" / b.name) for b in board_files),
                             (matrix_file, self.partial / "matrix.toml")]:
            try:
                data = source.read_bytes()
            except OSError as exc:
                raise InputError(f"cannot read {source}: {exc.strerror or exc}") from exc
            save(copy, data)
        _write_json(self.partial / "run.json", {"run_id": self.run_id,
                                                "timestamp": self.timestamp.isoformat(), **info})

    def log_path(self, slug: str) -> Path:
        """Where the console log of the cell ``slug`` is written: ``logs/<slug>.log``."""
        return self.logs / f"{slug}.log"

    def write_cell(self, slug: str, suite: TestSuite, metrics: dict[str, object] | None = None) -> Path:
        """Write one finished cell's testsuite (and metrics) to ``cells/`` atomically.

        ``cells/<slug>.json`` comes first, ``cells/<slug>.xml`` (what marks the
        cell done for ``--resume``) last; each is complete or absent.

        Returns:
            The path of ``cells/<slug>.xml``.

        Raises:
            EnvironmentProblem: a file cannot be written (no partial file is left).
        """
        if metrics is not None:
            _write_json(self.cells / f"{slug}.json", metrics)
        path = self.cells / f"{slug}.xml"
        save(path, single_suite(suite))
        return path

    def finish(self, order: Sequence[str], cells: Sequence[CellResult]) -> Path:
        """Assemble junit.xml and metrics.json from the cells' files (``order``: slugs), publish.

        Points ``cells``' log paths at their final place and ``latest`` at this run
        (:func:`point_latest`).  junit.xml and metrics.json are written atomically.

        Returns:
            The published run directory ``<root>/<run-id>``.

        Raises:
            InputError: a cell file is unreadable or corrupt (named with its position).
            EnvironmentProblem: junit.xml or metrics.json cannot be written.
            OSError: the directory cannot be renamed.
        """
        xml = JUnitXml("cma-harness")
        metrics = {}
        for slug in order:
            for suite in parse_junit(self.cells / f"{slug}.xml"):
                xml.add_testsuite(suite)
            mfile = self.cells / f"{slug}.json"
            if mfile.is_file():
                metrics[slug] = _read_json(mfile)
        update_totals(xml)
        _write_json(self.partial / "metrics.json", metrics)
        save(self.partial / "junit.xml", junit_bytes(xml))
        self.partial.rename(self.final)
        sync_dir(self.root)
        for c in cells:
            c.log = self.final / "logs" / c.log.name
        point_latest(self.root, self.run_id)
        return self.final

    def discard(self) -> None:
        """Remove the run directory (nothing was run: bad input before the first cell)."""
        shutil.rmtree(self.partial, ignore_errors=True)

"""One step of a bisect: build a kernel, boot the predicate's cells, judge, record.

A step reuses the harness as it is: :func:`harness.plan.plan_run` builds the step's
kernel (the kernel tree switches its series in place, so only what the step's
patches touch is rebuilt) for the predicate's cells only, :func:`harness.run.execute`
runs them into a results directory of their own (``steps/NN-<label>/<run-id>/``,
``--repeats`` times), and :func:`harness.bisect.judge_run` reads its junit.xml
(:func:`harness.compare.load_run`).  A patch that does not apply, a kernel that does
not build or configure, is a ``skip`` carrying the reason.  Each step's
:class:`StepRecord` is written to ``steps/NN-<label>/step.json`` the moment it ends.

:class:`BisectProgress` shows steps done and left, the step's patch or commit and an
ETA: a rich progress bar on a terminal, plain lines otherwise.
"""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TaskID, TextColumn

from harness import compare, plan, results, run
from harness.bisect import (
    ABSENT,
    CaseState,
    Judgement,
    Predicate,
    Verdict,
    combine,
    judge_run,
    unmatched_terms,
)
from harness.boards import Board
from harness.errors import BuildError, ConfigError, InputError, PatchError
from harness.matrix import Matrix
from harness.progress import Reporter

STEPS_DIR = "steps"
RECORD = "step.json"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class StepSpec:
    """What a step tests.

    Attributes:
        position: candidates applied (0 the good end, n the bad end); None in the git
            form's middle steps, where git chooses the commit.
        label: the last candidate applied: a patch's name in its series, or a commit's
            hash; the good end's last patch (or ``base``) at position 0.
        subject: the patch's or commit's subject ("" when it has none).
        kernel: what the step's kernel is built from.
        role: ``good end``, ``bad end`` or "" (a step of the search).
        note: what the step's verdict should be read with ("" when nothing), e.g. the
            files a commit's diff left out.
    """

    position: int | None
    label: str
    subject: str
    kernel: plan.KernelInputs
    role: str = ""
    note: str = ""


@dataclass(frozen=True)
class StepRecord:
    """What a step found (``steps/NN-<label>/step.json``).

    Attributes:
        number: 1 for the first step run, then 2, 3...
        position, label, subject, role: the :class:`StepSpec`'s.
        verdict: the step's (:func:`harness.bisect.combine` of its repeats).
        reason: why: the failing testcases, the skip's cause, the repeats' verdicts.
        build_seconds: wall time of the build (or of finding it in the cache).
        run_seconds: wall time of booting the cells, all repeats.
        verdicts: each repeat's verdict, in order (empty when the build failed).
        runs: each repeat's results directory, relative to the bisect's directory.
        cases: the predicate's testcases in the last repeat.
    """

    number: int
    position: int | None
    label: str
    subject: str
    role: str
    verdict: Verdict
    reason: str
    build_seconds: float
    run_seconds: float
    verdicts: tuple[Verdict, ...] = ()
    runs: tuple[str, ...] = ()
    cases: tuple[CaseState, ...] = field(default=())

    @property
    def seconds(self) -> float:
        """Build and boot time together."""
        return self.build_seconds + self.run_seconds

    def to_json(self) -> str:
        """The record as JSON text (enums as their values)."""
        return json.dumps(asdict(self), indent=1, default=str) + "\n"

    @classmethod
    def from_json(cls, text: str, where: Path) -> StepRecord:
        """A record from :meth:`to_json`'s text.

        Raises:
            InputError: not such a record (named by ``where``).
        """
        try:
            data: dict[str, Any] = json.loads(text)
            data["verdict"] = Verdict(data["verdict"])
            data["verdicts"] = tuple(Verdict(v) for v in data["verdicts"])
            data["runs"] = tuple(str(r) for r in data["runs"])
            data["cases"] = tuple(CaseState(**c) for c in data["cases"])
            return cls(**data)
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{where}: not a bisect step record ({exc})") from exc


def step_dirs(bisect_dir: Path) -> list[Path]:
    """The step directories of a bisect, in the order they ran (``steps/NN-...``)."""
    home = bisect_dir / STEPS_DIR
    return sorted(p for p in home.iterdir() if p.is_dir()) if home.is_dir() else []


def load_records(bisect_dir: Path) -> list[StepRecord]:
    """Every finished step's record, in the order they ran.

    Raises:
        InputError: a record that cannot be read.
    """
    out = []
    for directory in step_dirs(bisect_dir):
        path = directory / RECORD
        if path.is_file():
            out.append(StepRecord.from_json(path.read_text(encoding="utf-8"), path))
    return out


def _short(seconds: float) -> str:
    """``42 s`` or ``3.5 min``."""
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


class _StepReporter(Reporter):
    """The build's progress sink during a step: the bar's activity text, or prefixed lines."""

    def __init__(self, owner: BisectProgress, prefix: str) -> None:
        super().__init__(owner.console)
        self._owner, self._prefix = owner, prefix

    def __enter__(self) -> _StepReporter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        return None

    def __call__(self, message: str) -> None:
        if not self._owner.activity(message):
            super().__call__(self._prefix + message)

    def step(self, message: str) -> None:
        """A milestone of the build (kernel ready, initramfs ready): a line of its own."""
        self._owner.note(self._prefix + message)


class BisectProgress:
    """Steps done and left, the current patch or commit, an ETA.

    On a terminal: one rich progress bar (steps done of done + left, the step's label,
    the build's latest line, the ETA); otherwise one line as each step starts and ends,
    and build lines at most every 30 s.  The ETA is the steps left times the mean
    seconds of the steps so far (``previous``: seconds of steps run before, e.g. by
    another process in the git form).
    """

    def __init__(self, console: Console, previous: Sequence[float] = ()) -> None:
        self.console = console
        self.seconds = list(previous)
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> BisectProgress:
        if self.console.is_terminal:
            self._progress = Progress(
                SpinnerColumn(), TextColumn("[bold]bisect"), BarColumn(bar_width=20), MofNCompleteColumn(),
                TextColumn("{task.fields[eta]}"), TextColumn("{task.description}"),
                console=self.console, transient=True)
            self._progress.start()
            self._task = self._progress.add_task("", total=1, eta="")
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.stop()

    def eta(self, left: int) -> str:
        """``ETA 3.5 min`` for the current step and ``left`` more, or ``ETA unknown`` before any step."""
        if not self.seconds:
            return "ETA unknown"
        return f"ETA {_short((left + 1) * sum(self.seconds) / len(self.seconds))}"

    def note(self, line: str) -> None:
        """A line above the bar (or a line of its own)."""
        console = self._progress.console if self._progress is not None else self.console
        console.print(line, markup=False, highlight=False, emoji=False, soft_wrap=True)

    def activity(self, message: str) -> bool:
        """Show ``message`` as the bar's activity; False when there is no bar."""
        if self._progress is None or self._task is None:
            return False
        self._progress.update(self._task, description=message[:80])
        return True

    def begin(self, number: int, left: int, spec: StepSpec) -> Reporter:
        """Announce step ``number`` (``left`` more after it, estimated); the build's progress sink."""
        what = f"{spec.label}" + (f" ({spec.subject})" if spec.subject else "")
        role = f" [{spec.role}]" if spec.role else ""
        self.note(f"bisect step {number}{role}, ~{left} more after it, {self.eta(left)}: {what}")
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, total=len(self.seconds) + 1 + left, completed=len(self.seconds),
                                  eta=self.eta(left), description=spec.label)
        return _StepReporter(self, f"  step {number}: ")

    def end(self, record: StepRecord) -> None:
        """Count a finished step and print its verdict line."""
        self.seconds.append(record.seconds)
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=len(self.seconds))
        self.note(f"  step {record.number}: {record.verdict.upper()} (build {_short(record.build_seconds)}, "
                  f"boot {_short(record.run_seconds)}): {record.reason}")


def _no_host_check(boards: Sequence[Board]) -> None:
    """The host was checked once, before the first step."""


def _why_no_kernel(exc: PatchError | BuildError | ConfigError | InputError) -> str:
    """A skip's reason: the error's line, and a patch's first rejected line."""
    rejected = exc.detail.strip().splitlines() if isinstance(exc, PatchError) else []
    return f"{exc}" + (f" ({rejected[0]})" if rejected else "")


@dataclass(frozen=True)
class Setup:
    """What every step of a bisect shares.

    Attributes:
        predicate: what is judged; its cells are the only ones booted.
        matrix: the matrix the cells come from; boards: their boards, loaded.
        bisect_dir: the bisect's (unpublished) directory: ``steps/`` goes there.
        jobs: guests at once; repeats: runs of each step (both >= 1).
        build: the builder (:func:`harness.plan.prepare`; tests give a fake).
    """

    predicate: Predicate
    matrix: Matrix
    boards: Mapping[str, Board]
    bisect_dir: Path
    jobs: int
    repeats: int
    build: plan.Builder = plan.prepare

    def __post_init__(self) -> None:
        if self.repeats < 1 or self.jobs < 1:
            raise InputError("--repeats and -j/--jobs must be at least 1")


@dataclass
class StepRunner:
    """Runs steps of ``setup`` into its bisect directory, announcing them on ``progress``."""

    setup: Setup
    progress: BisectProgress

    @property
    def bisect_dir(self) -> Path:
        """The bisect's directory."""
        return self.setup.bisect_dir

    @property
    def predicate(self) -> Predicate:
        """The predicate judged."""
        return self.setup.predicate

    def _selection(self, spec: StepSpec, step_dir: Path) -> plan.Selection:
        s = self.setup
        request = plan.RunRequest(s.matrix.path, None, None, spec.kernel, s.jobs, 0, step_dir)
        used = {c.board: s.boards[c.board] for c in s.predicate.cells}
        return plan.Selection(request, s.matrix, s.predicate.cells, used, {})

    def _runs(self, planned: plan.RunPlan, step_dir: Path) -> tuple[list[Verdict], list[str], Judgement]:
        """Run the cells ``repeats`` times (stopping at the first disagreement); the verdicts,
        the run directories (relative to the bisect's) and the last judgement."""
        quiet = Console(file=io.StringIO(), width=160)
        verdicts: list[Verdict] = []
        runs: list[str] = []
        judgement = Judgement(Verdict.SKIP, "not run", ())
        for _ in range(self.setup.repeats):
            run.execute(planned, run.local_executor(planned.request, quiet), quiet, quiet)
            published = (step_dir / "latest").resolve()
            runs.append(str(published.relative_to(self.bisect_dir.resolve())))
            judgement = judge_run(self.predicate, compare.load_run(published, allow_empty=True))
            verdicts.append(judgement.verdict)
            if combine(verdicts) is Verdict.NOISY:
                break
        return verdicts, runs, judgement

    def _start(self, spec: StepSpec, left: int) -> tuple[Path, StepRecord, Reporter]:
        """A new step: its directory (``steps/NN-<label>``), a skip record to fill in, the build's
        progress sink; the step is announced."""
        number = len(step_dirs(self.bisect_dir)) + 1
        label = _UNSAFE.sub("_", spec.label.removesuffix(".patch")).strip("_")[:60]
        step_dir = self.bisect_dir / STEPS_DIR / f"{number:02d}-{label}"
        step_dir.mkdir(parents=True)
        reporter = self.progress.begin(number, left, spec)
        base = StepRecord(number, spec.position, spec.label, spec.subject, spec.role, Verdict.SKIP, "",
                          0.0, 0.0)
        return step_dir, base, reporter

    def _save(self, step_dir: Path, record: StepRecord) -> StepRecord:
        """Write ``record`` to ``step.json`` and count the step done."""
        results.save(step_dir / RECORD, record.to_json().encode())
        self.progress.end(record)
        return record

    def skip(self, spec: StepSpec, reason: str, left: int) -> StepRecord:
        """Record ``spec`` as skipped for ``reason`` without building it (its kernel cannot even be
        described, e.g. the series does not parse for a commit's version); its record."""
        step_dir, base, _reporter = self._start(spec, left)
        return self._save(step_dir, replace(base, reason=reason))

    def run(self, spec: StepSpec, left: int) -> StepRecord:
        """Build, boot and judge ``spec`` (``left``: steps estimated after it); its record, saved.

        Raises:
            HostNotReady, EnvironmentProblem: the host or the cache (the bisect stops).
            KeyboardInterrupt: interrupted.
        """
        step_dir, base, reporter = self._start(spec, left)
        started = time.monotonic()
        try:
            with reporter:
                planned = plan.plan_run(self._selection(spec, step_dir), reporter, _no_host_check,
                                        self.setup.build)
        except (PatchError, BuildError, ConfigError, InputError) as exc:
            return self._save(step_dir, replace(base, reason=_why_no_kernel(exc),
                                                build_seconds=time.monotonic() - started))
        built = time.monotonic()
        verdicts, runs, judgement = self._runs(planned, step_dir)
        verdict = combine(verdicts)
        reason = judgement.reason if verdict is not Verdict.NOISY else (
            f"the same kernel gave {', '.join(verdicts)} on {len(verdicts)} runs; last: {judgement.reason}")
        reason += f"; {spec.note}" if spec.note else ""
        return self._save(step_dir, replace(
            base, verdict=verdict, reason=reason, build_seconds=built - started,
            run_seconds=time.monotonic() - built, verdicts=tuple(verdicts), runs=tuple(runs),
            cases=judgement.cases))


_END_PROBLEMS = {
    ("good", Verdict.BAD): "the predicate already fails at the good end",
    ("good", Verdict.SKIP): "the good end cannot be judged",
    ("good", Verdict.NOISY): "the good end is noisy (raise --repeats, or choose steadier testcases)",
    ("bad", Verdict.GOOD): "the predicate passes at the bad end: nothing between the ends regressed it",
    ("bad", Verdict.SKIP): "the bad end cannot be judged",
    ("bad", Verdict.NOISY): "the bad end is noisy (raise --repeats, or choose steadier testcases)",
}


def check_good_end(record: StepRecord, runner: StepRunner, option: str) -> None:
    """Refuse to bisect when the good end's step did not pass the predicate.

    ``option`` names the end on the command line (``--good``).

    Raises:
        InputError: ``--testcase T: matches no testcase at the good end (its cell has: ...)``
            when a testcase glob matched nothing; else ``<option> <label>: the predicate
            already fails at the good end: <why>`` (or cannot be judged, or is noisy).
    """
    if record.runs and any(c.outcome == ABSENT for c in record.cases):
        good_run = compare.load_run(runner.bisect_dir / record.runs[-1], allow_empty=True)
        missing = unmatched_terms(runner.predicate, good_run)
        if missing:
            raise InputError(missing[0])
    if record.verdict is not Verdict.GOOD:
        raise InputError(f"{option} {record.label}: {_END_PROBLEMS['good', record.verdict]}: {record.reason}")


def check_bad_end(record: StepRecord, option: str) -> None:
    """Refuse to bisect when the bad end's step did not fail the predicate.

    Raises:
        InputError: ``<option> <label>: the predicate passes at the bad end: ...`` (or
            the bad end cannot be judged, or is noisy), with the step's reason.
    """
    if record.verdict is not Verdict.BAD:
        raise InputError(f"{option} {record.label}: {_END_PROBLEMS['bad', record.verdict]}: {record.reason}")

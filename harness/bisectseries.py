"""The series form of ``cma-harness bisect``: which patch of a series (or of ``--patch``) did it.

The patches are the series' (``--series``) then the ``--patch`` files, in order.  The
good end is the kernel with the patches up to ``--good PATCH`` applied (default with
``--patch``: the series alone), the bad end the one up to ``--bad PATCH`` (default:
all of them); the candidates are the patches in between.  A patch is named by its name
in the series (``0007-foo.patch``, ``6.1/0002-bar.patch``, ``extra/baz.patch`` for a
``--patch``), its file name, or a unique prefix of its file name (``0007``); ``--good
none`` is the bare kernel.

Each position's kernel is built by :func:`harness.plan.prepare` from a series file:
the user's own when the step applies the whole series, else a *prefix* file listing
the first k patches under the same names, in a content-addressed directory of the
cache holding copies of the patches (``<cache>/bisect/series/<digest>/series-<k>``):
the same names, strip levels and contents give the same build key, so a position
that equals a kernel built before (the project's series at the good end, say) is
found in the cache, and the shared kernel tree switches its series in place,
rebuilding only what the step's patches touch.
"""

from __future__ import annotations

import email.policy
import re
import shutil
import tempfile
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from pathlib import Path

from harness import kbuild, plan
from harness.bisect import Candidate, Outcome, search, steps_left
from harness.bisectstep import StepRunner, StepSpec, check_bad_end, check_good_end
from harness.cache import cache_root, publish_dir
from harness.errors import InputError
from harness.progress import Reporter
from harness.series import Series, parse_series, with_extra_patches

NONE = "none"
_PATCH_TAG = re.compile(r"^\[[^\]]*\]\s*")


def patch_subject(path: Path) -> str:
    """The ``Subject:`` of a ``git format-patch`` file, unfolded, its ``[PATCH ...]`` tag
    removed; "" for a patch without a mail header (or one that cannot be read)."""
    try:
        with path.open("rb") as fh:
            header = BytesHeaderParser(policy=email.policy.default).parse(fh)
    except OSError:
        return ""
    return _PATCH_TAG.sub("", " ".join(str(header.get("Subject") or "").split()))


def prefix_series(series: Series, count: int) -> Path:
    """A series file listing the first ``count`` patches of ``series`` under their own names.

    Every patch is copied into ``<cache>/bisect/series/<digest>/`` at its name (a
    per-version ``6.1/0002-...`` included) and ``series-<k>`` files list them for every k,
    so :func:`harness.series.parse_series` of the file gives the same names, strip levels
    and SHA-256 as ``series`` (hence the same build keys).  Made once per series content.

    Raises:
        OSError: the cache cannot be written.
    """
    home = cache_root() / "bisect" / "series" / series.digest[:16]
    if not (home / "complete").is_file():
        home.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{home.name}-", dir=home.parent))
        try:
            for patch in series.patches:
                (tmp / patch.name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(patch.path, tmp / patch.name)
            lines = [f"{p.name} -p{p.strip}\n" for p in series.patches]
            for k in range(len(lines) + 1):
                (tmp / f"series-{k}").write_text("".join(lines[:k]))
            (tmp / "complete").write_text(series.digest + "\n")
            shutil.rmtree(home, ignore_errors=True)
            publish_dir(tmp, home)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return home / f"series-{count}"


def _position(text: str, names: list[str], option: str) -> int:
    """How many patches of ``names`` the end named ``text`` applies (see the module docstring).

    Raises:
        InputError: ``text`` names no patch, or several.
    """
    if text == NONE:
        return 0
    key = Path(text).name
    found = [i for i, n in enumerate(names) if text == n or key == Path(n).name]
    found = found or [i for i, n in enumerate(names) if Path(n).name.startswith(text)]
    if len(found) != 1:
        listed = ", ".join(names[:12]) + (" ..." if len(names) > 12 else "")
        what = "no patch" if not found else f"{len(found)} patches"
        raise InputError(f"{option} {text}: {what} of the series and --patch files is named so "
                         f"(the patches: {listed})")
    return found[0] + 1


@dataclass(frozen=True)
class SeriesBisect:
    """A series bisect: the patches, its two ends, and each position's kernel inputs.

    Attributes:
        kernel: the command's kernel inputs (source, series file, ``--patch`` files, make -j).
        series: the series file parsed for the source's version (without the ``--patch`` files).
        names: every patch's name, the series' then ``extra/<file>`` for each ``--patch``.
        good, bad: how many of ``names`` the good and the bad end apply (good < bad).
        candidates: the patches of positions 1..n (``names[good:bad]``) with their subjects.
    """

    kernel: plan.KernelInputs
    series: Series
    names: tuple[str, ...]
    good: int
    bad: int
    candidates: tuple[Candidate, ...]

    def label(self, position: int) -> str:
        """The last patch the kernel at ``position`` applies (``none``: the bare kernel)."""
        applied = self.good + position
        return self.names[applied - 1] if applied else NONE

    def inputs(self, position: int) -> plan.KernelInputs:
        """What the kernel at ``position`` (0..n) is built from (a prefix series file, or the
        whole series and the first ``--patch`` files).

        Raises:
            OSError: the prefix series cannot be written to the cache.
        """
        applied, in_series = self.good + position, len(self.series.patches)
        if applied >= in_series:
            return plan.KernelInputs(self.kernel.source, self.kernel.series,
                                     self.kernel.patches[:applied - in_series], self.kernel.build_jobs)
        return plan.KernelInputs(self.kernel.source, prefix_series(self.series, applied), (),
                                 self.kernel.build_jobs)

    def spec(self, position: int, role: str = "") -> StepSpec:
        """The step at ``position``."""
        subject = self.candidates[position - 1].subject if position else ""
        return StepSpec(position, self.label(position), subject, self.inputs(position), role)


def read_patches(kernel: plan.KernelInputs, rep: Reporter) -> tuple[Series, tuple[str, ...]]:
    """The series parsed for the source's version, and every patch's name (the series', then
    ``extra/<file>`` for each ``--patch``), as ``run`` would apply them.

    Raises:
        InputError: a bad source, series or patch (as ``run``).
        EnvironmentProblem: Debian's kernel source cannot be installed.
    """
    source = kbuild.resolve_source(kbuild.install_debian_source(kernel.source, rep))
    series = parse_series(kernel.series, source.version)
    return series, tuple(p.name for p in with_extra_patches(series, list(kernel.patches)).patches)


def names_a_patch(text: str, names: tuple[str, ...]) -> bool:
    """Whether ``--good``/``--bad`` ``text`` names one of the patches ``names`` (``none`` does not)."""
    try:
        return _position(text, list(names), "") > 0
    except InputError:
        return False


def plan_series(kernel: plan.KernelInputs, good: str | None, bad: str | None, rep: Reporter) -> SeriesBisect:
    """Read the series and the ``--patch`` files and find the two ends (nothing is built).

    Raises:
        InputError: a bad source, series or patch (as ``run``), an end that names no
            patch or several, no good end (neither ``--good`` nor ``--patch``), or no
            patch between the ends.
        EnvironmentProblem: Debian's kernel source cannot be installed.
    """
    series, names = read_patches(kernel, rep)
    if good is None and not kernel.patches:
        raise InputError("bisect: where is the good end? give --good PATCH (the last good patch of "
                         f"{kernel.series}, or 'none'), or the patches under suspicion with --patch FILE")
    lo = len(series.patches) if good is None else _position(good, list(names), "--good")
    hi = len(names) if bad is None else _position(bad, list(names), "--bad")
    if hi <= lo:
        raise InputError(f"--bad {names[hi - 1] if hi else NONE} is not after --good "
                         f"{names[lo - 1] if lo else NONE}: no patch between them to bisect")
    paths = [p.path for p in series.patches] + [Path(p) for p in kernel.patches]
    candidates = tuple(Candidate(names[i], patch_subject(paths[i])) for i in range(lo, hi))
    return SeriesBisect(kernel, series, names, lo, hi, candidates)


GOOD_END, BAD_END = "good end", "bad end"


def bisect_series(sb: SeriesBisect, runner: StepRunner) -> Outcome:
    """Check both ends, then search the candidates; every step's record is in the runner's directory.

    Raises:
        InputError: the good end fails the predicate or cannot be judged, the bad end
            passes it or cannot be judged, or a testcase glob matches nothing at the
            good end (:func:`harness.bisectstep.check_good_end`, ``check_bad_end``).
        HostNotReady, EnvironmentProblem, KeyboardInterrupt: see :meth:`StepRunner.run`.
    """
    n = len(sb.candidates)
    check_good_end(runner.run(sb.spec(0, GOOD_END), 1 + steps_left(0, n)), runner, "--good")
    check_bad_end(runner.run(sb.spec(n, BAD_END), steps_left(0, n)), "--bad")
    return search(n, lambda position, left: runner.run(sb.spec(position), left).verdict)

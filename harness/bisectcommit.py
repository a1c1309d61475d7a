"""A commit of a git bisect as a kernel the shared tree builds incrementally.

``run --kernel-src TREE`` copies the tree at each commit into the cache and builds it
from nothing (ccache-warm): about 1.8 GB and one full build per commit.  A bisect
builds every commit C of ``good..bad`` on *one* tree instead, the good end's (a work
tree checked out at ``good``, which never moves): C's kernel is that tree with
``git diff good C`` applied first, as a patch, then the series for C's kernel version
(and the ``--patch`` files), exactly the patches ``run --kernel-src`` would apply on
C.  The tree then switches from one commit to the next in place, as it does between
series, and make rebuilds only what the two commits and the series touch.

The diff is what GNU ``patch`` can apply (``git diff --no-renames``, text only): a file
whose change is binary or not UTF-8 text (the series' rule for every patch) is left out
and named at the top of the patch.  The kernel build reads no such file; should a
commit need one, its step fails to build and is skipped.  Each commit's patch and
series are kept in the cache by content (``<cache>/bisect/series/<digest>/``), where
the steps' run.json files name them.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import tempfile
from pathlib import Path

from harness import plan
from harness.bisectseries import prefix_series
from harness.cache import cache_root
from harness.errors import EnvironmentProblem, InputError
from harness.series import Patch, Series, parse_series

_CHUNK = re.compile(rb"(?m)^(?=diff --git )")
_VERSION = re.compile(r"^VERSION = (\d+)$.*?^PATCHLEVEL = (\d+)$", re.M | re.S)


def git_bytes(tree: Path, *args: str) -> bytes:
    """Output of ``git -C tree args`` (an argument list, no shell) as bytes.

    Raises:
        InputError: git failed (the first line of its stderr is quoted).
        EnvironmentProblem: git is not installed.
    """
    try:
        proc = subprocess.run(["git", "-C", str(tree), *args], capture_output=True, check=False)
    except FileNotFoundError as exc:
        raise EnvironmentProblem("git is not installed: apt-get install git") from exc
    if proc.returncode != 0:
        said = (proc.stderr.decode(errors="replace").strip().splitlines() or ["no output"])[0]
        raise InputError(f"{tree}: git {' '.join(args[:2])} failed: {said[:300]}")
    return proc.stdout


def commit_version(tree: Path, commit: str) -> str | None:
    """``VERSION.PATCHLEVEL`` of the top Makefile at ``commit`` (e.g. ``"7.2"``), None if unreadable."""
    try:
        text = git_bytes(tree, "show", f"{commit}:Makefile").decode(errors="replace")
    except InputError:
        return None
    found = _VERSION.search(text)
    return f"{found[1]}.{found[2]}" if found else None


def _usable(chunk: bytes) -> bool:
    """Whether GNU patch can apply this file's diff and the series rule takes it (UTF-8, no NUL)."""
    if b"\0" in chunk or b"\nBinary files " in chunk or b"\nGIT binary patch" in chunk:
        return False
    try:
        chunk.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def commit_diff(tree: Path, good: str, commit: str) -> tuple[bytes, tuple[str, ...]]:
    """``git diff good commit`` as a patch (``-p1``), and the files left out of it.

    Returns:
        The patch (b"" when nothing applicable changed), with a header naming the commit
        and what was left out; the left-out files' paths.

    Raises:
        InputError, EnvironmentProblem: git failed.
    """
    raw = git_bytes(tree, "diff", "--no-color", "--no-ext-diff", "--no-textconv", "--no-renames",
                    "--full-index", good, commit, "--")
    kept, left_out = [], []
    for chunk in _CHUNK.split(raw):
        if not chunk.startswith(b"diff --git "):
            continue
        if _usable(chunk):
            kept.append(chunk)
        else:
            first = chunk.split(b"\n", 1)[0].decode(errors="replace")
            left_out.append(first.split(" ")[2].removeprefix("a/"))
    if not kept:
        return b"", tuple(left_out)
    header = f"The changes of {good}..{commit} (git diff --no-renames), for patch -p1.\n"
    if left_out:
        header += f"Left out (binary, or not UTF-8 text): {', '.join(left_out)}\n"
    return header.encode() + b"\n" + b"".join(kept), tuple(left_out)


def commit_inputs(kernel: plan.KernelInputs, good: str,
                  commit: str) -> tuple[plan.KernelInputs, tuple[str, ...]]:
    """What the kernel of ``commit`` is built from on ``kernel.source``, a work tree at ``good``.

    At ``good`` itself (or a commit changing nothing applicable): ``kernel`` as it is.
    Otherwise a series file in the cache: the commit's diff first, then the series
    parsed for the commit's own kernel version; the ``--patch`` files stay after it.

    Returns:
        The inputs, and the files left out of the diff (see the module docstring).

    Raises:
        InputError: git failed; the series does not parse for the commit's version.
        OSError: the cache cannot be written.
    """
    if commit == good:
        return kernel, ()
    diff, left_out = commit_diff(kernel.source, good, commit)
    if not diff:
        return kernel, left_out
    series = parse_series(kernel.series, commit_version(kernel.source, commit))
    home = cache_root() / "bisect"
    home.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".commit-", dir=home) as tmp:
        path = Path(tmp) / "commit.patch"
        path.write_bytes(diff)
        patch = Patch(f"commit-{commit[:12]}.patch", path, 1, hashlib.sha256(diff).hexdigest())
        file = prefix_series(Series(kernel.series, (patch, *series.patches)), 1 + len(series.patches))
    return plan.KernelInputs(kernel.source, file, kernel.patches, kernel.build_jobs), left_out

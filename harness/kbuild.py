"""Kernel build: source → patched tree → merged .config → zImage, dtbs, modules.

Everything is cached under ``cache_root()``, keyed by content:

* ``trees/src-<source-key>/``: one unpacked tree per kernel source; the
  series is switched in place, patch by patch (:func:`harness.series.switch_series`);
* ``trees/src-<source-key>/.o-<config-key>/``: one ``O=`` build directory per
  source, defconfig, fragments and toolchain, so a changed series rebuilds only
  what its patches touch (make's own dependency tracking), as a developer's
  tree does.  It sits directly inside the tree, so Kbuild uses the relative
  ``srctree := ..`` (top Makefile: "building in a subdirectory of the source
  tree") and no compiler command line names the tree's path: ccache then hits
  across trees of the same content, e.g. a user's git tree at a new commit;
* ``kernels/<build-key>/``: the artifacts (build key = source + series digest +
  defconfig + every fragment's content + toolchain version + recipe version).

A build whose key already has complete artifacts returns at once.  A tree and
its build directories are used under an exclusive lock (``trees/src-<key>.lock``)
so concurrent runs with different series cannot mix them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from harness import debsrc, paths
from harness.cache import cache_root, collect_stale, digest, file_digest, publish_dir
from harness.errors import BuildError, ConfigError, EnvironmentProblem, InputError
from harness.integrity import discard_corrupt, manifest_problems, write_manifest
from harness.qemu import die_with_parent
from harness.series import Series, TreeStateError, init_series_state, switch_series

PATCHES_DIR, FRAGMENTS_DIR = paths.PATCHES_DIR, paths.FRAGMENTS_DIR
DEFAULT_SOURCE = Path("/usr/src/linux-source-6.1.tar.xz")
CROSS_COMPILE = "arm-linux-gnueabihf-"
RECIPE_VERSION = "3"  # bump when the way artifacts are produced changes
# The kernel's own selftests the guest runs (rootfs.SELFTESTS), kept with each build.
SELFTEST_DIRS = ("dmabuf-heaps",)
# Debian's linux-source-X.Y packages install_debian_source() installs with apt (others
# come from unstable into the cache, installing nothing: harness.debsrc).
DEBIAN_SOURCES = ("6.1", "6.12")
HOST_TOOLS = ("make", "patch", "tar", "flex", "bison", "bc", "perl", "dtc", "ccache")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class KernelSource:
    """Where the kernel source comes from.

    ``identity`` names the content: SHA-256 of a tarball's bytes; for a git work
    tree ``git:<HEAD>`` when it is clean, ``git:<HEAD>+dirty:<digest>`` when it
    has uncommitted changes or untracked (not ignored) files; for another
    directory a digest of every file's path, size and mtime.  ``git`` says the
    directory is a git work tree: only the files git tracks or would track are
    copied (:func:`_unpack`).
    """

    path: Path
    is_tarball: bool
    identity: str
    version: str  # "VERSION.PATCHLEVEL", e.g. "6.1": picks per-base patches
    git: bool = False


@dataclass(frozen=True)
class BuildRequest:
    """One kernel to build: source, series, defconfig and Kconfig fragments (file paths)."""

    source: KernelSource
    series: Series
    defconfig: str
    fragments: tuple[Path, ...]
    jobs: int


@dataclass(frozen=True)
class KernelBuild:
    """Artifacts of one build, all paths inside ``directory``.

    Attributes:
        key: the build key (hex SHA-256).
        release: ``uname -r`` of the built kernel, e.g. ``6.1.176``.
        zimage: the compressed kernel image.
        dtbs: directory of every built ``*.dtb``, flattened by file name.
        modules: an ``INSTALL_MOD_PATH`` tree (``lib/modules/<release>/...``).
        gen_init_cpio: the kernel's own initramfs packer, built with the kernel.
        config_hash: SHA-256 of the final ``.config``.
        series_hash: the series digest.
        toolchain: first line of ``arm-linux-gnueabihf-gcc --version``.
        source: the source's path (string) and identity.
        log: the full make output.
        tree: the shared patched source tree; it may hold another series by now.
        selftests_src: this build's copy of the kselftest headers and the
            selftests the guest runs (``tools/testing/selftests/...``).
    """

    key: str
    directory: Path
    release: str
    zimage: Path
    dtbs: Path
    modules: Path
    gen_init_cpio: Path
    config_hash: str
    series_hash: str
    toolchain: str
    source: str
    source_identity: str
    log: Path
    tree: Path

    @property
    def selftests_src(self) -> Path:
        """A tree-like root holding this build's ``tools/testing/selftests`` copy."""
        return self.directory / "src"

    def dtb(self, name: str) -> Path:
        """Path of the dtb called ``name``; raises InputError if it was not built."""
        path = self.dtbs / name
        if not path.is_file():
            raise InputError(f"dtb {name} was not built by this kernel (see {self.dtbs})")
        return path


def board_request(defconfig: str, fragment_names: tuple[str, ...], source: KernelSource,
                  series: Series, jobs: int, search: tuple[Path, ...] = ()) -> BuildRequest:
    """A :class:`BuildRequest` for a board's defconfig and fragments.

    A fragment name is looked up in each of ``search`` (e.g. the directory of a
    user's own board file), then in ``FRAGMENTS_DIR``.

    Raises:
        InputError: a fragment file does not exist in any of them.
    """
    fragments = []
    for name in fragment_names:
        where = [*search, FRAGMENTS_DIR]
        found = next((d / name for d in where if (d / name).is_file()), None)
        if found is None:
            raise InputError(f"fragment {name} not found in {', '.join(map(str, where))}")
        fragments.append(found)
    return BuildRequest(source, series, defconfig, tuple(fragments), jobs)


def check_host_tools() -> str:
    """Verify the cross toolchain and host tools exist; return the toolchain version line.

    Raises:
        EnvironmentProblem: naming the first missing tool.
    """
    for tool in (CROSS_COMPILE + "gcc", *HOST_TOOLS):
        if shutil.which(tool) is None:
            raise EnvironmentProblem(f"missing host tool '{tool}': run 'make deps' (see README)")
    out = subprocess.run(
        [CROSS_COMPILE + "gcc", "--version"], capture_output=True, text=True, check=True
    )
    return out.stdout.splitlines()[0].strip()


def _makefile_version(text: str) -> str | None:
    """``VERSION.PATCHLEVEL`` from the top-level kernel Makefile's text."""
    v = re.search(r"^VERSION = (\d+)$", text, re.M)
    p = re.search(r"^PATCHLEVEL = (\d+)$", text, re.M)
    return f"{v.group(1)}.{p.group(1)}" if v and p else None


def _tarball_version(path: Path) -> str | None:
    """The base version from the tarball's name, else from its Makefile (slower: decompresses)."""
    m = re.match(r"linux(?:-source)?-(\d+\.\d+)", path.name)
    if m:
        return m.group(1)
    listing = subprocess.Popen(["tar", "-tf", str(path)], stdout=subprocess.PIPE, text=True)
    assert listing.stdout is not None
    first = listing.stdout.readline().strip()
    listing.kill()
    listing.wait()
    top = first.split("/", 1)[0]
    if not top:
        return None
    out = subprocess.run(["tar", "-xOf", str(path), f"{top}/Makefile", "--occurrence=1"],
                         capture_output=True, text=True, check=False)
    return _makefile_version(out.stdout)


def install_debian_source(path: Path, progress: Progress) -> Path:
    """The kernel tarball to use for ``--kernel-src path``: Debian's, fetched if missing.

    ``/usr/src/linux-source-X.Y.tar.xz`` that does not exist is Debian's
    ``linux-source-X.Y``: for 6.1 and 6.12 the package is installed
    (``scripts/install-deps.sh --kernel-source``; 6.12 from bookworm-backports);
    any other version comes from Debian unstable into the cache, without
    installing anything (:func:`harness.debsrc.fetch_unstable_source`).  Any
    other ``path`` is returned as it is.

    Raises:
        InputError: unstable has no such package.
        EnvironmentProblem: the package could not be installed or fetched.
    """
    m = re.fullmatch(r"/usr/src/linux-source-(\d+\.\d+)\.tar\.xz", str(path))
    if path.exists() or not m:
        return path
    if m.group(1) not in DEBIAN_SOURCES:
        return debsrc.fetch_unstable_source(m.group(1), progress)
    progress(f"{path} is missing: installing Debian's linux-source-{m.group(1)}")
    result = subprocess.run(["bash", str(paths.INSTALL_DEPS), "--kernel-source",
                             m.group(1)], capture_output=True, text=True, check=False)
    if result.returncode != 0 or not path.exists():
        raise EnvironmentProblem(f"cannot install linux-source-{m.group(1)}: "
                                 f"{(result.stderr.strip().splitlines() or ['no output'])[0]}")
    return path


def resolve_source(path: Path) -> KernelSource:
    """Identify a kernel source given as a tarball or a directory (see :class:`KernelSource`).

    Raises:
        InputError: the path does not exist or is not readable; it is not a kernel
            tarball or tree (a top-level ``Makefile`` with ``VERSION`` and
            ``PATCHLEVEL``, and ``Kconfig``); its version is older than
            :data:`MIN_VERSION`; a directory outside git was built in place
            (``.config``); git cannot read a git work tree.
        EnvironmentProblem: the directory is a git work tree and git is not installed.
    """
    if path.is_file():
        if not os.access(path, os.R_OK):
            raise InputError(f"kernel source {path} is not readable")
        version = _tarball_version(path)
        if version is None:
            raise InputError(f"cannot unpack {path}: not a kernel source tarball")
        _check_supported(path, version)
        return KernelSource(path, True, file_digest(path), version)
    if path.is_dir():
        return _resolve_tree(path)
    raise InputError(f"kernel source {path} does not exist (install linux-source-6.1 or pass --kernel-src)")


MIN_VERSION = (6, 1)  # the oldest base the series and the oracle know


def _check_supported(path: Path, version: str) -> None:
    """Raise InputError for a kernel older than :data:`MIN_VERSION`."""
    if tuple(int(n) for n in version.split(".")) < MIN_VERSION:
        raise InputError(f"kernel source {path} is Linux {version}: cma-harness needs "
                         f"{MIN_VERSION[0]}.{MIN_VERSION[1]} or newer")


# What `make` leaves in a tree built in place, as the top Makefile's check for O= builds
# names them ("The source tree is not clean"); a copy of such a tree would be gigabytes.
_IN_PLACE_BUILD = (".config", "include/config", "arch/*/include/generated")


def _resolve_tree(path: Path) -> KernelSource:
    """:func:`resolve_source` for a directory."""
    makefile = path / "Makefile"
    try:
        version = _makefile_version(makefile.read_text(errors="replace")) if makefile.is_file() else None
    except OSError as exc:
        raise InputError(f"kernel source {path}: cannot read its Makefile ({exc.strerror})") from exc
    if version is None or not (path / "Kconfig").is_file():
        raise InputError(f"kernel source {path} is not a kernel tree (no Makefile/Kconfig)")
    _check_supported(path, version)
    if (path / ".git").exists():
        return KernelSource(path, False, _git_identity(path), version, git=True)
    built = [str(p.relative_to(path)) for name in _IN_PLACE_BUILD for p in sorted(path.glob(name))]
    if built:
        raise InputError(f"kernel source {path} was built in place ({built[0]} exists): "
                         "run 'make mrproper' there, or give a git work tree or a tarball")
    parts: list[str] = []
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            st = os.lstat(os.path.join(root, name))
            rel = os.path.relpath(os.path.join(root, name), path)
            parts.append(f"{rel}:{st.st_size}:{st.st_mtime_ns}")
    return KernelSource(path, False, digest(parts), version)


def _git(directory: Path, *args: str) -> bytes:
    """Output of ``git -C directory args`` (no shell, no optional index writes).

    Raises:
        InputError: git failed (its first line of stderr is quoted).
        EnvironmentProblem: git is not installed.
    """
    argv = ["git", "--no-optional-locks", "-C", str(directory), *args]
    try:
        result = subprocess.run(argv, capture_output=True, check=False)
    except FileNotFoundError as exc:
        raise EnvironmentProblem(f"kernel source {directory} is a git work tree and git is not "
                                 "installed: apt-get install git") from exc
    if result.returncode != 0:
        said = (result.stderr.decode(errors="replace").strip().splitlines() or ["no output"])[0]
        raise InputError(f"kernel source {directory}: git {args[0]} failed: {said[:300]}")
    return result.stdout


def _git_names(directory: Path, *which: str) -> list[str]:
    """``git ls-files -z`` of ``directory`` (``which``: ``--cached``, ``--others``), relative
    to it, each once; ``--others`` leaves out what ``.gitignore`` ignores."""
    out = _git(directory, "ls-files", "-z", *which, "--exclude-standard", "--", ".")
    return list(dict.fromkeys(os.fsdecode(n) for n in out.split(b"\0") if n))


def _entry_digest(path: Path) -> str:
    """A file's content digest; a link's target; ``dir`` for a directory (a nested repository)."""
    if path.is_symlink():
        return "link:" + os.readlink(path)
    return file_digest(path) if path.is_file() else "dir"


def _git_identity(path: Path) -> str:
    """``git:<HEAD>``, plus ``+dirty:<digest>`` of the uncommitted diff (staged or not, binary
    files included) and every untracked, not ignored file's name and content.

    Raises:
        InputError: git cannot read the tree (no commit yet, unsafe ownership, ...).
    """
    head = _git(path, "rev-parse", "--verify", "HEAD").decode().strip()
    diff = _git(path, "diff", "HEAD", "--binary", "--no-color", "--no-ext-diff", "--no-textconv",
                "--", ".")
    untracked = [f"{name}\0{_entry_digest(path / name)}" for name in _git_names(path, "--others")]
    if not diff and not untracked:
        return f"git:{head}"
    return f"git:{head}+dirty:{digest([diff, *untracked])[:16]}"


def _unpack(source: KernelSource, dest: Path) -> None:
    """Unpack a tarball (its single top directory stripped) or copy a directory to ``dest``.

    A git work tree gives only the files git tracks (as they are in the work tree,
    changes included) and the untracked files it does not ignore: never ``.git``,
    nor a build's outputs.  Another directory is copied whole but ``.git``.

    Raises:
        InputError: the tarball cannot be unpacked or holds an unsafe entry (see
            :func:`unsafe_entries`); the tree cannot be copied.
    """
    dest.mkdir(parents=True)
    if source.is_tarball:
        _untar(source.path, dest)
    elif source.git:
        _copy_git_tree(source.path, dest)
    else:
        shutil.copytree(source.path, dest, symlinks=True, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(".git"))


def _untar(tarball: Path, dest: Path) -> None:
    """Extract ``tarball``'s single top directory into ``dest`` (see :func:`_unpack`)."""
    # Owners and modes as a user's would be, even when run as root.
    result = subprocess.run(
        ["tar", "-xf", str(tarball), "-C", str(dest), "--strip-components=1",
         "--no-same-owner", "--no-same-permissions"],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        raise InputError(f"cannot unpack {tarball}: {result.stderr.strip()[:300]}")
    if not (dest / "Makefile").is_file():
        raise InputError(f"{tarball} does not hold a kernel tree at its top directory")
    bad = unsafe_entries(dest)
    if bad:
        raise InputError(f"{tarball}: refusing a kernel tarball that holds {bad[0]}"
                         + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""))


def _copy_git_tree(tree: Path, dest: Path) -> None:
    """Copy the files of git work tree ``tree`` that :func:`_unpack` names into ``dest``.

    One ``tar -c | tar -x`` pipe over ``git ls-files``: links stay links, modes
    follow the umask, a tracked file deleted in the work tree is left out.

    Raises:
        InputError: git or tar failed.
    """
    names = [n for n in _git_names(tree, "--cached", "--others") if os.path.lexists(tree / n)]
    with tempfile.TemporaryDirectory(prefix=".cma-harness-copy-", dir=dest.parent) as tmp:
        listing, errors = Path(tmp) / "files", Path(tmp) / "tar-c.err"
        listing.write_bytes(b"".join(os.fsencode(n) + b"\0" for n in names))
        with errors.open("wb") as err:
            create = subprocess.Popen(
                ["tar", "-C", str(tree), "--null", "--verbatim-files-from", "--no-recursion",
                 "-T", str(listing), "-cf", "-"], stdout=subprocess.PIPE, stderr=err)
            assert create.stdout is not None
            extract = subprocess.Popen(
                ["tar", "-C", str(dest), "-xf", "-", "--no-same-owner", "--no-same-permissions"],
                stdin=create.stdout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            create.stdout.close()  # tar -c sees a broken pipe if tar -x dies
            _, extract_err = extract.communicate()
            created = create.wait()
        said = errors.read_bytes() if created else extract_err if extract.returncode else b""
    if created or extract.returncode:
        first = (said.decode(errors="replace").strip().splitlines() or ["no output"])[0]
        raise InputError(f"cannot copy the kernel tree {tree}: tar: {first[:300]}")


def unsafe_entries(tree: Path) -> list[str]:
    """What a kernel source tree must not hold: device nodes, FIFOs, sockets, setuid or
    setgid files, and links that point outside ``tree``; each named relative to it.

    A kernel tree has regular files, directories and relative links inside itself only.
    """
    bad: list[str] = []
    top = tree.resolve()
    for root, dirs, files in os.walk(tree):
        for name in dirs + files:
            path = Path(root) / name
            mode = path.lstat().st_mode
            rel = path.relative_to(tree)
            if stat.S_ISLNK(mode):
                target = (path.parent / os.readlink(path)).resolve()
                if target != top and top not in target.parents:
                    bad.append(f"a link leaving the tree ({rel} -> {os.readlink(path)})")
            elif not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                bad.append(f"a special file ({rel})")
            elif mode & (stat.S_ISUID | stat.S_ISGID):
                bad.append(f"a setuid/setgid file ({rel})")
    return bad


@contextlib.contextmanager
def locked_tree(source: KernelSource) -> Iterator[Path]:
    """Hold the exclusive lock on ``source``'s tree; yields the tree's path (may not exist yet)."""
    trees = cache_root() / "trees"
    trees.mkdir(parents=True, exist_ok=True)
    key = digest([source.identity])[:16]
    with (trees / f"src-{key}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield trees / f"src-{key}"


def prepare_tree(source: KernelSource, series: Series, tree: Path, progress: Progress) -> Path:
    """Make ``tree`` (see :func:`locked_tree`) hold ``source`` with ``series`` applied.

    Unpacks the source the first time; afterwards switches the applied series
    incrementally.  A tree whose record is damaged is unpacked afresh.

    Raises:
        PatchError: a patch does not apply (the tree keeps the patches before it).
        InputError: the source cannot be unpacked.
    """
    if (tree / ".cma-harness-complete").exists():
        try:
            undone, done = switch_series(series, tree)
            if undone or done:
                progress(f"series switched in {tree.name}: {undone} patch(es) reversed, {done} applied")
            return tree
        except TreeStateError as exc:
            progress(f"{exc}: unpacking afresh")
            shutil.rmtree(tree)
    tmp = Path(tempfile.mkdtemp(prefix=f".{tree.name}-", dir=tree.parent))
    try:
        progress(f"unpacking {source.path}")
        _unpack(source, tmp / "src")
        init_series_state(tmp / "src")
        (tmp / "src" / ".cma-harness-complete").write_text(source.identity + "\n")
        publish_dir(tmp / "src", tree)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    progress(f"applying {len(series.patches)} patch(es) from {series.path}")
    switch_series(series, tree)
    return tree


def parse_fragment(text: str) -> dict[str, str]:
    """Kconfig assignments in a fragment or .config: ``{"CONFIG_X": "y" | "n" | value}``.

    ``# CONFIG_X is not set`` reads as ``"n"``; other comments are ignored.
    """
    options: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        unset = re.fullmatch(r"# (CONFIG_\w+) is not set", line)
        if unset:
            options[unset.group(1)] = "n"
        elif m := re.fullmatch(r"(CONFIG_\w+)=(.*)", line):
            options[m.group(1)] = m.group(2)
    return options


def verify_config(requested: dict[str, str], final_config: str) -> None:
    """Check every requested option landed in the final ``.config``.

    Raises:
        ConfigError: naming each option whose final value differs (an option
            missing from .config counts as ``n``, as Kconfig treats it).
    """
    final = parse_fragment(final_config)
    wrong = [
        f"{name}={want} (got {final.get(name, 'n (absent)')})"
        for name, want in sorted(requested.items())
        if final.get(name, "n") != want
    ]
    if wrong:
        raise ConfigError(
            "Kconfig options requested by the fragments did not land in .config "
            "(a dependency is missing or the option does not exist): " + ", ".join(wrong)
        )


# What make, gcc, ld and the kernel's scripts print when something is wrong:
# "error:" (gcc, ld, kconfig), "not found" (/bin/sh: 1: rsync: not found),
# "***" (make's own "*** [target] Error 2" and Kbuild's "*** Please install ...").
_ERROR_LINE = re.compile(r"\berror:|\bnot found\b|\*\*\*|No such file or directory|"
                         r"command not found|undefined reference", re.I)


def first_error_lines(lines: list[str], most: int = 5) -> list[str]:
    """The first ``most`` lines of a make output that say what went wrong, stripped.

    Lines come from make, the compiler, the linker and the kernel's scripts; the
    pattern is :data:`_ERROR_LINE`.  Repeated lines are kept once.
    """
    found: list[str] = []
    for line in lines:
        text = line.strip()
        if text and _ERROR_LINE.search(text) and text not in found:
            found.append(text[:300])
            if len(found) == most:
                break
    return found


class _MakeRunner:
    """Runs make in the tree with output going to a log file, reporting progress."""

    def __init__(self, tree: Path, outdir: Path, log: Path, progress: Progress) -> None:
        self.tree, self.outdir, self.log, self.progress = tree, outdir, log, progress

    def __call__(self, *targets: str, jobs: int = 1, env: dict[str, str] | None = None) -> None:
        argv = [
            "make", "-C", str(self.tree), f"O={self.outdir}", "ARCH=arm",
            f"CROSS_COMPILE={CROSS_COMPILE}", f"CC=ccache {CROSS_COMPILE}gcc", f"-j{jobs}", *targets,
        ]
        full_env = {**os.environ, **_build_env(), **(env or {})}
        with self.log.open("a") as log:
            log.write(f"$ {' '.join(argv)}\n")
            log.flush()
            # Its own process group, so that the whole make (compilers included)
            # can be stopped when the harness fails or is interrupted.
            proc = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=full_env,
                start_new_session=True, preexec_fn=die_with_parent,
            )
            try:
                errors = self._follow(proc, log, targets)
                rc = proc.wait()
            except BaseException:
                stop_group(proc)
                raise
        if rc != 0:
            said = "; ".join(first_error_lines(errors)) or "no error line in its output"
            raise BuildError(f"make {' '.join(targets)} failed (exit {rc}): {said}; "
                             f"full output in {self.log}")


    def _follow(self, proc: subprocess.Popen[str], log: TextIO, targets: tuple[str, ...]) -> list[str]:
        """Copy make's output to ``log``, report progress; return the lines that look like errors."""
        assert proc.stdout is not None
        started = last_report = time.monotonic()
        count = 0
        errors: list[str] = []
        for line in proc.stdout:
            log.write(line)
            count += 1
            if len(errors) < 50 and _ERROR_LINE.search(line):
                errors.append(line)
            now = time.monotonic()
            if now - last_report >= 0.5:
                last_report = now
                self.progress(f"make {' '.join(targets)}: {count} lines, "
                              f"{now - started:.0f}s: {line.strip()[:60]}")
        return errors


def stop_group(proc: subprocess.Popen[str]) -> None:
    """Stop the process group led by ``proc`` (started with ``start_new_session``): SIGTERM,
    then SIGKILL after 5 s; reaps ``proc``."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
            os.killpg(proc.pid, 0)  # children of make still there?
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            break
    proc.wait()


def _build_env() -> dict[str, str]:
    """Fixed build identity so rebuilds are reproducible and ccache hits."""
    return {
        "KBUILD_BUILD_USER": "cma-harness",
        "KBUILD_BUILD_HOST": "cma-harness",
        "KBUILD_BUILD_TIMESTAMP": "2026-01-01",
        "CCACHE_DIR": str(cache_root() / "ccache"),
        "CCACHE_BASEDIR": str(cache_root()),
        "CCACHE_NOHASHDIR": "1",
        "CCACHE_MAXSIZE": "5G",
    }


def build_key(request: BuildRequest, toolchain: str) -> str:
    """The artifacts' cache key (hex SHA-256): what determines the built kernel."""
    frag_parts = [f"{f.name}\0{file_digest(f)}" for f in request.fragments]
    return digest([RECIPE_VERSION, request.source.identity, request.series.digest,
                   request.defconfig, *frag_parts, toolchain])


def _load_build(directory: Path) -> KernelBuild:
    info = json.loads((directory / "build.json").read_text())
    return KernelBuild(
        key=info["key"], directory=directory, release=info["release"],
        zimage=directory / "zImage", dtbs=directory / "dtbs", modules=directory / "modules",
        gen_init_cpio=directory / "gen_init_cpio", config_hash=info["config_hash"],
        series_hash=info["series_hash"], toolchain=info["toolchain"], source=info["source"],
        source_identity=info["source_identity"], log=directory / "build.log",
        tree=Path(info["tree"]),
    )


def cached_build(request: BuildRequest, toolchain: str) -> KernelBuild | None:
    """The complete artifacts for ``request`` if the cache has them intact, else None.

    Every file must still match the manifest written when the entry was made
    (:mod:`harness.integrity`), and the entry must hold ``src/``, the build's
    own copy of the kernel selftests (:attr:`KernelBuild.selftests_src`); a
    corrupt or incomplete entry is removed with a warning on stderr, so the
    caller rebuilds it.
    """
    directory = cache_root() / "kernels" / build_key(request, toolchain)[:16]
    if not directory.is_dir():
        return None
    problems = manifest_problems(directory)
    if not problems and not (directory / "src").is_dir():
        # Made by a harness from before each build kept its own selftests copy:
        # an initramfs built from it would silently lack the selftest programs.
        problems = ["src/ (this build's copy of the kernel selftests) is missing"]
    if problems:
        discard_corrupt(directory, problems)
        return None
    if Path(json.loads((directory / "build.json").read_text())["tree"]).is_dir():
        return _load_build(directory)
    return None


def build_kernel(request: BuildRequest, progress: Progress) -> KernelBuild:
    """Build (or fetch from cache) the kernel described by ``request``.

    Raises:
        EnvironmentProblem: a host tool is missing.
        PatchError: a patch of the series does not apply.
        ConfigError: a fragment's option did not land in .config.
        BuildError: make failed (the log path is in the message).
    """
    toolchain = check_host_tools()
    collect_stale()
    found = cached_build(request, toolchain)
    if found:
        return found
    with locked_tree(request.source) as tree:
        return _build_locked(request, toolchain, tree, progress)


def config_key(request: BuildRequest, toolchain: str) -> str:
    """The ``O=`` build directory's key: everything but the series."""
    frag_parts = [f"{f.name}\0{file_digest(f)}" for f in request.fragments]
    return digest([request.source.identity, request.defconfig, *frag_parts, toolchain])[:16]


def build_dir(tree: Path, request: BuildRequest, toolchain: str) -> Path:
    """The ``O=`` directory of ``request`` in ``tree`` (created): ``<tree>/.o-<config key>``.

    A direct subdirectory of the tree, so that Kbuild builds with ``srctree := ..``
    (see the module docstring).
    """
    outdir = tree / f".o-{config_key(request, toolchain)}"
    outdir.mkdir(parents=True, exist_ok=True)
    return outdir


def _build_locked(request: BuildRequest, toolchain: str, tree: Path, progress: Progress) -> KernelBuild:
    found = cached_build(request, toolchain)  # another run may have built it while we waited
    if found:
        return found
    key = build_key(request, toolchain)
    prepare_tree(request.source, request.series, tree, progress)
    kernels = cache_root() / "kernels"
    kernels.mkdir(parents=True, exist_ok=True)
    outdir = build_dir(tree, request, toolchain)
    staging = Path(tempfile.mkdtemp(prefix=f".{key[:16]}-", dir=kernels))
    log = staging / "build.log"
    make = _MakeRunner(tree, outdir, log, progress)
    try:
        _configure(make, request)
        make("zImage", "dtbs", "modules", jobs=request.jobs)
        make("modules_install", f"INSTALL_MOD_PATH={staging / 'modules'}", "INSTALL_MOD_STRIP=1")
        make("headers_install", f"INSTALL_HDR_PATH={staging / 'headers'}")
        release = (outdir / "include/config/kernel.release").read_text().strip()
        _collect(outdir, staging, tree)
        info = {
            "key": key, "release": release, "config_hash": file_digest(outdir / ".config"),
            "series_hash": request.series.digest, "toolchain": toolchain,
            "source": str(request.source.path), "source_identity": request.source.identity,
            "tree": str(tree), "defconfig": request.defconfig,
            "fragments": [f.name for f in request.fragments],
            "patches": [{"name": p.name, "sha256": p.sha256} for p in request.series.patches],
        }
        (staging / "build.json").write_text(json.dumps(info, indent=2) + "\n")
        write_manifest(staging)
        final = kernels / key[:16]
        shutil.rmtree(final, ignore_errors=True)
        publish_dir(staging, final)
        return _load_build(final)
    except (BuildError, ConfigError) as exc:
        # The staging directory goes away: keep its log where the message says.
        kept = cache_root() / "logs" / f"build-{key[:16]}.log"
        kept.parent.mkdir(parents=True, exist_ok=True)
        if log.is_file():
            shutil.copy2(log, kept)
        raise type(exc)(str(exc).replace(str(log), str(kept)) +
                        ("" if str(log) in str(exc) else f" (make output: {kept})")) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _configure(make: _MakeRunner, request: BuildRequest) -> None:
    """defconfig, the fragments merged by merge_config.sh, olddefconfig; then verify every option.

    Raises:
        BuildError: make or merge_config.sh failed.
        ConfigError: a requested option did not land in .config.
    """
    make(request.defconfig)
    _merge_fragments(make.tree, make.outdir, request.fragments, make.log)
    make("olddefconfig")
    requested: dict[str, str] = {}
    for frag in request.fragments:
        requested.update(parse_fragment(frag.read_text()))
    verify_config(requested, (make.outdir / ".config").read_text())


def install_headers(request: BuildRequest, dest: Path, progress: Progress) -> Path:
    """Prepare and configure ``request``'s tree, then ``make headers_install`` into ``dest``.

    The quick first part of :func:`build_kernel` (no kernel is compiled), which
    already needs the host compiler and libc, flex, bison, perl, patch, xz and
    rsync: the clean-root test uses it to prove a host can build.  Returns the
    patched tree (for :func:`harness.rootfs.compile_guest_programs`); the make
    output goes to ``dest/headers.log``.

    Raises:
        EnvironmentProblem, PatchError, ConfigError, BuildError: as :func:`build_kernel`.
    """
    toolchain = check_host_tools()
    dest.mkdir(parents=True, exist_ok=True)
    with locked_tree(request.source) as tree:
        prepare_tree(request.source, request.series, tree, progress)
        outdir = build_dir(tree, request, toolchain)
        make = _MakeRunner(tree, outdir, dest / "headers.log", progress)
        _configure(make, request)
        make("headers_install", f"INSTALL_HDR_PATH={dest}")
    return tree


def _merge_fragments(tree: Path, outdir: Path, fragments: tuple[Path, ...], log: Path) -> None:
    """Merge fragments into ``outdir/.config`` with the kernel's own merge_config.sh -m."""
    argv = ["sh", str(tree / "scripts/kconfig/merge_config.sh"), "-m", "-O", str(outdir),
            str(outdir / ".config"), *map(str, fragments)]
    with log.open("a") as fh:
        fh.write(f"$ {' '.join(argv)}\n")
        fh.flush()
        result = subprocess.run(
            argv, cwd=tree, stdout=fh, stderr=subprocess.STDOUT, check=False,
            env={**os.environ, "ARCH": "arm", "CROSS_COMPILE": CROSS_COMPILE},
        )
    if result.returncode != 0:
        raise BuildError(f"merge_config.sh failed (exit {result.returncode}); see {log}")


def _collect_selftests(tree: Path, dest: Path) -> None:
    """Copy the kselftest headers and :data:`SELFTEST_DIRS` of the patched tree into ``dest``.

    The guest programs compile from this copy, which belongs to the build, never
    from the shared tree that another run may be switching to another series.
    """
    selftests = tree / "tools" / "testing" / "selftests"
    target = dest / "tools" / "testing" / "selftests"
    target.mkdir(parents=True)
    for header in selftests.glob("*.h"):
        shutil.copy2(header, target / header.name)
    for name in SELFTEST_DIRS:
        if (selftests / name).is_dir():
            shutil.copytree(selftests / name, target / name, symlinks=False)


def _collect(outdir: Path, staging: Path, tree: Path) -> None:
    """Copy zImage, every dtb (flattened), gen_init_cpio from ``outdir`` and the selftests
    sources from ``tree`` to ``staging``."""
    shutil.copy2(outdir / "arch/arm/boot/zImage", staging / "zImage")
    shutil.copy2(outdir / ".config", staging / "config")
    shutil.copy2(outdir / "System.map", staging / "System.map")  # for the cma= oracle
    shutil.copy2(outdir / "usr/gen_init_cpio", staging / "gen_init_cpio")
    _collect_selftests(tree, staging / "src")
    dtbs = staging / "dtbs"
    dtbs.mkdir()
    for dtb in (outdir / "arch/arm/boot/dts").rglob("*.dtb"):
        shutil.copy2(dtb, dtbs / dtb.name)
    (staging / "modules").mkdir(exist_ok=True)

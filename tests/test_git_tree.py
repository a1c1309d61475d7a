"""``--kernel-src`` given a user's git work tree: what is copied, how it is keyed, and on 7.2 for real.

The unit tests (no kernel, no QEMU) pin the rules of :func:`harness.kbuild.resolve_source`
and :func:`harness.kbuild._unpack` for a git work tree: the identity names HEAD and changes
with HEAD and with the work tree; the copy holds what git tracks (as it is in the work tree)
and the untracked files git does not ignore, never ``.git`` or a build's outputs.

The integration tests make a git work tree of Linux 7.2.13 (from Debian's tarball, kept in
the cache keyed by the tarball's digest), add a user commit of their own to it, and run a
one-cell vexpress-a9 matrix on it: it passes, and the user's commit is in the booted kernel.
Then a commit that breaks CMA accounting
(``tests/fixtures/patches/7.x-mm-cma-clear-every-bitmap-bit-a-released-range-spans.patch``)
goes on top, and the run fails with exit status 1, naming the leak.  Every commit has a
fixed author, committer and date, so its hash, and the harness's build key, are the same
on every run: a repeated run finds both kernels built and takes about 20 s.  On a cold
cache, after ``make test`` has built the 7.2 tarball, both tests together take about 160 s:
the ``O=`` directory sits inside each tree copy, so the compiler command lines do not name
the tree and ccache hits for every file the commits do not change.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from junitparser import Error, Failure, JUnitXml

from harness import debsrc, kbuild
from harness.cache import cache_root, file_digest
from harness.errors import InputError
from tests.test_integration import CLI, REPO

BREAKING = REPO / "tests/fixtures/patches/7.x-mm-cma-clear-every-bitmap-bit-a-released-range-spans.patch"
# A reproducible identity for every commit the tests make.
GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "A. U. Thor", "GIT_AUTHOR_EMAIL": "author@example.org",
    "GIT_COMMITTER_NAME": "A. U. Thor", "GIT_COMMITTER_EMAIL": "author@example.org",
    "GIT_AUTHOR_DATE": "2026-11-02T10:00:00+00:00", "GIT_COMMITTER_DATE": "2026-11-02T10:00:00+00:00",
}


def git(tree: Path, *args: str, **env: str) -> str:
    """``git -C tree args`` with :data:`GIT_ENV` (plus ``env``); its stdout."""
    return subprocess.run(["git", "-C", str(tree), *args], env={**os.environ, **GIT_ENV, **env},
                          capture_output=True, text=True, check=True).stdout


# --- unit: the rules for a git work tree -------------------------------------------------------


def small_repo(tmp_path: Path, version: str = "6.12") -> Path:
    """A committed git work tree with a kernel Makefile of ``version`` and a .gitignore as the
    kernel's (build outputs ignored)."""
    tree = tmp_path / "linux"
    (tree / "mm").mkdir(parents=True)
    major, minor = version.split(".")
    (tree / "Makefile").write_text(f"VERSION = {major}\nPATCHLEVEL = {minor}\nSUBLEVEL = 3\n")
    (tree / "Kconfig").write_text("")
    (tree / ".gitignore").write_text(".*\n!.gitignore\n*.o\n/vmlinux\n/include/config/\n")
    (tree / "mm" / "cma.c").write_text("int cma;\n")
    (tree / "scripts").mkdir()
    (tree / "scripts" / "run.sh").write_text("#!/bin/sh\n")
    (tree / "scripts" / "run.sh").chmod(0o755)
    (tree / "scripts" / "link").symlink_to("run.sh")
    git(tree, "init", "-q")
    git(tree, "add", "-A")
    git(tree, "commit", "-q", "-m", "base")
    return tree


def test_the_identity_names_head_and_changes_with_head_and_the_work_tree(tmp_path: Path) -> None:
    tree = small_repo(tmp_path)
    head = git(tree, "rev-parse", "HEAD").strip()
    clean = kbuild.resolve_source(tree)
    assert (clean.identity, clean.version, clean.git) == (f"git:{head}", "6.12", True)
    # Build outputs git ignores change nothing.
    (tree / "mm" / "cma.o").write_bytes(b"\x7fELF")
    (tree / ".config").write_text("CONFIG_CMA=y\n")
    assert kbuild.resolve_source(tree).identity == clean.identity
    seen = {clean.identity}
    (tree / "mm" / "cma.c").write_text("int cma = 1;\n")  # a tracked file changed
    edited = kbuild.resolve_source(tree).identity
    assert edited.startswith(f"git:{head}+dirty:") and edited not in seen
    seen.add(edited)
    (tree / "mm" / "cma.c").write_text("int cma = 2;\n")  # changed again
    assert kbuild.resolve_source(tree).identity not in seen
    seen.add(kbuild.resolve_source(tree).identity)
    (tree / "mm" / "new.c").write_text("int n;\n")  # an untracked source file, not ignored
    assert kbuild.resolve_source(tree).identity not in seen
    seen.add(kbuild.resolve_source(tree).identity)
    (tree / "mm" / "new.c").write_text("int n = 1;\n")  # its content counts too
    assert kbuild.resolve_source(tree).identity not in seen
    git(tree, "add", "-A")
    git(tree, "commit", "-q", "-m", "user change")
    new_head = git(tree, "rev-parse", "HEAD").strip()
    assert kbuild.resolve_source(tree).identity == f"git:{new_head}" != clean.identity


def test_the_copy_is_the_work_tree_git_would_track_never_git_or_build_outputs(tmp_path: Path) -> None:
    tree = small_repo(tmp_path)
    (tree / "mm" / "cma.c").write_text("int cma = 1;\n")
    git(tree, "add", "mm/cma.c")  # staged...
    (tree / "mm" / "cma.c").write_text("int cma = 2;\n")  # ...and changed again: copied as it is now
    (tree / "mm" / "new.c").write_text("int n;\n")  # untracked, not ignored: copied
    for output in ("mm/cma.o", "vmlinux", ".config", "include/config/auto.conf"):
        (tree / output).parent.mkdir(parents=True, exist_ok=True)
        (tree / output).write_text("built\n")
    dest = tmp_path / "copy"
    kbuild._unpack(kbuild.resolve_source(tree), dest)
    copied = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if not p.is_dir())
    assert copied == [".gitignore", "Kconfig", "Makefile", "mm/cma.c", "mm/new.c",
                      "scripts/link", "scripts/run.sh"]
    assert (dest / "mm" / "cma.c").read_text() == "int cma = 2;\n"
    assert os.readlink(dest / "scripts" / "link") == "run.sh"
    assert os.access(dest / "scripts" / "run.sh", os.X_OK)


def test_a_tracked_file_deleted_in_the_work_tree_is_not_copied(tmp_path: Path) -> None:
    tree = small_repo(tmp_path)
    (tree / "mm" / "cma.c").unlink()
    source = kbuild.resolve_source(tree)
    assert "+dirty:" in source.identity
    kbuild._unpack(source, tmp_path / "copy")
    assert not (tmp_path / "copy" / "mm" / "cma.c").exists()
    assert (tmp_path / "copy" / "Makefile").is_file()


@pytest.mark.parametrize("version", ["5.15", "4.19", "6.0"])
def test_a_kernel_older_than_6_1_is_refused(tmp_path: Path, version: str) -> None:
    tree = small_repo(tmp_path, version)
    with pytest.raises(InputError, match=rf"is Linux {version}: cma-harness needs 6.1 or newer"):
        kbuild.resolve_source(tree)
    tarball = tmp_path / f"linux-{version}.tar.xz"
    subprocess.run(["tar", "-cJf", str(tarball), "-C", str(tmp_path), "linux"], check=True)
    with pytest.raises(InputError, match=rf"is Linux {version}: cma-harness needs 6.1 or newer"):
        kbuild.resolve_source(tarball)


def test_a_directory_that_is_not_a_kernel_tree_is_refused(tmp_path: Path) -> None:
    tree = small_repo(tmp_path)
    (tree / "Makefile").write_text("all:\n\techo hello\n")
    with pytest.raises(InputError, match="is not a kernel tree"):
        kbuild.resolve_source(tree)


def test_a_tree_outside_git_built_in_place_is_refused(tmp_path: Path) -> None:
    tree = small_repo(tmp_path)
    shutil.rmtree(tree / ".git")
    assert kbuild.resolve_source(tree).git is False
    (tree / "arch" / "arm" / "include" / "generated").mkdir(parents=True)
    with pytest.raises(InputError, match=r"was built in place \(arch/arm/include/generated exists\): "
                                         "run 'make mrproper' there"):
        kbuild.resolve_source(tree)


def test_a_git_tree_git_cannot_read_is_one_input_error(tmp_path: Path) -> None:
    tree = small_repo(tmp_path)
    shutil.rmtree(tree / ".git")
    git(tree, "init", "-q")  # no commit yet: there is no HEAD to name
    with pytest.raises(InputError, match=r"kernel source .*linux: git rev-parse failed: fatal: "):
        kbuild.resolve_source(tree)


def test_the_cli_says_one_error_line_for_an_old_tree(tmp_path: Path) -> None:
    tree = small_repo(tmp_path, "5.10")
    proc = subprocess.run([*CLI, "build", "--kernel-src", str(tree)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"cma-harness: error: kernel source {tree} is Linux 5.10: cma-harness needs 6.1 or newer"]


# --- integration: a 7.2 git work tree with a user commit, then a breaking commit ---------------

MATRIX = """\
name = "git-tree"
boards = ["vexpress-a9"]
suites = ["alloc-free", "exhaustion", "dma"]
required_subtests = ["cma-test/alloc-free/area-restored", "cma-test/exhaustion/area-restored",
                     "cma-test/dma/area-restored"]

[[cells]]
cmdline = "cma=32M"
expect = { cma = "reserved", size_mib = 32 }
"""
# The user's commit: a real change to kernel/dma/contiguous.c that says so on the console.
USER_LINE = "cma: default area reserved is 32 MiB at 0x"


def _user_change(tree: Path) -> None:
    """Make the user's change in 7.2's ``kernel/dma/contiguous.c``: log where the default area is."""
    path = tree / "kernel" / "dma" / "contiguous.c"
    text = path.read_text()
    edits = [
        ("\tif (selected_size && !dma_contiguous_default_area) {\n\t\tint ret;\n",
         "\tif (selected_size && !dma_contiguous_default_area) {\n\t\tphys_addr_t base;\n\t\tint ret;\n"),
        ('\t\t\tpr_warn("Couldn\'t queue default CMA region for heap creation.");\n\t}\n',
         '\t\t\tpr_warn("Couldn\'t queue default CMA region for heap creation.");\n\n'
         "\t\tbase = cma_get_base(dma_contiguous_default_area);\n"
         '\t\tpr_info("default area %s is %lu MiB at %pa\\n",\n'
         "\t\t\tcma_get_name(dma_contiguous_default_area),\n"
         "\t\t\tcma_get_size(dma_contiguous_default_area) / SZ_1M, &base);\n\t}\n"),
    ]
    for old, new in edits:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path.write_text(text)


def _kernel_version(tree: Path) -> str:
    fields = dict(line.split(" = ", 1) for line in (tree / "Makefile").read_text().splitlines()[:6]
                  if " = " in line)
    return f"{fields['VERSION']}.{fields['PATCHLEVEL']}.{fields['SUBLEVEL']}"


def _make_base(tarball: Path, tmp: Path) -> str:
    """Unpack ``tarball`` into ``tmp`` and commit it as its release; return the commit."""
    subprocess.run(["tar", "-xf", str(tarball), "-C", str(tmp), "--strip-components=1",
                    "--no-same-owner", "--no-same-permissions"], check=True)
    # Debian's tarball ignores everything at its top level (its packaging's .gitignore stanza);
    # a kernel.org tree does not.
    gitignore = tmp / ".gitignore"
    text = gitignore.read_text()
    if "\n#\n# Debian packaging" in text:
        gitignore.write_text(text[:text.index("\n#\n# Debian packaging") + 1])
    git(tmp, "init", "-q")
    git(tmp, "add", "-f", "-A")  # upstream force-adds a few files its .gitignore matches
    release = "2026-10-28T15:01:00+00:00"
    git(tmp, "commit", "-q", "-m", f"Linux {_kernel_version(tmp)}", GIT_AUTHOR_NAME="Linus Torvalds",
        GIT_AUTHOR_EMAIL="torvalds@linux-foundation.org", GIT_AUTHOR_DATE=release, GIT_COMMITTER_DATE=release)
    return git(tmp, "rev-parse", "HEAD").strip()


@contextlib.contextmanager
def base_repo(tarball: Path) -> Iterator[tuple[Path, str]]:
    """The cached git work tree of ``tarball`` (one commit) and that commit, held locked.

    Made once per tarball (``<cache>/test-trees/git-<digest>/``, about 35 s of ``git add``).
    """
    home = cache_root() / "test-trees"
    home.mkdir(parents=True, exist_ok=True)
    tree = home / f"git-{file_digest(tarball)[:16]}"
    with (home / f"{tree.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        marker = tree / ".git" / "cma-harness-base"
        if not marker.is_file():
            shutil.rmtree(tree, ignore_errors=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{tree.name}-", dir=home))
            try:
                base = _make_base(tarball, tmp)
                (tmp / ".git" / "cma-harness-base").write_text(base + "\n")
                tmp.rename(tree)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        yield tree, marker.read_text().strip()


@pytest.fixture(scope="module")
def user_tree() -> Iterator[tuple[Path, str]]:
    """7.2.13's git work tree with the user's commit on top; yields the tree and that commit."""
    tarball = debsrc.cached_tarball("7.2")
    if not tarball.is_file():
        tarball = kbuild.install_debian_source(Path("/usr/src/linux-source-7.2.tar.xz"), print)
    with base_repo(tarball) as (tree, base):
        git(tree, "reset", "-q", "--hard", base)
        git(tree, "clean", "-q", "-f", "-d", "-x")
        _user_change(tree)
        git(tree, "commit", "-q", "-a", "-m", "dma-contiguous: log where the default area is\n\n"
            "Signed-off-by: A. U. Thor <author@example.org>")
        yield tree, git(tree, "rev-parse", "HEAD").strip()


def _run(tree: Path, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    matrix = tmp_path / "git-tree.toml"
    matrix.write_text(MATRIX)
    proc = subprocess.run([*CLI, "run", "--kernel-src", str(tree), "-m", str(matrix), "-j", "1",
                           "-o", str(tmp_path / "res")], cwd=REPO, capture_output=True, text=True,
                          timeout=5400)
    return proc, tmp_path / "res" / "latest"


def _failing(junit: Path) -> dict[str, str]:
    """Every failing or erroring testcase of ``junit``: name -> its message."""
    return {case.name: r.message or "" for suite in JUnitXml.fromfile(str(junit)) for case in suite
            for r in case.result if isinstance(r, Failure | Error)}


@pytest.mark.integration
def test_a_user_commit_on_7_2_builds_boots_and_passes(user_tree: tuple[Path, str], tmp_path: Path) -> None:
    tree, head = user_tree
    proc, results = _run(tree, tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert _failing(results / "junit.xml") == {}
    kernel = json.loads((results / "run.json").read_text())["kernels"]["vexpress-a9"]
    assert kernel["source_identity"] == f"git:{head}"
    assert kernel["release"].startswith("7.2.13")
    logs = "".join(p.read_text(errors="replace") for p in (results / "logs").glob("*.log"))
    assert USER_LINE in logs  # the user's pr_info: their commit is the kernel that booted


@pytest.mark.integration
def test_a_commit_that_breaks_cma_accounting_is_caught(user_tree: tuple[Path, str], tmp_path: Path) -> None:
    tree, user_head = user_tree
    git(tree, "am", "-q", str(BREAKING))
    try:
        head = git(tree, "rev-parse", "HEAD").strip()
        proc, results = _run(tree, tmp_path)
    finally:
        git(tree, "reset", "-q", "--hard", user_head)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    kernel = json.loads((results / "run.json").read_text())["kernels"]["vexpress-a9"]
    assert kernel["source_identity"] == f"git:{head}"
    failing = _failing(results / "junit.xml")
    print("failing testcases:", sorted(failing))
    # The guest's free-page count (the bitmap, through the series' cma_get_range()) sees the
    # leak; on 7.x debugfs "used" counts available_count, which this patch still restores, so
    # the host's <suite>.no-leak checks pass.
    leaks = {f"cma-test/{suite}/area-restored" for suite in ("alloc-free", "exhaustion", "dma")}
    assert leaks <= set(failing), failing
    assert not {"boot", "cma-reservation", "cma-meminfo", "kernel-log-clean"} & set(failing), failing

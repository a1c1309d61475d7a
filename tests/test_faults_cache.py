"""Faults of the disk and the cache, injected for real on real boots of the cached kernel.

* the results disk fills up mid-run (a small tmpfs mounted as ``-o``), then ``--resume``
  once space is freed;
* a corrupt cache entry (in a copy of the cache, never the real one);
* two runs at once on one cache, with different series.

Each test watches every process the harness starts (QEMU, make, compilers) while it runs
and checks that none outlives it, that every finished cell is on disk, and that the run
completes (or its resume does).  A full disk is infrastructure trouble: one ``error:``
line and exit 2, never a JUnit verdict; a bad patch is a verdict (``CheckFailed``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from junitparser import Error, Failure, JUnitXml

from harness import integrity, kbuild
from harness.cache import file_digest
from harness.integrity import manifest_problems, write_manifest
from tests.test_integration import BREAKING, CLI, REPO

pytestmark = pytest.mark.integration
CMDLINES = ("cma=32M", "cma=48M", "cma=64M")
POWERED_OFF = "reboot: Power down"  # the last line of a finished cell's console log


def _matrix(tmp_path: Path, cmdlines: tuple[str, ...] = CMDLINES, suites: tuple[str, ...] = ()) -> Path:
    path = tmp_path / "matrix.toml"
    path.write_text('boards = ["vexpress-a9"]\ncmdlines = [' + ", ".join(f'"{c}"' for c in cmdlines) + "]\n"
                    + (f"suites = {json.dumps(list(suites))}\n" if suites else ""))
    return path


class Watched:
    """A ``cma-harness`` process and every process it starts, seen by polling ``ps`` while it runs.

    ``seen`` maps each descendant's pid to its command line; ``booted`` holds, per QEMU
    guest, its ``-kernel`` and ``-initrd`` paths and the SHA-256 of the initrd file read
    while that QEMU was running (what it booted).
    """

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.seen: dict[int, str] = {}
        self.booted: dict[int, tuple[str, str, str]] = {}
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while self.proc.poll() is None:
            out = subprocess.run(["ps", "-e", "-ww", "-o", "pid=,ppid=,args="], capture_output=True,
                                 text=True).stdout
            rows = [ln.split(None, 2) for ln in out.splitlines()]
            children: dict[int, list[tuple[int, str]]] = {}
            for row in rows:
                if len(row) == 3:
                    children.setdefault(int(row[1]), []).append((int(row[0]), row[2]))
            todo = [self.proc.pid]
            while todo:
                for pid, args in children.get(todo.pop(), []):
                    # A child seen between fork and exec still shows its parent's command
                    # line: look again when it changes, or QEMU goes unnoticed.
                    if self.seen.get(pid) != args:
                        self.seen[pid] = args
                        self._note_guest(pid, args)
                    todo.append(pid)
            time.sleep(0.05)

    def _note_guest(self, pid: int, args: str) -> None:
        words = args.split()
        if not words or not Path(words[0]).name.startswith("qemu-system") or "-kernel" not in words:
            return
        kernel, initrd = words[words.index("-kernel") + 1], words[words.index("-initrd") + 1]
        self.booted[pid] = (kernel, initrd, hashlib.sha256(Path(initrd).read_bytes()).hexdigest())

    def wait(self, timeout: float = 3600) -> tuple[int, str, str]:
        """Wait for the run (an hour: a cold cache builds kernels); its exit status, stdout, stderr."""
        stdout, stderr = self.proc.communicate(timeout=timeout)
        self._thread.join(timeout=10)
        return self.proc.returncode, stdout, stderr

    def left_behind(self, within: float = 5.0) -> dict[int, str]:
        """Descendants still running ``within`` seconds after the harness ended."""
        deadline = time.monotonic() + within
        while True:
            alive = {pid: args for pid, args in self.seen.items() if _same_process(pid, args)}
            if not alive or time.monotonic() > deadline:
                return alive
            time.sleep(0.05)


def _same_process(pid: int, args: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return cmdline.strip() == args.strip()


def _suites(junit: Path) -> dict[str, tuple[int, int]]:
    """testsuite name -> (failures, errors)."""
    return {s.name: (s.failures, s.errors) for s in JUnitXml.fromfile(str(junit))}


def _published(stdout: str) -> Path:
    """The run directory a run printed as ``JUnit: <dir>/junit.xml``."""
    m = re.search(r"^JUnit: (\S+)/junit\.xml$", stdout, re.M)
    assert m, stdout[-2000:]
    return Path(m.group(1))


# ---------------------------------------------------------------------------------------------
# 1. The results disk fills up mid-run.

# A tmpfs counts whole 4 KiB pages.  run.json, matrix.toml and the board copy take 3;
# a finished cell of this matrix about 19: its console log (~26 KB, 7 pages), its job and
# typed result beside it (logs/<slug>.job.json, .result.json: 1 each), cells/<slug>.json
# (1) and cells/<slug>.xml (~30 KB: the log again, 8 pages).  100 KiB (25 pages) holds the
# first cell, then the disk fills while the second cell's guest is writing its console
# log; 136 KiB (34 pages) holds its log, and fills with one of the files written after it.
DISKS = {"console log": ("100k", (".log",)),
         "cell file": ("136k", (".job.json", ".result.json", ".json", ".xml"))}


@pytest.fixture(params=list(DISKS.values()), ids=list(DISKS))
def small_disk(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Path, tuple[str, ...]]]:
    """A tmpfs of DISKS' size, mounted in ``tmp_path``; and the endings of the file it fills on."""
    size, fills = request.param
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs CAP_SYS_ADMIN): {made.stderr.strip()}")
    try:
        yield mount, fills
    finally:
        if subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_mid_run_stops_with_one_error_and_resume_completes(
        tmp_path: Path, small_disk: tuple[Path, tuple[str, ...]]) -> None:
    disk, fills = small_disk
    root = disk / "res"
    run = Watched([*CLI, "run", "-j1", "-m", str(_matrix(tmp_path)), "-o", str(root)])
    rc, stdout, stderr = run.wait()
    assert rc == 2, stdout[-2000:] + stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    errors = [ln for ln in stderr.splitlines() if "error:" in ln]
    assert len(errors) == 1 and errors[0].startswith("cma-harness: error: cannot write "), stderr
    assert errors[0].count("No space left on device") == 1, errors
    assert not run.left_behind(), "processes outlived the harness"
    assert any(" -kernel " in args for args in run.seen.values()), "no guest ran"

    # Every finished cell is on disk, whole; nothing is published, nothing half written.
    [partial] = root.glob(".*.partial")
    written = m.group(1) if (m := re.search(r"cannot write (\S+): ", errors[0])) else ""
    assert Path(written).parent in (partial / "logs", partial / "cells"), errors
    assert Path(written).name.endswith(fills), errors
    assert f"'cma-harness run --resume {partial}' completes the run" in stderr
    assert sorted(p.name for p in root.iterdir()) == [partial.name]
    assert not [p for p in partial.rglob("*") if p.name.endswith(".tmp")]
    done = {p.stem: p.read_bytes() for p in partial.glob("cells/*.xml")}
    assert 1 <= len(done) < len(CMDLINES), done.keys()
    for slug in done:
        (suite,) = JUnitXml.fromfile(str(partial / "cells" / f"{slug}.xml"))
        assert (suite.failures, suite.errors, suite.tests > 5) == (0, 0, True), slug
        assert POWERED_OFF in (partial / "logs" / f"{slug}.log").read_text(errors="replace"), slug
        assert POWERED_OFF in done[slug].decode(), slug  # the log again, in <system-out>

    # Free space, resume: the rest runs, the kept cells stay as they were, the run is published.
    subprocess.run(["mount", "-o", "remount,size=4m", str(disk)], check=True)
    resumed = Watched([*CLI, "run", "--resume", str(partial)])
    rc, stdout, stderr = resumed.wait()
    assert rc == 0, stdout[-2000:] + stderr[-2000:]
    assert f"{len(done)} of {len(CMDLINES)} cell(s) already done" in stdout
    assert not resumed.left_behind()
    final = root / partial.name[1:-len(".partial")]
    assert _published(stdout) == final and (root / "latest").resolve() == final
    assert not partial.exists()
    assert {slug: (final / "cells" / f"{slug}.xml").read_bytes() for slug in done} == done
    suites = _suites(final / "junit.xml")
    assert len(suites) == len(CMDLINES) and all(c == (0, 0) for c in suites.values()), suites


# ---------------------------------------------------------------------------------------------
# 2. A corrupt cache entry.

@pytest.fixture(scope="module")
def cached_a9() -> tuple[Path, Path]:
    """The real cache's vexpress-a9 kernel and initramfs entries (built here the first time)."""
    proc = subprocess.run([*CLI, "build", "--board", "vexpress-a9"], cwd=REPO, capture_output=True,
                          text=True, timeout=3600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    zimage = re.search(r"^zImage: (\S+)$", proc.stdout, re.M)
    initramfs = re.search(r"^initramfs: (\S+)$", proc.stdout, re.M)
    assert zimage and initramfs, proc.stdout
    return Path(zimage.group(1)).parent, Path(initramfs.group(1)).parent


def test_a_corrupt_initramfs_entry_is_rebuilt_with_a_warning_never_booted(
        tmp_path: Path, cached_a9: tuple[Path, Path]) -> None:
    """In a copy of the cache (the real one stays untouched): the initramfs's bytes are
    overwritten in the middle, its size kept, as a bad sector or a stray write would."""
    kernel, initramfs = cached_a9
    cache = tmp_path / "cache"
    for entry in (kernel, initramfs, kernel.parent.parent / "busybox"):
        shutil.copytree(entry, cache / entry.relative_to(kernel.parent.parent), symlinks=True)
    entry = cache / "rootfs" / initramfs.name
    archive = entry / "initramfs.cpio.gz"
    data = bytearray(archive.read_bytes())
    data[len(data) // 2:len(data) // 2 + 4096] = bytes(4096)
    archive.write_bytes(bytes(data))
    corrupt = hashlib.sha256(data).hexdigest()

    run = Watched([*CLI, "run", "-j1", "-m", str(_matrix(tmp_path)), "-o", str(tmp_path / "res")],
                  env={**os.environ, "CMA_HARNESS_CACHE": str(cache)})
    rc, stdout, stderr = run.wait()
    assert rc == 0, stdout[-2000:] + stderr[-2000:]
    assert stderr.splitlines() == [f"cma-harness: warning: cached {entry} is corrupt "
                                   "(initramfs.cpio.gz changed): rebuilding it"], stderr
    assert f"initramfs ready ({archive})" in stdout
    assert not run.left_behind()
    # Every guest booted the rebuilt archive, the one its new manifest vouches for.
    assert len(run.booted) == len(CMDLINES), run.booted
    assert {initrd for _, initrd, _ in run.booted.values()} == {str(archive)}
    assert {sha for _, _, sha in run.booted.values()} == {hashlib.sha256(archive.read_bytes()).hexdigest()}
    assert corrupt not in {sha for _, _, sha in run.booted.values()}
    assert manifest_problems(entry) == [] and not [p for p in (cache / "rootfs").iterdir() if p != entry]
    suites = _suites(tmp_path / "res" / "latest" / "junit.xml")
    assert len(suites) == len(CMDLINES) and all(c == (0, 0) for c in suites.values()), suites
    assert manifest_problems(initramfs) == [] and manifest_problems(kernel) == []  # the real cache


# ---------------------------------------------------------------------------------------------
# 3. Two runs at once on one cache, with different series.

def test_two_runs_at_once_with_different_series_keep_their_own_kernels(tmp_path: Path) -> None:
    """Run A: the series; run B: the series plus the patch that leaks CMA pages
    (test_compare_names_the_testcases_a_bad_patch_regressed), both into one results root.
    cma=0 has no area, so B's bad patch cannot show there: that cell is green in both."""
    matrix = _matrix(tmp_path, ("cma=0", "cma=64M"), ("alloc-free", "exhaustion"))
    root = tmp_path / "res"
    argv = [*CLI, "run", "-j1", "-m", str(matrix), "-o", str(root)]
    runs = {"A": Watched(argv), "B": Watched([*argv, "--patch", str(BREAKING)])}
    ended = {name: run.wait() for name, run in runs.items()}
    assert ended["A"][0] == 0, ended["A"][1][-3000:] + ended["A"][2][-2000:]
    assert ended["B"][0] == 1, ended["B"][1][-3000:] + ended["B"][2][-2000:]
    assert not [ln for _, _, err in ended.values() for ln in err.splitlines()], ended
    for run in runs.values():
        assert not run.left_behind()
    dirs = {name: _published(stdout) for name, (_, stdout, _) in ended.items()}
    assert dirs["A"] != dirs["B"] and {d.parent for d in dirs.values()} == {root}
    assert (root / "latest").resolve() in dirs.values()

    # Each run's guests booted that run's own kernel and initramfs, and no other.
    booted = {name: {(k, i) for k, i, _ in run.booted.values()} for name, run in runs.items()}
    assert all(len(b) == 1 for b in booted.values()), booted
    assert not booted["A"] & booted["B"] and len({k for b in booted.values() for k, _ in b}) == 2

    info = {name: json.loads((d / "run.json").read_text()) for name, d in dirs.items()}
    kernels = {name: i["kernels"]["vexpress-a9"] for name, i in info.items()}
    series = [p["sha256"] for p in kernels["A"]["patches"]]
    assert [p["sha256"] for p in kernels["B"]["patches"]] == [
        *series, hashlib.sha256(BREAKING.read_bytes()).hexdigest()]
    assert kernels["B"]["patches"][-1]["name"] == f"extra/{BREAKING.name}"
    assert kernels["A"]["series_hash"] != kernels["B"]["series_hash"]
    assert kernels["A"]["build_key"] != kernels["B"]["build_key"]
    for name in runs:
        [(zimage, _)] = booted[name]
        assert Path(zimage).parent.name == kernels[name]["build_key"][:16], (name, zimage)
        assert manifest_problems(Path(zimage).parent) == []
        assert info[name]["invocation"]["patches"] == ([str(BREAKING.resolve())] if name == "B" else [])
        for suite in JUnitXml.fromfile(str(dirs[name] / "junit.xml")):
            props = {p.name: p.value for p in suite.properties()}
            assert props["series.hash"] == kernels[name]["series_hash"], (name, suite.name)

    # A is green; B's cma=64M cell fails the leak checks: verdicts on the kernel, no <error>.
    assert _suites(dirs["A"] / "junit.xml") == {"vexpress-a9:cma=0": (0, 0), "vexpress-a9:cma=64M": (0, 0)}
    b_suites = {s.name: s for s in JUnitXml.fromfile(str(dirs["B"] / "junit.xml"))}
    assert (b_suites["vexpress-a9:cma=0"].failures, b_suites["vexpress-a9:cma=0"].errors) == (0, 0)
    results = {c.name: r for c in b_suites["vexpress-a9:cma=64M"] for r in c.result}
    failed = {name for name, r in results.items() if isinstance(r, Failure)}
    assert {"cma-debugfs[reserved]", "cma-test/alloc-free.no-leak",
            "cma-test/exhaustion/area-restored"} <= failed
    assert {r.type for r in results.values() if isinstance(r, Failure)} == {"CheckFailed"}
    assert not [r for r in results.values() if isinstance(r, Error)]
    assert not {"boot", "cma-reservation", "kernel-log-clean"} & failed


def test_an_entry_another_run_sets_aside_while_this_one_checks_it_is_rebuilt_not_a_crash(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The race of two runs on one cache with a corrupt entry: run Y renames the entry aside
    (integrity.discard_corrupt) while run X is still hashing its files.  X crashed with a
    FileNotFoundError traceback; now the vanished files are problems and X rebuilds.  (The
    window is milliseconds, so the other run's rename is made at the moment X hashes.)"""
    monkeypatch.setenv("CMA_HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(kbuild, "build_key", lambda request, toolchain: "ab" * 32)
    entry = tmp_path / "cache" / "kernels" / ("ab" * 8)
    entry.mkdir(parents=True)
    info = {"key": "ab" * 32, "release": "6.1.192", "config_hash": "c", "series_hash": "s",
            "toolchain": "t", "source": "src", "source_identity": "i", "tree": str(tmp_path)}
    (entry / "build.json").write_text(json.dumps(info))
    (entry / "zImage").write_bytes(b"\0" * 4096)
    write_manifest(entry)

    def other_run_sets_it_aside(path: Path) -> str:
        if entry.exists():
            entry.rename(entry.with_name(".corrupt-elsewhere"))
        return file_digest(path)

    monkeypatch.setattr(integrity, "file_digest", other_run_sets_it_aside)
    request: kbuild.BuildRequest = None  # type: ignore[assignment]  # build_key is patched
    assert kbuild.cached_build(request, "t") is None
    err = capsys.readouterr().err
    assert "zImage is unreadable (No such file or directory)" in err and "rebuilding it" in err

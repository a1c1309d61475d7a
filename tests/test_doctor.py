"""``cma-harness doctor``: the real checks pass on this host, and each kind of problem is found.

Problems are made by pointing ``PATH`` at a directory of symlinks to every
program on the real ``PATH`` but the one hidden (or with a fake in its place),
by a board whose machine QEMU lacks, by an impossible free-space threshold and
by an empty cache.  Nothing here builds a kernel (``_prepare`` is made to fail).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from harness import cli, doctor
from harness.boards import Board, available_boards, load_board

BOARDS = ("vexpress-a9", "vexpress-a15", "smdkc210", "virt")


@pytest.fixture
def four_boards() -> list[Board]:
    assert set(BOARDS) <= set(available_boards())
    return [load_board(name) for name in BOARDS]


def _path_without(farm: Path, hidden: set[str], fakes: dict[str, str] | None = None) -> str:
    """A ``PATH`` value: ``farm`` holding symlinks to every program on ``PATH`` but ``hidden``.

    ``fakes`` maps a program name to the text of a script put there instead.
    """
    farm.mkdir()
    for directory in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for entry in os.scandir(directory):
            link = farm / entry.name
            if entry.name in hidden or link.is_symlink() or entry.is_dir():
                continue
            if os.access(entry.path, os.X_OK):
                link.symlink_to(entry.path)
    for name, script in (fakes or {}).items():
        (farm / name).unlink(missing_ok=True)
        (farm / name).write_text(script)
        (farm / name).chmod(0o755)
    return str(farm)


def _without_libc_headers(compiler: str) -> str:
    """A script running ``compiler`` with only its own headers, as when the libc's are not installed."""
    own = subprocess.run([compiler, "-print-file-name=include"], capture_output=True, text=True,
                         check=True).stdout.strip()
    return f"#!/bin/sh\nexec {compiler} -nostdinc -isystem {own} \"$@\"\n"


def test_this_host_is_ready_for_every_board(four_boards: list[Board]) -> None:
    started = time.monotonic()
    findings = doctor.examine(four_boards)
    elapsed = time.monotonic() - started
    assert findings.problems == (), [p.line() for p in findings.problems]
    assert doctor.check(four_boards) == []
    assert elapsed < 10, f"doctor took {elapsed:.1f} s"
    passed = "\n".join(findings.passed)
    assert "arm-linux-gnueabihf-gcc (gcc " in passed and "links a static ARM program" in passed
    assert "qemu-system-arm knows smdkc210: machine smdkc210" in passed
    assert "Python 3." in passed and "GiB free in" in passed


def test_a_missing_tool_is_one_problem_naming_its_package(
        four_boards: list[Board], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", _path_without(tmp_path / "bin", {"rsync"}))
    problems = doctor.check(four_boards)
    assert [p.package for p in problems] == ["rsync"], [p.line() for p in problems]
    assert problems[0].line() == "missing rsync, needed for make headers_install (Debian package rsync)"


def test_a_tool_outside_path_says_where_it_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not os.path.exists("/usr/sbin/depmod"):
        pytest.skip("depmod is not in /usr/sbin here")
    monkeypatch.setenv("PATH", _path_without(tmp_path / "bin", {"depmod"}))
    depmod = next(t for t in doctor.TOOLS if t.command == "depmod")
    (problem,) = doctor.check_tools([depmod]).problems
    assert problem.line() == "depmod is not on PATH but in /usr/sbin: add that directory to PATH"


def test_a_missing_cross_compiler_is_named_once(
        four_boards: list[Board], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", _path_without(tmp_path / "bin", {"arm-linux-gnueabihf-gcc"}))
    problems = doctor.check(four_boards)
    assert [p.package for p in problems] == ["gcc-arm-linux-gnueabihf"], [p.line() for p in problems]


@pytest.mark.parametrize(("script", "package", "said"), [
    # a broken compiler (the real one's message when cc1 is missing)
    ("#!/bin/sh\necho 'arm-linux-gnueabihf-gcc: fatal error: cannot execute cc1' >&2\nexit 1\n",
     "gcc-arm-linux-gnueabihf", "cannot execute cc1"),
    # the real compiler without its libc headers, as without libc6-dev-armhf-cross
    ("", "libc6-dev-armhf-cross", "stdio.h: No such file or directory"),
    # a "cross" compiler that builds for the host
    ("#!/bin/sh\nexec gcc \"$@\"\n", "gcc-arm-linux-gnueabihf", "right machine"),
], ids=["broken-compiler", "no-libc-headers", "host-compiler"])
def test_a_cross_compiler_that_cannot_link_a_static_arm_program_is_a_problem(
        four_boards: list[Board], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        script: str, package: str, said: str) -> None:
    real = shutil.which("arm-linux-gnueabihf-gcc")
    assert real is not None
    fakes = {"arm-linux-gnueabihf-gcc": script or _without_libc_headers(real)}
    monkeypatch.setenv("PATH", _path_without(tmp_path / "bin", set(), fakes))
    problems = doctor.check(four_boards)
    assert [p.package for p in problems] == [package], [p.line() for p in problems]
    assert said in problems[0].what and problems[0].what.startswith("arm-linux-gnueabihf-gcc ")


def test_host_compiler_without_libc_headers_blames_libc6_dev(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_gcc = shutil.which("gcc")
    assert real_gcc is not None
    fakes = {"gcc": _without_libc_headers(real_gcc)}
    monkeypatch.setenv("PATH", _path_without(tmp_path / "bin", set(), fakes))
    host = next(c for c in doctor.COMPILES if c.compiler == "gcc")
    (problem,) = doctor.check_compile(host).problems
    assert problem.package == "libc6-dev" and "stdio.h" in problem.what


def test_a_missing_header_names_its_package() -> None:
    (problem,) = doctor.check_header(doctor.Header("no/such-header.h", "libno-dev", "nothing")).problems
    assert problem.line().startswith("missing the header <no/such-header.h>, needed for nothing (")
    assert problem.line().endswith("(Debian package libno-dev)")


def test_a_board_whose_machine_qemu_lacks_names_the_board_file(four_boards: list[Board]) -> None:
    odd = dataclasses.replace(four_boards[0], machine="no-such-machine")
    problems = doctor.check([*four_boards[1:], odd])
    assert [p.line() for p in problems] == [
        f"{odd.file}: QEMU's qemu-system-arm has no machine 'no-such-machine' "
        "(Debian package qemu-system-arm)"]
    assert str(odd.file).endswith("boards/vexpress-a9.toml")
    (cpu,) = doctor.check_qemu([dataclasses.replace(odd, machine="virt", cpu="no-such-cpu")]).problems
    assert cpu.what.endswith("has no CPU 'no-such-cpu'")


def test_qemu_is_asked_once_for_all_boards(four_boards: list[Board], monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    real = doctor._run

    def counting(argv: list[str], stdin: str = "", cwd: Path | None = None) -> tuple[int, str, str]:
        calls.append(argv)
        return real(argv, stdin, cwd)

    monkeypatch.setattr(doctor, "_run", counting)
    assert doctor.check_qemu(four_boards).problems == ()
    assert [a[1:] for a in calls].count(["-machine", "help"]) == 1
    assert [a[1:] for a in calls].count(["-cpu", "help"]) == 1


def test_too_little_free_space_in_the_cache_says_how_much_and_where(
        four_boards: list[Board], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor, "MIN_FREE_GIB", 1e9)
    (problem,) = doctor.check(four_boards)
    assert problem.package == ""
    assert problem.what.startswith("only ") and " GiB free in " in problem.what
    assert "a kernel build needs 1000000000 GiB" in problem.what


def test_an_empty_cache_is_created_and_lacks_busybox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "new" / "cache"
    monkeypatch.setenv("CMA_HARNESS_CACHE", str(cache))
    assert doctor.check_disk().problems == () and cache.is_dir()
    (problem,) = doctor.check_busybox().problems
    assert problem.line() == (f"missing the armhf busybox {cache}/busybox/bin/busybox: run "
                              "scripts/install-deps.sh (Debian package busybox-static:armhf, "
                              "unpacked into the cache)")
    (cache / "busybox" / "bin").mkdir(parents=True)
    shutil.copy2("/bin/true", cache / "busybox" / "bin" / "busybox")  # the host's, not ARM
    (problem,) = doctor.check_busybox().problems
    assert "is not an executable 32-bit ARM busybox" in problem.what


def test_need_build_false_checks_only_what_booting_needs(
        four_boards: list[Board], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", _path_without(tmp_path / "bin", {"rsync", "arm-linux-gnueabihf-gcc"}))
    monkeypatch.setenv("CMA_HARNESS_CACHE", str(tmp_path / "cache"))  # no busybox there
    assert doctor.check(four_boards, need_build=False) == []
    assert len(doctor.check(four_boards)) == 3


def test_host_not_ready_carries_every_problem() -> None:
    problems = [doctor.Problem("missing a", "pa"), doctor.Problem("no room")]
    with pytest.raises(doctor.HostNotReady) as caught:
        doctor.raise_if_problems(problems)
    assert caught.value.problems == tuple(problems)
    assert str(caught.value) == "missing a (Debian package pa); no room"
    doctor.raise_if_problems([])


def test_cli_doctor_passes_here(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["doctor"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert "ok: arm-linux-gnueabihf-gcc (gcc " in captured.out
    for board in BOARDS:
        assert f"ok: qemu-system-arm knows {board}:" in captured.out


def test_cli_doctor_names_one_missing_tool_in_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", _path_without(tmp_path / "bin", {"rsync"}))
    assert cli.main(["doctor", "--board", "virt"]) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        "cma-harness: error: missing rsync, needed for make headers_install (Debian package rsync)"]
    assert captured.out == ""


def test_cli_doctor_prints_one_line_per_problem(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", _path_without(tmp_path / "bin", {"rsync", "bc"}))
    assert cli.main(["doctor"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and all(line.startswith("cma-harness: error: missing ") for line in lines)


@pytest.mark.parametrize("argv", [
    ["build"], ["boot", "--board", "virt"], ["run", "--board", "smdkc210", "--cmdline", "cma=64M"],
])
def test_build_run_and_boot_stop_before_building_when_the_host_is_not_ready(
        argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    def no_build(*args: object) -> None:
        raise AssertionError("the preflight should have stopped this before any build")

    monkeypatch.setattr(cli, "_prepare", no_build)
    monkeypatch.setenv("PATH", _path_without(tmp_path / "bin", {"rsync"}))
    assert cli.main([*argv, *(["-o", str(tmp_path / "results")] if argv[0] == "run" else [])]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "cma-harness: error: missing rsync, needed for make headers_install (Debian package rsync)"]
    assert not (tmp_path / "results").exists()


def test_run_list_needs_no_preflight(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", _path_without(tmp_path / "bin", {"rsync"}))
    assert cli.main(["run", "--list", "--board", "virt"]) == 0
    assert capsys.readouterr().err == ""

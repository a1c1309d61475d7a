"""Bad input is one error line and exit 2: never a traceback, never a hang, nothing written.

Every CLI test drives ``harness.cli.main`` in this process.  Nothing here may
build a kernel or boot QEMU: the autouse fixture turns the host check, the
kernel build and QEMU into a sentinel exception, so input that is wrongly let
through fails the test instead of starting work.  A FIFO that would block an
``open()`` is broken out of by SIGALRM (see :func:`no_hang`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import signal
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from harness import boards, cli, kbuild, qemu
from harness.boards import load_board, parse_board
from harness.errors import InputError
from tests.conftest import kernel_tree

REPO = Path(__file__).parents[1]
BOARD_FILE = REPO / "boards" / "vexpress-a9.toml"
BASE = Path(__file__).parent / "fixtures" / "junit" / "base.xml"
NOT_UTF8 = b"# \xff\xfe not UTF-8\n"


class Reached(Exception):
    """Input that should have been refused got as far as the host check, a build or QEMU."""


class Hung(Exception):
    """An open() blocked (a FIFO); not an OSError, so no ``except OSError`` can swallow it."""


@pytest.fixture(autouse=True)
def nothing_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    def reached(what: str) -> Any:
        def stop(*args: object, **kwargs: object) -> None:
            raise Reached(f"bad input reached {what}")
        return stop

    monkeypatch.setattr(cli, "preflight", reached("the host check (preflight)"))
    monkeypatch.setattr(kbuild, "build_kernel", reached("the kernel build"))
    monkeypatch.setattr(qemu, "qemu_version", reached("QEMU"))
    monkeypatch.setenv(boards.BOARDS_ENV, "")  # --boards-dir sets it: restored (unset) after the test


@contextlib.contextmanager
def no_hang(seconds: int = 5) -> Iterator[None]:
    """Raise :class:`Hung` in this thread after ``seconds`` (an open() of a FIFO is interrupted)."""
    def alarm(signum: int, frame: FrameType | None) -> None:
        raise Hung(f"hung for {seconds} s (opened a FIFO?)")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def one_error(argv: list[str], capsys: pytest.CaptureFixture[str], names: str | Path) -> str:
    """Run the CLI; assert exit 2 and exactly one ``cma-harness: error:`` line naming ``names``."""
    with no_hang():
        status = cli.main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert status == 2, err
    assert len(lines) == 1 and lines[0].startswith("cma-harness: error:"), err
    assert str(names) in lines[0], lines[0]
    return lines[0]


def board_data() -> dict[str, Any]:
    return tomllib.loads(BOARD_FILE.read_text())


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _matrix(tmp_path: Path, boards_: str = '"vexpress-a9"', cmdlines: str = '"cma=64M"') -> Path:
    path = tmp_path / "m.toml"
    path.write_text(f"boards = [{boards_}]\ncmdlines = [{cmdlines}]\n")
    return path


def _empty(directory: Path) -> bool:
    return not directory.exists() or not any(directory.iterdir())


# -- A. board files ------------------------------------------------------------------------------


@pytest.mark.parametrize("section,key", [
    (None, "network"), ("qemu", "netdev"), ("memory", "bankz"), ("loader", "kernel_offset"),
    ("kernel", "cmdline"), ("console", "baud"),
])
def test_unknown_sections_and_keys_are_named(section: str | None, key: str) -> None:
    data = board_data()
    (data[section] if section else data)[key] = {} if section is None else 1
    with pytest.raises(InputError) as exc:
        parse_board("x", data, "x.toml")
    where = "x.toml" if section is None else f"x.toml [{section}]"
    what = "section" if section is None else "key"
    assert str(exc.value).startswith(f"{where}: unknown {what}(s) {key} (known: ")


def test_unknown_key_in_a_bank_is_named() -> None:
    data = board_data()
    data["memory"]["banks"][0]["node"] = 1
    with pytest.raises(InputError, match=r"^x.toml \[memory\] banks\[0\]: unknown key\(s\) node"):
        parse_board("x", data, "x.toml")


@pytest.mark.parametrize("section,key,value,msg", [
    ("qemu", "cpu", 5, "key 'cpu' must be a str, got 5"),
    ("qemu", "smp", 0, "key 'smp' must be 1..8, got 0"),
    ("qemu", "smp", 1 << 20, "key 'smp' must be 1..8"),
    ("qemu", "memory_mib", 0, "key 'memory_mib' must be >= 1, got 0"),
    ("qemu", "memory_mib", -512, "key 'memory_mib' must be >= 1"),
    ("qemu", "allow_unsafe_args", "yes", "key 'allow_unsafe_args' must be a bool"),
    ("memory", "max_mib", 0, "key 'max_mib' must be >= 1"),
    ("loader", "dtb_align", 0, "key 'dtb_align' must be >= 1, got 0"),
    ("loader", "dtb_align", 3000, "'dtb_align' must be a power of two"),
    ("loader", "initrd_offset", -1, "key 'initrd_offset' must be >= 0"),
    ("qemu", "machine", "vexpress-a9,dumpdtb=/tmp/x.dtb", "'machine' must be a QEMU machine name"),
    ("qemu", "machine", "", "'machine' must be a QEMU machine name"),
    ("qemu", "cpu", "cortex-a9,pmu=off", "'cpu' must be a QEMU CPU name"),
    ("kernel", "dtb", "../../../../etc/passwd", "'dtb' must be a bare file name ending in .dtb"),
    ("kernel", "dtb", "/boot/x.dtb", "'dtb' must be a bare file name ending in .dtb"),
    ("kernel", "dtb", "vexpress-v2p-ca9", "'dtb' must be a bare file name ending in .dtb"),
    ("kernel", "dtb", "..dtb", "'dtb' must be a bare file name ending in .dtb"),
    ("kernel", "fragments", ["lean.config", "../../x.config"], "fragment '../../x.config' must be a bare"),
    ("kernel", "fragments", ["/etc/passwd"], "fragment '/etc/passwd' must be a bare"),
    ("kernel", "fragments", ["cma.cfg"], "fragment 'cma.cfg' must be a bare file name ending in .config"),
    ("kernel", "defconfig", "-j1000", "'defconfig' must be a defconfig target name"),
    ("console", "device", "ttyAMA0 init=/bin/sh", "'device' must be a device name"),
    ("console", "kernel_args", ["console=ttyAMA0\ninit=/bin/sh"], "kernel_args: kernel cmdline"),
])
def test_board_types_and_ranges(section: str, key: str, value: object, msg: str) -> None:
    data = board_data()
    data[section][key] = value
    with pytest.raises(InputError, match=re.escape(msg)) as exc:
        parse_board("x", data, "x.toml")
    assert str(exc.value).startswith(f"x.toml [{section}]")


@pytest.mark.parametrize("banks,msg", [
    ([(0x60000000, 0x10000000), (0x68000000, 0x10000000)], "banks overlap: 0x60000000+0x10000000"),
    ([(0x60000000, 0x20000000), (0x90000000, 0)], "banks[1]: key 'size' must be >= 1, got 0"),
    ([(-0x1000, 0x20000000)], "banks[0]: key 'base' must be >= 0"),
    ([((1 << 40) - (256 << 20), 0x20000000)], "banks[0]: ends at 0x10010000000, above the 40-bit"),
])
def test_bad_banks(banks: list[tuple[int, int]], msg: str) -> None:
    data = board_data()
    data["memory"]["banks"] = [{"base": b, "size": s} for b, s in banks]
    with pytest.raises(InputError, match=re.escape(msg)) as exc:
        parse_board("x", data, "x.toml")
    assert str(exc.value).startswith("x.toml [memory]")


def test_banks_are_sorted_by_base() -> None:
    data = board_data()
    data["memory"]["banks"] = [{"base": 0x80000000, "size": 256 << 20},
                               {"base": 0x60000000, "size": 256 << 20}]
    board = parse_board("x", data, "x.toml")
    assert [b.base for b in board.ram] == [0x60000000, 0x80000000]


REFUSED_QEMU_ARGS = [
    ["-netdev", "user,id=n0"], ["-nic", "user"], ["-net", "nic"], ["--netdev", "user,id=n0"],
    ["-monitor", "tcp::4444,server,nowait"], ["-qmp", "unix:/tmp/q,server"],
    ["-chardev", "socket,id=c0,path=/tmp/s"], ["-serial", "tcp::5555"],
    ["-drive", "file=/etc/shadow,format=raw"], ["-fsdev", "local,id=f,path=/"],
    ["-virtfs", "local,path=/,mount_tag=h"], ["-device", "virtio-net-device,netdev=n0"],
    ["-device", "virtio-9p-device,fsdev=f"], ["-object", "memory-backend-file,id=m,mem-path=/etc"],
    ["-plugin", "/tmp/x.so"], ["-gdb", "tcp::1234"], ["-s"], ["-S"], ["-incoming", "tcp:0:4444"],
    ["-loadvm", "snap"], ["-writeconfig", "/tmp/x"], ["-readconfig", "/etc/x"],
    ["-add-fd", "fd=3,set=1"], ["-sandbox", "off"], ["-semihosting"], ["-D", "/tmp/qemu.log"],
    ["-kernel", "/boot/vmlinuz"], ["-machine", "dumpdtb=/tmp/x.dtb"], ["-M", "virt"],
    ["-machine", "highmem=off,firmware=/etc/passwd"], ["-icount", "shift=1,rr=record,rrfile=/tmp/r"],
    ["-accel", "kvm"], ["-accel", "tcg,thread=multi,,x=y"], ["-rtc", "base=utc,clock=host,foo"],
    ["-rtc"], ["-global", "virtio-net-pci.romfile=/etc/passwd"], ["-global", "pl011.chardev=serial0"],
    ["-global", "driver=pl011,property=chardev,value=x"], ["-global", "loader.file=x"],
    ["-rtc", "base=utc", "-netdev", "user"], ["base=utc"],
]


@pytest.mark.parametrize("extra", REFUSED_QEMU_ARGS, ids=lambda a: " ".join(a))
def test_unsafe_qemu_args_are_refused(extra: list[str]) -> None:
    data = board_data()
    data["qemu"]["extra_args"] = extra
    with pytest.raises(InputError, match=r"^x.toml \[qemu\]: extra_args\[\d\]: .*allow_unsafe_args = true"):
        parse_board("x", data, "x.toml")


@pytest.mark.parametrize("extra", [
    [], ["-rtc", "base=utc,clock=vm,driftfix=slew"], ["--rtc", "base=2020-01-01T00:00:00"],
    ["-icount", "7"], ["-icount", "shift=auto,align=off,sleep=on"], ["-accel", "tcg"],
    ["-accel", "tcg,thread=single,tb-size=64"], ["-machine", "highmem=off"], ["-M", "gic-version=3"],
    ["-global", "virtio-mmio.force-legacy=false"], ["-rtc", "base=utc", "-icount", "auto"],
], ids=lambda a: " ".join(a) or "none")
def test_safe_qemu_args_are_allowed(extra: list[str]) -> None:
    """A guard against an over-strict allow-list (these pass before and after the fix)."""
    data = board_data()
    data["qemu"]["extra_args"] = extra
    assert parse_board("x", data, "x.toml").qemu_args == tuple(extra)


def test_allow_unsafe_args_lets_a_board_opt_out_explicitly() -> None:
    data = board_data()
    data["qemu"]["extra_args"] = ["-netdev", "user,id=n0"]
    data["qemu"]["allow_unsafe_args"] = True
    assert parse_board("x", data, "x.toml").qemu_args == ("-netdev", "user,id=n0")


def test_every_shipped_board_still_loads() -> None:
    for name in boards.available_boards((REPO / "boards",)):
        assert load_board(name, (REPO / "boards",)).name == name


def test_board_file_not_utf8_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "b.toml").write_bytes(BOARD_FILE.read_bytes() + NOT_UTF8)
    with pytest.raises(InputError, match=rf"^{re.escape(str(tmp_path / 'b.toml'))}: not UTF-8 text"):
        load_board("b", (tmp_path,))


def test_board_file_that_is_a_fifo_is_refused_unopened(tmp_path: Path) -> None:
    _fifo(tmp_path / "b.toml")
    with no_hang(), pytest.raises(InputError, match=r"b.toml: not a regular file"):
        load_board("b", (tmp_path,))


def test_whole_kernel_cmdline_over_1023_bytes_is_refused(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """The cell's part alone (1000 bytes) is fine; with console= and the harness's it is not."""
    long = "cma=64M " + "x" * 992
    assert len(long) == 1000
    matrix = _matrix(tmp_path, cmdlines=f'"cma=32M", "{long}"')
    line = one_error(["run", "-m", str(matrix), "--list", "-o", str(tmp_path / "res")], capsys, matrix)
    assert f"cell 'vexpress-a9:{long[:60]}" in line and "(1000 bytes)" in line
    assert "kernel cmdline is 1048 bytes; ARM allows at most 1023" in line
    assert not (tmp_path / "res").exists()
    # boot: the --cmdline with the board's and the harness's arguments.
    line = one_error(["boot", "--cmdline", long + "y" * 10], capsys, "--cmdline")
    assert "ARM allows at most 1023" in line


# -- B. the CLI: one error line, exit 2 ----------------------------------------------------------


def test_matrix_not_utf8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    matrix = _matrix(tmp_path)
    matrix.write_bytes(matrix.read_bytes() + NOT_UTF8)
    line = one_error(["run", "-m", str(matrix), "-o", str(tmp_path / "res")], capsys, matrix)
    assert "not UTF-8 text" in line and not (tmp_path / "res").exists()


def test_board_file_not_utf8_via_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mine = tmp_path / "boards"
    mine.mkdir()
    (mine / "mine.toml").write_bytes(BOARD_FILE.read_bytes().replace(b"# ARM", b"# \xe9 ARM"))
    matrix = _matrix(tmp_path, boards_='"mine"')
    line = one_error(["run", "--boards-dir", str(mine), "-m", str(matrix), "-o", str(tmp_path / "res")],
                     capsys, mine / "mine.toml")
    assert "not UTF-8 text" in line and not (tmp_path / "res").exists()


def test_board_file_that_is_a_fifo_via_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mine = tmp_path / "boards"
    mine.mkdir()
    _fifo(mine / "mine.toml")
    matrix = _matrix(tmp_path, boards_='"mine"')
    line = one_error(["run", "--boards-dir", str(mine), "-m", str(matrix), "--list"], capsys,
                     mine / "mine.toml")
    assert "not a regular file" in line


def test_matrix_that_is_a_fifo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = _fifo(tmp_path / "m.toml")
    line = one_error(["run", "-m", str(fifo), "-o", str(tmp_path / "res")], capsys, fifo)
    assert "not a regular file" in line and not (tmp_path / "res").exists()


def test_junit_inputs_that_are_fifos(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = _fifo(tmp_path / "junit-fifo.xml")
    run = tmp_path / "run"
    run.mkdir()
    _fifo(run / "junit.xml")
    for argv, named in [(["compare", str(BASE), str(fifo), "-o", str(tmp_path / "c")], fifo),
                        (["compare", str(fifo), str(BASE), "-o", str(tmp_path / "c")], fifo),
                        (["compare", str(BASE), str(run), "-o", str(tmp_path / "c")], run / "junit.xml"),
                        (["merge", str(BASE), str(fifo), "-o", str(tmp_path / "m.xml")], fifo),
                        (["merge", str(run), str(BASE), "-o", str(tmp_path / "m.xml")], run / "junit.xml")]:
        assert "not a regular file" in one_error(argv, capsys, named)
    assert not (tmp_path / "c").exists() and not (tmp_path / "m.xml").exists()


def _bad_time(tmp_path: Path) -> Path:
    text = BASE.read_text()
    bad = tmp_path / "bad-time.xml"
    bad.write_text(re.sub(r'(<testcase [^>]*?time=")[^"]*"', r'\1zz"', text, count=1))
    assert 'time="zz"' in bad.read_text()
    return bad


def test_junit_time_that_is_not_a_number(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = _bad_time(tmp_path)
    for argv in (["compare", str(BASE), str(bad), "-o", str(tmp_path / "c")],
                 ["compare", str(bad), str(BASE), "-o", str(tmp_path / "c")],
                 ["merge", str(BASE), str(bad), "-o", str(tmp_path / "m.xml")]):
        line = one_error(argv, capsys, bad)
        assert "time='zz' is not a number of seconds" in line and "testcase" in line
    suite_time = tmp_path / "suite-time.xml"
    suite_time.write_text(re.sub(r'(<testsuite [^>]*?time=")[^"]*"', r'\1nan"', BASE.read_text(), count=1))
    assert "time='nan'" in one_error(["merge", str(BASE), str(suite_time), "-o", str(tmp_path / "m.xml")],
                                     capsys, suite_time)
    assert not (tmp_path / "c").exists() and not (tmp_path / "m.xml").exists()


def _series(tmp_path: Path, line: str, patch: bytes | None = None) -> Path:
    directory = tmp_path / "series-dir"
    directory.mkdir(exist_ok=True)
    if patch is not None:
        (directory / "bin.patch").write_bytes(patch)
    (directory / "series").write_text(f"# test\n{line}\n")
    return directory / "series"


@pytest.mark.parametrize("line,patch,msg", [
    ("/etc/passwd", None, "patch /etc/passwd must be a path inside"),
    ("../../../../etc/passwd", None, "patch ../../../../etc/passwd must be a path inside"),
    ("../outside.patch", None, "patch ../outside.patch must be a path inside"),
    ("sub/../../outside.patch", None, "must be a path inside"),
    ("bin.patch", b"--- a/x\n+++ b/x\n\x00\x01\x02", "bin.patch: holds a NUL byte"),
    ("bin.patch", b"--- a/x\n+++ b/x\n@@ -1 +1 @@\n-\xff\n+\xfe\n", "bin.patch: not UTF-8 text"),
])
def test_bad_series_entries_via_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch,
                                        line: str, patch: bytes | None, msg: str) -> None:
    (tmp_path / "outside.patch").write_text("--- a/x\n+++ b/x\n")
    series = _series(tmp_path, line, patch)
    monkeypatch.setattr(cli, "preflight", lambda *a, **k: None)  # the build itself stays a sentinel
    text = one_error(["build", "--series", str(series), "--kernel-src", str(kernel_tree(tmp_path))],
                     capsys, f"{series}:2: ")
    assert msg in text


def test_series_file_not_utf8_or_a_fifo(tmp_path: Path) -> None:
    from harness.series import parse_series

    (tmp_path / "series").write_bytes(b"a.patch # \xff\n")
    with pytest.raises(InputError, match="series: not UTF-8 text"):
        parse_series(tmp_path / "series")
    _fifo(tmp_path / "fifo-series")
    with no_hang(), pytest.raises(InputError, match="fifo-series: not a regular file"):
        parse_series(tmp_path / "fifo-series")


def test_run_onto_an_existing_file_is_refused_before_the_build(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    matrix = _matrix(tmp_path)
    in_the_way = tmp_path / "results"
    in_the_way.write_text("not a directory\n")
    line = one_error(["run", "-m", str(matrix), "-o", str(in_the_way)], capsys, in_the_way)
    assert line.endswith(f"error: {in_the_way}: not a directory; results need a directory")
    line = one_error(["run", "-m", str(matrix), "-o", str(in_the_way / "sub")], capsys, in_the_way / "sub")
    assert line.endswith(f"{in_the_way / 'sub'}: {in_the_way} is not a directory; results need a directory")
    assert in_the_way.read_text() == "not a directory\n"


def test_run_into_a_read_only_directory_is_refused_before_the_build(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests run as root, whom chmod does not stop: the read-only file system is simulated."""
    read_only = tmp_path / "ro"
    read_only.mkdir()
    real_mkdir = os.mkdir

    def mkdir(path: Any, *args: Any, **kwargs: Any) -> None:
        if Path(path).resolve().is_relative_to(read_only.resolve()):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)
    for target in (read_only, read_only / "results"):
        line = one_error(["run", "-m", str(_matrix(tmp_path)), "-o", str(target)], capsys, target)
        assert "cannot write results there: Read-only file system" in line
    assert _empty(read_only)


def _resume_dir(tmp_path: Path, run_json: str) -> Path:
    partial = tmp_path / "results" / ".20260101-000000-abcd.partial"
    (partial / "cells").mkdir(parents=True)
    (partial / "logs").mkdir()
    shutil.copy(_matrix(tmp_path), partial / "matrix.toml")
    (partial / "run.json").write_text(run_json)
    return partial


_INVOCATION = '"invocation": {"kernel_src": "/nonexistent.tar.xz", "series": "/nonexistent/series"}'


@pytest.mark.parametrize("run_json,msg", [
    ('{"run_id": "20260101-000000-abcd", "timestamp": "2026-01-01T00:00:00+00:00", "invocation": {}}',
     "'invocation.kernel_src' must be a non-empty string"),
    ('{"run_id": "20260101-000000-abcd", "timestamp": "2026-01-01T00:00:00+00:00", '
     '"invocation": {"kernel_src": "/k.tar.xz", "series": 5}}', "'invocation.series' must be"),
    ('{"run_id": "20260101-000000-abcd", "timestamp": "2026-01-01T00:00:00+00:00", '
     '"invocation": {"kernel_src": "/k", "series": "/s", "patches": "x.patch"}}',
     "'invocation.patches' must be a list"),
    ('{"run_id": "20260101-000000-abcd", ' + _INVOCATION + "}", "'timestamp' must be an ISO 8601"),
    ('{"run_id": "20260101-000000-abcd", "timestamp": "yesterday", ' + _INVOCATION + "}",
     "'timestamp' must be an ISO 8601"),
    ('{"run_id": "../../../tmp/evil", "timestamp": "2026-01-01T00:00:00", ' + _INVOCATION + "}",
     "'run_id' must be a plain name"),
    ('{"run_id": "x", "timestamp": "2026-01-01T00:00:00", "kernels": [1], ' + _INVOCATION + "}",
     "'kernels' must be a table of tables"),
    ("[1, 2]", "run.json has no run_id"),
    ('"20260101-000000-abcd"', "run.json has no run_id"),
    ("{", "run.json unreadable"),
])
def test_resume_with_a_bad_run_json(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    run_json: str, msg: str) -> None:
    partial = _resume_dir(tmp_path, run_json)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    line = one_error(["run", "--resume", str(partial)], capsys, partial)
    assert msg in line
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_resume_with_a_run_json_that_is_a_fifo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    partial = _resume_dir(tmp_path, "")
    (partial / "run.json").unlink()
    _fifo(partial / "run.json")
    assert "not a regular file" in one_error(["run", "--resume", str(partial)], capsys, partial)


def test_compare_into_a_file_or_a_read_only_directory(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    in_the_way = tmp_path / "afile"
    in_the_way.write_text("x\n")
    for out in (in_the_way, in_the_way / "sub"):
        line = one_error(["compare", str(BASE), str(BASE), "-o", str(out)], capsys, out)
        assert line.startswith(f"cma-harness: error: cannot write {out}/compare.")
    assert in_the_way.read_text() == "x\n"
    read_only = tmp_path / "ro"
    read_only.mkdir()
    real_open = os.open

    def open_(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & os.O_CREAT and Path(path).resolve().is_relative_to(read_only.resolve()):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_)
    for out in (read_only, read_only / "deeper" / "still"):
        line = one_error(["compare", str(BASE), str(BASE), "-o", str(out)], capsys, out)
        assert "Read-only file system" in line
    assert _empty(read_only)  # not even the directories made for the reports


def test_a_writable_results_root_passes_and_the_probe_leaves_nothing(tmp_path: Path) -> None:
    """A guard: good input gets past the new checks (to the host check) and creates nothing."""
    for target in (tmp_path / "results", tmp_path / "new" / "deeper"):
        with pytest.raises(Reached, match="preflight"):
            cli.main(["run", "-m", str(_matrix(tmp_path)), "-o", str(target)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.toml"]

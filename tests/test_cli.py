"""The command line without QEMU or a build: parsing, requests, dispatch, errors and exit statuses.

``harness.cli.main`` runs in this process; whatever would build, check the host
or boot is replaced by a fake (``plan.plan_run``, ``run.execute``,
``cli.preflight``, ``cli._prepare``, ``kbuild.build_kernel``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from harness import boards, cellcmd, cli, cliargs, kbuild, matrix, plan, qemu, run
from harness.doctor import HostNotReady, Problem
from harness.errors import InputError, PatchError
from harness.executor import LocalExecutor
from harness.plan import KernelInputs, RunPlan, RunRequest, Selection
from tests.conftest import kernel_tree

CPUS = os.cpu_count() or 1


class Reached(Exception):
    """The CLI got further than the test allows (a build, the host check, QEMU)."""


def _stop(what: str) -> Any:
    def stop(*args: object, **kwargs: object) -> None:
        raise Reached(what)
    return stop


@pytest.fixture(autouse=True)
def nothing_runs(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(cli, "preflight", _stop("preflight"))
    monkeypatch.setattr(kbuild, "build_kernel", _stop("the kernel build"))
    monkeypatch.setattr(qemu, "qemu_version", _stop("QEMU"))
    monkeypatch.setenv(boards.BOARDS_ENV, "")
    previous = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, previous)  # main() installs its own


def _parse(*argv: str) -> Any:
    return cliargs.parser("cma-harness").parse_args(list(argv))


def _matrix(tmp_path: Path) -> Path:
    path = tmp_path / "m.toml"
    path.write_text('name = "t"\nboards = ["vexpress-a9"]\ncmdlines = ["cma=16M", "cma=64M"]\n')
    return path


def _errors(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().err.splitlines()


# -- parsing and requests ------------------------------------------------------------------------


def test_run_defaults() -> None:
    args = _parse("run")
    assert (args.matrix, args.board, args.cmdline, args.results) == (matrix.DEFAULT_MATRIX, None, None,
                                                                      Path("results"))
    assert (args.jobs, args.retries, args.resume, args.list) == (CPUS, 0, None, False)
    assert (args.kernel_src, args.series, args.patch) == (kbuild.DEFAULT_SOURCE,
                                                          kbuild.PATCHES_DIR / "series", [])
    assert (args.build_jobs, args.boards_dir) == (CPUS, [])


def test_the_run_request_carries_every_option_once() -> None:
    args = _parse("run", "-m", "m.toml", "--board", "virt", "--cmdline", "cma=0", "-o", "out", "-j", "3",
                  "--retries", "2", "--resume", "out/.x.partial", "--kernel-src", "linux", "--series", "s",
                  "--patch", "a.patch", "--patch", "b.patch", "--build-jobs", "5")
    assert cliargs.run_request(args) == RunRequest(
        Path("m.toml"), "virt", "cma=0", KernelInputs(Path("linux"), Path("s"),
                                                      (Path("a.patch"), Path("b.patch")), 5),
        3, 2, Path("out"), Path("out/.x.partial"))


@pytest.mark.parametrize("argv,expected", [
    (["build"], {"board": "vexpress-a9", "kernel_src": kbuild.DEFAULT_SOURCE, "build_jobs": CPUS}),
    (["boot"], {"board": "vexpress-a9", "cmdline": ""}),
    (["doctor"], {"board": None, "boards_dir": []}),
    (["doctor", "--board", "virt", "--board", "smdkc210"], {"board": ["virt", "smdkc210"]}),
    (["compare", "a", "b"], {"base": Path("a"), "new": Path("b"), "metric": None, "out_dir": None}),
    (["merge", "a", "b", "-o", "m.xml"], {"inputs": [Path("a"), Path("b")], "output": Path("m.xml")}),
])
def test_every_subcommand_parses_with_its_defaults(argv: list[str], expected: dict[str, object]) -> None:
    args = vars(_parse(*argv))
    assert args["command"] == argv[0]
    assert {key: args[key] for key in expected} == expected


@pytest.mark.parametrize("argv", [["run", "-j", "x"], ["run", "--retries", "1.5"],
                                  ["build", "--build-jobs", ""], [], ["merge", "a"], ["frobnicate"]])
def test_malformed_arguments_are_argparse_usage_errors(argv: list[str],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        cli.main(argv)
    assert stopped.value.code == 2
    assert "usage: cma-harness" in capsys.readouterr().err


def _unfinished_run(tmp_path: Path) -> Path:
    partial = tmp_path / "results" / ".20260101-000000-abcd.partial"
    partial.mkdir(parents=True)
    _matrix(tmp_path).rename(partial / "matrix.toml")
    (partial / "run.json").write_text(json.dumps({
        "run_id": "20260101-000000-abcd", "timestamp": "2026-01-01T00:00:00+00:00",
        "invocation": {"matrix": "/elsewhere/m.toml", "board": "vexpress-a9", "cmdline": None,
                       "kernel_src": "/src/linux-6.1", "series": "/p/series", "patches": ["/p/review.patch"],
                       "jobs": 1, "retries": 0},
        "kernels": {"vexpress-a9": {"build_key": "k" * 64}}}))
    return partial


@pytest.fixture
def planned(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """``plan.plan_run`` and ``run.execute`` replaced: what the CLI handed them is recorded."""
    seen: dict[str, Any] = {}

    def plan_run(sel: Selection, rep: object, host_check: object, build: object) -> RunPlan:
        seen.update(selection=sel, host_check=host_check, build=build)
        return RunPlan(sel.request, sel.matrix, (), {}, ())

    def execute(the_plan: RunPlan, executor: LocalExecutor, out: object, err: object) -> int:
        seen.update(plan=the_plan, executor=executor, out=out, err=err)
        return 1

    monkeypatch.setattr(plan, "plan_run", plan_run)
    monkeypatch.setattr(run, "execute", execute)
    return seen


def test_resume_takes_matrix_filters_and_kernel_from_run_json(tmp_path: Path,
                                                               planned: dict[str, Any]) -> None:
    partial = _unfinished_run(tmp_path)
    assert cli.main(["run", "--resume", str(partial), "-j", "4", "--retries", "1", "--board", "virt"]) == 1
    request = planned["selection"].request
    assert request == RunRequest(partial / "matrix.toml", "vexpress-a9", None,
                                 KernelInputs(Path("/src/linux-6.1"), Path("/p/series"),
                                              (Path("/p/review.patch"),), CPUS),
                                 4, 1, Path("results"), partial)
    assert [c.cmdline for c in planned["selection"].cells] == ["cma=16M", "cma=64M"]
    assert planned["selection"].resumed_keys == {"vexpress-a9": "k" * 64}
    assert (planned["executor"].parallel, planned["executor"].retries) == (4, 1)


def test_resume_leaves_the_parsed_arguments_alone(tmp_path: Path) -> None:
    partial = _unfinished_run(tmp_path)
    args = _parse("run", "--resume", str(partial))
    before = vars(args).copy()
    sel = plan.select_cells(cliargs.run_request(args))
    assert vars(args) == before
    assert sel.request.matrix == partial / "matrix.toml" and args.matrix == matrix.DEFAULT_MATRIX


def test_run_hands_the_cli_host_check_and_builder_to_the_plan(
        tmp_path: Path, planned: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    fake_prepare = _stop("prepare")
    monkeypatch.setattr(cli, "_prepare", fake_prepare)
    assert cli.main(["run", "-m", str(_matrix(tmp_path)), "-o", str(tmp_path / "r"), "-j", "2"]) == 1
    assert planned["host_check"] is vars(cli)["preflight"] and planned["build"] is fake_prepare
    assert planned["out"] is cli.out and planned["err"] is cli.err
    assert isinstance(planned["executor"], LocalExecutor)
    assert planned["plan"].request.results == tmp_path / "r"


def test_run_list_prints_the_cells_and_plans_nothing(
        tmp_path: Path, planned: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "--list", "-m", str(_matrix(tmp_path)), "--cmdline", "cma=64M"]) == 0
    printed = capsys.readouterr().out
    assert "matrix t (" in printed and "1 cell(s)" in printed and "vexpress-a9:cma=64M" in printed
    assert "cma=16M" not in printed and planned == {}


# -- bad values: one error line, exit 2, nothing built ------------------------------------------


@pytest.mark.parametrize("extra,message", [
    (["-j", "0"], "-j/--jobs must be at least 1 (0 only with --hosts: cells on the hosts only)"),
    (["-j", "-3"], "-j/--jobs must be at least 1 (0 only with --hosts: cells on the hosts only)"),
    (["--retries", "-1"], "--retries must be 0 or more"),
])
def test_bad_jobs_and_retries(tmp_path: Path, extra: list[str], message: str,
                              capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "-m", str(_matrix(tmp_path)), "-o", str(tmp_path / "r"), *extra]) == 2
    assert _errors(capsys) == [f"cma-harness: error: {message}"]
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("command", ["build", "run"])
def test_bad_build_jobs(command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli, "preflight", lambda *a, **k: None)
    monkeypatch.setattr(qemu, "qemu_version", lambda: "QEMU 9")
    extra = ["-m", str(_matrix(tmp_path)), "-o", str(tmp_path / "r")] if command == "run" else []
    argv = [command, "--build-jobs", "0", "--kernel-src", str(kernel_tree(tmp_path)), *extra]
    assert cli.main(argv) == 2
    assert _errors(capsys) == ["cma-harness: error: --build-jobs must be at least 1"]
    assert not (tmp_path / "r").exists()


def test_a_boards_dir_that_is_not_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["doctor", "--boards-dir", str(tmp_path / "nope")]) == 2
    assert _errors(capsys) == [f"cma-harness: error: --boards-dir {tmp_path / 'nope'}: not a directory"]


def test_boards_dirs_go_in_front_of_the_search_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(boards.BOARDS_ENV, "/earlier")
    monkeypatch.setattr(cli, "cmd_doctor", lambda args: 0)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert cli.main(["doctor", "--boards-dir", str(tmp_path / "a"), "--boards-dir", str(tmp_path / "b")]) == 0
    expected = [str(tmp_path / "a"), str(tmp_path / "b"), "/earlier"]
    assert os.environ[boards.BOARDS_ENV] == os.pathsep.join(expected)


# -- dispatch, errors and interruption -----------------------------------------------------------


@pytest.mark.parametrize("argv", [["build"], ["run"], ["boot"], ["compare", "a", "b"],
                                  ["merge", "a", "-o", "m"], ["doctor"]])
def test_each_command_goes_to_its_handler_and_its_status_is_the_exit_status(
        argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    called: list[str] = []
    def handler(name: str) -> Any:
        def handle(args: object) -> int:
            called.append(name)
            return 7
        return handle

    for name in ("build", "run", "boot", "compare", "merge", "doctor"):
        monkeypatch.setattr(cli, f"cmd_{name}", handler(name))
    assert cli.main(argv) == 7
    assert called == [argv[0]]


def test_the_cell_command_goes_to_cellcmd(monkeypatch: pytest.MonkeyPatch) -> None:
    jobs: list[Path] = []

    def cmd_cell(args: Any) -> int:
        jobs.append(args.job)
        return 1

    monkeypatch.setattr(cellcmd, "cmd_cell", cmd_cell)
    assert cli.main(["cell", "job.json", "-o", "out"]) == 1
    assert jobs == [Path("job.json")]


def _raise(exc: BaseException) -> Any:
    def handler(args: object) -> int:
        raise exc
    return handler


@pytest.mark.parametrize("exc,lines", [
    (InputError("matrix m.toml: bad"), ["cma-harness: error: matrix m.toml: bad"]),
    (PatchError("0001-x.patch does not apply", "--- rejected hunk\n+++ x"),
     ["cma-harness: error: 0001-x.patch does not apply", "--- rejected hunk", "+++ x"]),
    (PatchError("0001-x.patch does not apply"), ["cma-harness: error: 0001-x.patch does not apply"]),
    (HostNotReady([Problem("missing rsync", "rsync"), Problem("boards/x.toml: no machine 'y'")]),
     ["cma-harness: error: missing rsync (Debian package rsync)",
      "cma-harness: error: boards/x.toml: no machine 'y'"]),
])
def test_harness_errors_are_error_lines_and_exit_2(exc: Exception, lines: list[str],
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli, "cmd_merge", _raise(exc))
    assert cli.main(["merge", "a", "-o", "m"]) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == lines and captured.out == ""


def test_ctrl_c_is_one_line_and_130(monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli, "cmd_run", _raise(KeyboardInterrupt()))
    assert cli.main(["run"]) == 130
    assert _errors(capsys) == ["cma-harness: interrupted"]


def test_sigterm_is_an_interruption() -> None:
    base = Path(__file__).parent / "fixtures" / "junit" / "base.xml"
    cli.main(["merge", str(base), "-o", "/nonexistent/x"])
    handler = signal.getsignal(signal.SIGTERM)
    assert callable(handler)
    with pytest.raises(KeyboardInterrupt):
        handler(signal.SIGTERM, None)


def test_a_bug_is_not_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "cmd_doctor", _raise(ZeroDivisionError("bug")))
    with pytest.raises(ZeroDivisionError):
        cli.main(["doctor"])


# -- build and boot ------------------------------------------------------------------------------


def _ready(tmp_path: Path) -> Any:
    return SimpleNamespace(kernel=SimpleNamespace(zimage=tmp_path / "zImage"),
                           initramfs=SimpleNamespace(path=tmp_path / "initramfs.cpio.gz"))


def test_build_checks_the_host_then_builds_the_board_and_prints_the_artifacts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    order: list[str] = []
    monkeypatch.setattr(cli, "preflight", lambda bs: order.append(f"preflight {[b.name for b in bs]}"))

    def prepare(loaded: Mapping[str, boards.Board], inputs: KernelInputs, rep: object) -> dict[str, Any]:
        order.append(f"prepare {list(loaded)} {inputs.build_jobs} {inputs.patches}")
        return {"virt": _ready(tmp_path)}

    monkeypatch.setattr(cli, "_prepare", prepare)
    assert cli.main(["build", "--board", "virt", "--build-jobs", "3", "--patch", "p.patch"]) == 0
    assert order == ["preflight ['virt']", "prepare ['virt'] 3 (PosixPath('p.patch'),)"]
    assert capsys.readouterr().out.splitlines() == [f"zImage: {tmp_path / 'zImage'}",
                                                    f"initramfs: {tmp_path / 'initramfs.cpio.gz'}"]


def test_boot_refuses_a_whole_cmdline_over_arm_limit_before_the_host_check(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["boot", "--cmdline", "x" * 1000]) == 2
    (line,) = _errors(capsys)
    assert line.startswith("cma-harness: error: --cmdline: cell 'vexpress-a9:xxxx")
    assert "with board vexpress-a9's arguments and the harness's, kernel cmdline is" in line


def test_boot_builds_then_prints_the_qemu_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli, "preflight", lambda bs: None)
    monkeypatch.setattr(qemu, "qemu_version", lambda: "QEMU 9")
    monkeypatch.setattr(cli, "_prepare", lambda loaded, inputs, rep: {"virt": "ready"})
    monkeypatch.setattr(plan, "boot_spec",
                        lambda ready, cmdline, interactive: ("spec", ready, cmdline, interactive))
    monkeypatch.setattr(qemu, "qemu_argv", lambda spec, interactive: ["qemu-system-arm", *map(str, spec)])
    monkeypatch.setattr(subprocess, "run", lambda argv, **kw: SimpleNamespace(returncode=5))
    assert cli.main(["boot", "--board", "virt", "--cmdline", "cma=64M"]) == 5
    assert _errors(capsys) == ["booting virt; Ctrl-A x quits QEMU", "qemu-system-arm spec ready cma=64M True"]

"""The hosts file, the remote runtime's wheels and the slot scheduler, without SSH.

The real SSH hosts (two sshd in network namespaces) are in tests/test_hosts_integration.py.
"""

from __future__ import annotations

import io
import re
import threading
import time
from importlib import metadata
from pathlib import Path

import pytest
from rich.console import Console

from harness import cli
from harness.cellresult import CellResult
from harness.checks import CheckResult, Status
from harness.errors import InputError
from harness.hosts import check_host_files, load_hosts, parse_hosts
from harness.matrix import Cell
from harness.remote import HostLost, HostUnusable
from harness.runner import CellProgress
from harness.slots import Slot, run_on_slots
from harness.wheelhouse import CELL_RUNTIME

GOOD = """
[hosts.lab1]
address = "10.0.0.2"
key = "keys/id"
known_hosts = "/etc/ssh/ssh_known_hosts"
slots = 3

[hosts.lab2]
address = "lab2.example.org"
port = 2222
user = "ci"
key = "~/id"
workdir = "/srv/cma"
"""


def test_hosts_file_fields_defaults_and_paths(tmp_path: Path) -> None:
    path = tmp_path / "hosts.toml"
    path.write_text(GOOD)
    lab1, lab2 = load_hosts(path)
    assert (lab1.name, lab1.address, lab1.port, lab1.slots) == ("lab1", "10.0.0.2", 22, 3)
    assert lab1.key == tmp_path / "keys" / "id"  # relative to the hosts file
    assert lab1.known_hosts == Path("/etc/ssh/ssh_known_hosts")
    assert lab1.workdir == "/var/tmp/cma-harness" and lab1.python == "python3"
    assert (lab2.port, lab2.user, lab2.workdir, lab2.slots) == (2222, "ci", "/srv/cma", 1)
    assert lab2.key == Path.home() / "id"
    assert lab2.known_hosts == Path.home() / ".ssh" / "known_hosts"
    assert lab2.where == "ci@lab2.example.org:2222"


@pytest.mark.parametrize(("table", "message"), [
    ('address = "h"\nkey = "k"\npassword = "x"', "unknown key 'password' (key authentication only"),
    ('key = "k"', "'address' is required"),
    ('address = "h"', "'key' is required"),
    ('address = "h"\nkey = "k"\nport = 0', "'port' must be an integer from 1 to 65535"),
    ('address = "h"\nkey = "k"\nslots = "2"', "'slots' must be an integer"),
    ('address = "h"\nkey = "k"\nworkdir = "rel"', "'workdir' must be an absolute path"),
    ('address = "h; rm -rf /"\nkey = "k"', "is not a host name or IP address"),
])
def test_bad_host_tables_are_refused_with_the_file_and_host(table: str, message: str) -> None:
    import tomllib
    with pytest.raises(InputError, match=re.escape(message)) as info:
        parse_hosts(tomllib.loads(f"[hosts.bad]\n{table}\n"), "h.toml", Path("/"))
    assert str(info.value).startswith("h.toml: [hosts.bad]")


def test_a_missing_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "hosts.toml"
    path.write_text(GOOD)
    with pytest.raises(InputError, match=r"host lab1: key file .*keys/id is not a readable file"):
        check_host_files(load_hosts(path))


def test_run_with_a_bad_hosts_file_is_one_error_line(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "hosts.toml"
    bad.write_text('[hosts.x]\naddress = "h"\nkey = "k"\npassword = "hunter2"\n')
    assert cli.main(["run", "--hosts", str(bad), "-o", str(tmp_path / "r")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"cma-harness: error: {bad}: [hosts.x]: unknown key")
    assert not (tmp_path / "r").exists()


def _requirement_names(dist: str) -> set[str]:
    names = set()
    for req in metadata.requires(dist) or []:
        if "extra ==" in req:
            continue
        names.add(re.split(r"[\s\[<>=!~;(]", req, maxsplit=1)[0].lower().replace("_", "-"))
    return names


def test_the_cell_runtime_wheels_cover_what_cell_imports() -> None:
    """Every requirement (not extras) of the packages ``cell`` imports is in CELL_RUNTIME, recursively."""
    seen: set[str] = set()
    todo = ["pexpect", "junitparser", "rich"]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += sorted(_requirement_names(name))
    assert seen <= set(CELL_RUNTIME), seen - set(CELL_RUNTIME)


# --- the scheduler -------------------------------------------------------------------------------

def _ok(cell: Cell, log: Path, host: str) -> CellResult:
    log.write_text("log\n")
    return CellResult(cell, [CheckResult("boot", Status.PASS, "booted")], log, 1.0, extra={"host": host})


def _progress() -> CellProgress:
    return CellProgress(Console(file=io.StringIO()), 0)


def _cells(n: int) -> list[Cell]:
    return [Cell("b", f"cma={i}M") for i in range(n)]


def test_a_lost_hosts_cells_run_on_the_others(tmp_path: Path) -> None:
    cells = _cells(6)
    logs = [tmp_path / f"{i}.log" for i in range(6)]
    ran: dict[str, list[int]] = {"a": [], "b": []}
    gate = threading.Event()

    def a(i: int, log: Path) -> CellResult:
        gate.wait(5)
        raise HostLost("host a was lost mid-cell (sshd killed)")

    def b(i: int, log: Path) -> CellResult:
        ran["b"].append(i)
        gate.set()
        return _ok(cells[i], log, "b")

    done: list[CellResult] = []
    progress = _progress()
    results = run_on_slots(cells, logs, [Slot("a", a), Slot("a", a), Slot("b", b)], done.append,
                           progress, {}, lambda: None)
    said = progress.console.file.getvalue()  # type: ignore[attr-defined]
    assert said.count("host a was lost mid-cell (sshd killed): its cells go to the other hosts") == 1
    assert [r.status for r in results] == [Status.PASS] * 6
    assert sorted(ran["b"]) == list(range(6)) and len(done) == 6
    assert {r.extra["host"] for r in results} == {"b"}


def test_when_every_host_is_lost_each_cell_is_an_infrastructure_error(tmp_path: Path) -> None:
    cells = _cells(3)
    logs = [tmp_path / f"{i}.log" for i in range(3)]

    def gone(i: int, log: Path) -> CellResult:
        raise HostLost("host a (root@10.0.0.2:22) was lost mid-cell")

    results = run_on_slots(cells, logs, [Slot("a", gone)], lambda r: None, _progress(), {}, lambda: None)
    for r in results:
        (check,) = r.checks
        assert check.status is Status.ERROR and check.infrastructure
        assert "no host left to run the cell: host a (root@10.0.0.2:22) was lost" in check.message
        assert r.extra["host"] == "a" and r.log.read_text().startswith("not booted:")


def test_an_unusable_run_is_that_cells_infrastructure_error(tmp_path: Path) -> None:
    cells = _cells(2)
    logs = [tmp_path / f"{i}.log" for i in range(2)]

    def run(i: int, log: Path) -> CellResult:
        if i == 0:
            raise HostUnusable("'cma-harness cell' on a refused the job: SHA-256 differs")
        return _ok(cells[i], log, "a")

    first, second = run_on_slots(cells, logs, [Slot("a", run)], lambda r: None, _progress(), {}, lambda: None)
    assert first.status is Status.ERROR and "SHA-256 differs" in first.checks[0].message
    assert second.status is Status.PASS


def test_longest_cells_start_first_and_an_interrupt_stops_every_slot(tmp_path: Path) -> None:
    cells = _cells(4)
    logs = [tmp_path / f"{i}.log" for i in range(4)]
    previous = {c.slug: float(i) for i, c in enumerate(cells)}  # cma=3M is the longest
    started: list[int] = []
    stopped = threading.Event()

    def run(i: int, log: Path) -> CellResult:
        started.append(i)
        if len(started) == 2:
            raise KeyboardInterrupt
        return _ok(cells[i], log, "a")

    with pytest.raises(KeyboardInterrupt):
        run_on_slots(cells, logs, [Slot("a", run)], lambda r: None, _progress(), previous, stopped.set)
    assert started == [3, 2] and stopped.is_set()


def test_a_cell_lost_after_the_queue_emptied_still_runs_on_a_live_slot(tmp_path: Path) -> None:
    """The live slot has nothing left to take while the lost host's cell runs: it must wait, not end."""
    cells = _cells(2)
    logs = [tmp_path / f"{i}.log" for i in range(2)]
    b_idle = threading.Event()

    def a(i: int, log: Path) -> CellResult:
        b_idle.wait(5)
        time.sleep(0.3)  # b has looked for work and found none
        raise HostLost("host a was lost mid-cell (its link went down)")

    def b(i: int, log: Path) -> CellResult:
        b_idle.set()
        return _ok(cells[i], log, "b")

    results = run_on_slots(cells, logs, [Slot("a", a), Slot("b", b)], lambda r: None, _progress(), {},
                           lambda: None)
    assert [r.status for r in results] == [Status.PASS, Status.PASS]
    assert [r.extra["host"] for r in results] == ["b", "b"]

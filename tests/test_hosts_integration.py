"""Integration: cells over real SSH hosts -- two sshd in network namespaces on this machine.

Each host is Debian's sshd with its own host key, reached over a veth pair
(tests/sshd_hosts.py; sshd on 127.0.0.1 ports where namespaces are not
available).  The hosts get the harness wheel in a venv of their own work
directory, the boot files in their store, and run ``cma-harness cell`` there.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from junitparser import JUnitXml

from tests.conftest import default_sigint
from tests.sshd_hosts import (
    TestHost,
    netns_available,
    ssh_hosts,
    sshd_root,
    write_hosts_toml,
    wrong_known_hosts,
)

pytestmark = pytest.mark.integration
REPO = Path(__file__).parents[1]
CLI = [sys.executable, "-m", "harness.cli"]
MATRIX = REPO / "tests/fixtures/matrices/hosts.toml"


@pytest.fixture(scope="module")
def hosts() -> Iterator[list[TestHost]]:
    with ssh_hosts(2, sshd_root()) as made:
        yield made


def _run(args: list[str], timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "run", "-m", str(MATRIX), *args], capture_output=True, text=True,
                          cwd=REPO, timeout=timeout)


def _testcases(junit: Path) -> dict[str, dict[str, str]]:
    """``{suite: {testcase: outcome}}`` and each suite's ``host`` property as testcase ``@host``."""
    out: dict[str, dict[str, str]] = {}
    for suite in JUnitXml.fromfile(str(junit)):
        cases = {c.name: (type(c.result[0]).__name__ if c.result else "passed") for c in suite}
        cases["@host"] = next((p.value for p in suite.properties() if p.name == "host"), "")
        out[str(suite.name)] = cases
    return out


def test_a_hosts_run_has_the_same_testcases_as_a_local_run(hosts: list[TestHost], tmp_path: Path) -> None:
    local = _run(["-j", "2", "-o", str(tmp_path / "local")])
    assert local.returncode == 0, local.stdout[-3000:] + local.stderr
    hosts_file = write_hosts_toml(hosts, tmp_path / "hosts.toml")
    remote = _run(["--hosts", str(hosts_file), "-j", "1", "-o", str(tmp_path / "hosts")])
    assert remote.returncode == 0, remote.stdout[-3000:] + remote.stderr
    for h in hosts:
        assert f"host {h.name}: ready" in remote.stdout

    base, new = (_testcases(tmp_path / name / "latest" / "junit.xml") for name in ("local", "hosts"))
    assert set(base) == set(new) and len(new) == 6
    for suite, cases in new.items():
        assert set(cases) - {"@host"} == set(base[suite]) - {"@host"}, suite
        assert all(v in ("passed", "Skipped") for k, v in cases.items() if k != "@host"), cases
    # The local slot starts at once; the hosts join when prepared (a venv made: ~10 s) and
    # take cells from the same queue.
    used = {c["@host"] for c in new.values()}
    assert "local" in used and used & {h.name for h in hosts}, used
    assert used <= {"local", *(h.name for h in hosts)}
    compare = subprocess.run([*CLI, "compare", str(tmp_path / "local" / "latest"),
                              str(tmp_path / "hosts" / "latest"), "-o", str(tmp_path / "cmp")],
                             capture_output=True, text=True, cwd=REPO, timeout=120)
    assert compare.returncode == 0, compare.stdout + compare.stderr
    # The console logs came back beside the results, like a local cell's.
    logs = tmp_path / "hosts" / "latest" / "logs"
    assert all((logs / f"{slug}.log").stat().st_size > 1000 for slug in
               (p.stem for p in (tmp_path / "hosts" / "latest" / "cells").glob("*.xml")))


def _wait_for_qemu(host: TestHost, proc: subprocess.Popen[str], seconds: float = 300) -> None:
    """Until a guest boots on ``host`` (a QEMU with -kernel: not the doctor's probes)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        if any("qemu-system-arm" in c and "-kernel" in c for c in host.commands()):
            return
        time.sleep(0.2)
    raise AssertionError(f"no QEMU ever ran on {host.name}")


def test_ctrl_c_stops_the_remote_guests_and_resume_completes_the_run(hosts: list[TestHost],
                                                                     tmp_path: Path) -> None:
    hosts_file = write_hosts_toml(hosts, tmp_path / "hosts.toml")
    proc = subprocess.Popen([*CLI, "run", "-m", str(MATRIX), "--hosts", str(hosts_file), "-j", "0",
                             "-o", str(tmp_path / "res")], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:  # a cell done, another running
        done = list((tmp_path / "res").glob("*/cells/*.xml"))
        if done and any("qemu-system-arm" in c for h in hosts for c in h.commands()):
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out[-2000:] + err[-2000:]
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any("qemu-system-arm" in c for h in hosts for c in h.commands()):
        time.sleep(0.2)
    assert not [c for h in hosts for c in h.commands() if "qemu-system-arm" in c]

    partial = next((tmp_path / "res").glob("*.partial"))
    kept = len(list((partial / "cells").glob("*.xml")))
    assert 1 <= kept < 6 and f"--resume {partial}" in err
    resumed = subprocess.run([*CLI, "run", "--resume", str(partial), "--hosts", str(hosts_file), "-j", "0"],
                             capture_output=True, text=True, cwd=REPO, timeout=1800)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr
    assert f"{kept} of 6 cell(s) already done" in resumed.stdout
    assert len(_testcases(tmp_path / "res" / "latest" / "junit.xml")) == 6


@pytest.mark.parametrize("how", ["killed", "vanished"])
def test_a_host_lost_mid_run_has_its_cells_run_on_the_other(how: str, tmp_path: Path) -> None:
    """``killed``: its sshd, the cell's session and QEMU are SIGKILLed (the connection is reset).
    ``vanished``: its link goes down, nothing answers any more (found by SSH keepalives, ~1 min)."""
    if how == "vanished" and not netns_available():
        pytest.skip("no network namespaces here: a loopback host cannot vanish")
    with ssh_hosts(2, sshd_root()) as pair:
        hosts_file = write_hosts_toml(pair, tmp_path / "hosts.toml")
        proc = subprocess.Popen([*CLI, "run", "-m", str(MATRIX), "--hosts", str(hosts_file), "-j", "0",
                                 "-o", str(tmp_path / "res")], cwd=REPO, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        victim, survivor = pair[1], pair[0]
        _wait_for_qemu(victim, proc)
        if how == "killed":
            victim.kill()  # its sshd, the cell's session and its QEMU
        else:
            victim.vanish()
        out, err = proc.communicate(timeout=1800)
        assert proc.returncode == 0, out[-3000:] + err[-2000:]
        assert "was lost mid-cell" in out + err
        cases = _testcases(tmp_path / "res" / "latest" / "junit.xml")
        assert len(cases) == 6  # every cell has its result
        assert {c["@host"] for c in cases.values()} == {survivor.name}, cases
        if how == "killed":
            assert not [c for c in victim.commands() if "qemu" in c]


def test_a_host_whose_key_is_not_the_pinned_one_is_refused(hosts: list[TestHost], tmp_path: Path) -> None:
    wrong = wrong_known_hosts(hosts[0], tmp_path / "known_hosts")
    hosts_file = write_hosts_toml(hosts[:1], tmp_path / "hosts.toml", extra={"known_hosts": str(wrong)})
    proc = _run(["--hosts", str(hosts_file), "-o", str(tmp_path / "res")], timeout=600)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert f"host {hosts[0].name}" in lines[0] and "differs from the one pinned" in lines[0]
    assert "SHA256:" in lines[0]
    assert not (tmp_path / "res").exists() or not any((tmp_path / "res").iterdir())

    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    hosts_file = write_hosts_toml(hosts[:1], tmp_path / "hosts2.toml", extra={"known_hosts": str(empty)})
    proc = _run(["--hosts", str(hosts_file), "-o", str(tmp_path / "res2")], timeout=600)
    assert proc.returncode == 2 and "is not pinned in" in proc.stderr, proc.stderr

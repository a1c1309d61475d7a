"""LAVA job definitions of cell jobs: built from real jobs, checked with LAVA's own schema."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from pexpect.utils import split_command_line

from harness import lava
from harness.boards import load_board
from harness.checks import CmaExpectation
from harness.errors import EnvironmentProblem, InputError
from harness.expectation import Expectation
from harness.job import CellJob, make_job
from harness.matrix import Cell
from harness.qemu import BootSpec, kernel_cmdline
from harness.results import Provenance
from harness.script import step_line
from tests.conftest import FIXTURES

CELLS = FIXTURES / "cells"
VEXPRESS = CELLS / "vexpress-a9_cma=64M"
SETTINGS = lava.LavaSettings("http://10.0.0.1:8765/")
PROV = Provenance("6.1.192", "/usr/src/linux-source-6.1.tar.xz", "s" * 64, "c" * 64, "gcc 12", "QEMU 7.2")


def _lava_missing() -> str:
    """Why LAVA's schema cannot be used here, or ""."""
    try:
        proc = subprocess.run([str(lava.SYSTEM_PYTHON), "-I", "-c", "import lava_common.schemas"],
                              capture_output=True, check=False, timeout=60)
    except OSError as exc:
        return f"{lava.SYSTEM_PYTHON}: {exc}"
    return "" if proc.returncode == 0 else \
        f"{lava.SYSTEM_PYTHON} cannot import lava_common (Debian package lava-common)"


needs_lava = pytest.mark.skipif(bool(_lava_missing()), reason=_lava_missing() or "-")


def _vexpress() -> CellJob:
    return CellJob.load(VEXPRESS / "job.json")


def _virt(tmp_path: Path) -> CellJob:
    board = load_board("virt")
    for name in ("zImage", "initramfs.cpio.gz"):
        (tmp_path / name).write_bytes(name.encode() * 100)
    cell = Cell("virt", "cma=256M", CmaExpectation("reserved", 256), suites=("alloc-free",),
                area_suites=("alloc-free",))
    spec = BootSpec(board, tmp_path / "zImage", None, tmp_path / "initramfs.cpio.gz",
                    kernel_cmdline(board, "cma=256M"))
    return make_job(cell, spec, Expectation.hand_written(CmaExpectation("reserved", 256)), PROV,
                    nonce="feedc0ffee01")


def _definition(job: CellJob, settings: lava.LavaSettings = SETTINGS) -> dict[str, Any]:
    return lava.job_definition(job, settings, lava.artifact_urls(job, settings.artifact_url))


def _actions(definition: dict[str, Any]) -> dict[str, Any]:
    return {kind: body for action in definition["actions"] for kind, body in action.items()}


def _qemu_args(definition: dict[str, Any]) -> list[str]:
    """The image part of the QEMU command line as LAVA's dispatcher makes it (substitute, join, split)."""
    images = _actions(definition)["deploy"]["images"]
    args = [image["image_arg"].replace("{" + label + "}", f"/lava/{label}")
            for label, image in images.items()]
    argv: list[str] = split_command_line(" ".join(["qemu-system-arm", *args]))  # type: ignore[no-untyped-call]
    return argv


@needs_lava
def test_a_vexpress_job_passes_lavas_schema_and_keeps_every_fact_of_the_cell() -> None:
    job = _vexpress()
    definition = _definition(job)
    lava.validate(definition)
    assert definition["device_type"] == "qemu" and definition["job_name"] == "cma-harness vexpress-a9:cma=64M"
    context = definition["context"]
    assert (context["arch"], context["machine"], context["cpu"], context["memory"]) == \
        ("arm", "vexpress-a9", "cortex-a9", 512)
    assert context["model"] == "model=lan9118" and context["netdevice"] == "none"
    assert context["extra_options"][:3] == ["-smp", "1", "-no-reboot"]
    argv = _qemu_args(definition)
    assert argv[argv.index("-append") + 1] == job.kernel_cmdline == \
        "console=ttyAMA0 panic=-1 cmaharness.shell=batch cma=64M"
    assert argv[argv.index("-kernel") + 1] == "/lava/kernel" and argv[argv.index("-dtb") + 1] == "/lava/dtb"
    assert argv[argv.index("-initrd") + 1] == "/lava/ramdisk"
    images = _actions(definition)["deploy"]["images"]
    for label, art in (("kernel", job.zimage), ("dtb", job.dtb), ("ramdisk", job.initrd)):
        assert art is not None
        assert images[label]["sha256sum"] == art.sha256
        assert images[label]["url"] == f"http://10.0.0.1:8765/{art.sha256}"
    assert _actions(definition)["boot"]["prompts"] == ["cma-harness: init ready"]


def test_the_test_action_types_the_harness_lines_in_order_and_waits_for_each_end_marker() -> None:
    job = _vexpress()
    interactive = _actions(_definition(job))["test"]["interactive"]
    assert len(interactive) == 1
    script = interactive[0]["script"]
    steps = lava.guest_steps(job)
    assert [s.id for s in steps] == ["shell", *job.script().ids()]
    assert [c["command"] for c in script] == [step_line(s, job.nonce) for s in steps]
    assert all(c["wait_for_prompt"] is False for c in script)
    # The patterns find each step's end marker in the recorded console log, in order,
    # and never in the echo of a typed line.
    log = (VEXPRESS / "vexpress-a9_cma=64M.log").read_bytes().decode("utf-8", "replace")
    pos = 0
    for command in script:
        (success,) = command["successes"]
        assert f"@@{job.nonce} end " in success["message"]
        pattern = re.compile(success["message"], re.DOTALL)  # as pexpect compiles it
        assert not pattern.search(command["command"] + "\r\n")
        match = pattern.search(log, pos)
        assert match is not None, command["command"]
        pos = match.end()


@needs_lava
def test_a_virt_job_has_no_dtb_and_a_nic_without_option_rom(tmp_path: Path) -> None:
    job = _virt(tmp_path)
    definition = _definition(job)
    lava.validate(definition)
    assert set(_actions(definition)["deploy"]["images"]) == {"kernel", "ramdisk"}
    assert "-dtb" not in _qemu_args(definition)
    assert definition["context"]["model"] == "model=tulip"
    assert (definition["context"]["machine"], definition["context"]["memory"]) == ("virt", 3072)
    argv = _qemu_args(definition)
    assert argv[argv.index("-append") + 1] == job.kernel_cmdline
    assert [c["command"] for c in _actions(definition)["test"]["interactive"][0]["script"]][-1] == \
        step_line(job.script().steps[-1], "feedc0ffee01")


@needs_lava
def test_a_board_without_cpu_takes_the_default_and_types_slowly() -> None:
    definition = _definition(CellJob.load(CELLS / "linux-7.2-smdkc210_cma=64M" / "job.json"))
    lava.validate(definition)
    assert definition["context"]["cpu"] == "cortex-a9" and definition["context"]["test_character_delay"] == 1


def _without_device_type(d: dict[str, Any]) -> None:
    del d["device_type"]


def _zero_job_timeout(d: dict[str, Any]) -> None:
    d["timeouts"]["job"] = {"minutes": 0}


def _boot_type(d: dict[str, Any]) -> None:
    d["actions"][1]["boot"]["type"] = "zimage"


@needs_lava
@pytest.mark.parametrize("breaks, message", [
    (_without_device_type, '"device_type" or multinode should be defined'),
    (_zero_job_timeout, "@ data['timeouts']['job']"),
    (_boot_type, "extra keys not allowed @ data['actions[1]']['boot']['qemu']['type']"),
])
def test_lavas_schema_refuses_a_broken_definition_with_its_message(breaks: Any, message: str) -> None:
    definition = _definition(_vexpress())
    breaks(definition)
    with pytest.raises(InputError, match=re.escape(message)) as info:
        lava.validate(definition)
    assert str(info.value).startswith("cma-harness vexpress-a9:cma=64M: LAVA's job schema refuses it: ")


@needs_lava
def test_an_action_timeout_above_the_job_timeout_is_refused() -> None:
    definition = _definition(_vexpress(), replace(SETTINGS, job_timeout_minutes=30))
    with pytest.raises(InputError, match="Action timeout is larger than job timeout"):
        lava.validate(definition)


def test_without_lava_common_validation_is_an_environment_problem(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    definition = _definition(_vexpress())
    monkeypatch.setattr(lava, "SYSTEM_PYTHON", Path(sys.executable))  # the venv's: no lava_common
    with pytest.raises(EnvironmentProblem, match="cannot import lava_common .*Debian package lava-common"):
        lava.validate(definition)
    monkeypatch.setattr(lava, "SYSTEM_PYTHON", tmp_path / "no-python")
    with pytest.raises(EnvironmentProblem, match="cannot run .*no-python.*lava-common"):
        lava.validate(definition)


@pytest.mark.parametrize("change, message", [
    (lambda j: replace(j, board=replace(j.board, machine="realview-eb")),
     "no NIC model for machine realview-eb"),
    (lambda j: replace(j, board=replace(j.board, cpu="")), "names no CPU"),
    (lambda j: replace(j, board=replace(j.board, qemu_args=("-rtc", "base=utc clock=vm"))),
     "QEMU argument 'base=utc clock=vm' cannot go through LAVA"),
    (lambda j: replace(j, kernel_cmdline="console=ttyAMA0 cma={kernel}"), "character '{' is not allowed"),
    (lambda j: replace(j, zimage=replace(j.zimage, sha256="")), "has no SHA-256"),
])
def test_what_lava_cannot_run_is_an_input_error(change: Any, message: str) -> None:
    with pytest.raises(InputError, match=re.escape(message)):
        _definition(change(_vexpress()))


def test_urls_are_content_addressed_and_must_be_fetchable() -> None:
    job = _vexpress()
    assert lava.artifact_urls(job, "file:///srv/store") == {
        key: f"file:///srv/store/{art.sha256}"
        for key, art in (("zimage", job.zimage), ("dtb", job.dtb), ("initrd", job.initrd)) if art}
    with pytest.raises(InputError, match="must start with http://"):
        lava.artifact_urls(job, "/srv/store/")
    urls = lava.artifact_urls(job, "http://h/")
    del urls["dtb"]
    with pytest.raises(InputError, match="no URL for its dtb"):
        lava.job_definition(job, SETTINGS, urls)


@needs_lava
def test_export_writes_one_checked_file_per_cell_and_nothing_when_one_is_refused(tmp_path: Path) -> None:
    jobs = [_vexpress(), _virt(tmp_path)]
    out = tmp_path / "lava"
    paths = lava.export_jobs(jobs, SETTINGS, out)
    assert paths == [out / "vexpress-a9_cma=64M.yaml", out / "virt_cma=256M.yaml"]
    for job, path in zip(jobs, paths, strict=True):
        assert json.loads(path.read_text()) == _definition(job)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in paths)  # no temp file left
    again = tmp_path / "again"
    with pytest.raises(InputError, match="Action timeout is larger than job timeout"):
        lava.export_jobs(jobs, replace(SETTINGS, job_timeout_minutes=30), again)
    assert not again.exists()
    with pytest.raises(InputError, match="more than one job for the cell"):
        lava.export_jobs([jobs[0], jobs[0]], SETTINGS, again)

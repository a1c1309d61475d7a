"""Cell jobs as LAVA job definitions (``device_type: qemu``), checked with LAVA's own schema.

A :class:`~harness.job.CellJob` becomes one LAVA job: deploy the three boot
files to tmpfs, boot them with the ``qemu`` method, and type the cell's guest
steps on the serial console.  The console log LAVA keeps then holds the same
marker lines as a local run, for :func:`harness.judge.judge`.  Written against
LAVA 2023.01 (Debian 12's ``lava-server``, ``lava-dispatcher``, ``lava-common``):
its ``qemu.jinja2`` device type and the dispatcher's ``qemu`` boot method.

How the QEMU command line comes about.  The worker renders ``qemu.jinja2``
with the job's ``context``: for ``arch: arm`` it runs ``qemu-system-arm -cpu
{cpu} -machine {machine} -nographic -net nic,{model},macaddr=... -net
{netdevice} -m {memory} -monitor none`` followed by ``extra_options`` and,
for each deployed image, its ``image_arg`` with ``{label}`` replaced by the
downloaded file.  The whole line is joined with spaces and split again by
pexpect (shell-like quoting, no shell).  Hence:

* ``cpu`` is always passed (default ``cortex-a57``, which qemu-system-arm
  lacks): a board without a CPU (smdkc210) takes one from
  :attr:`LavaSettings.default_cpus`.
* A NIC is always added, ``model=virtio`` by default, which vexpress and
  smdkc210 refuse ("Unsupported NIC model: virtio") and which needs
  ``efi-virtio.rom`` (package ipxe-qemu) on virt.  ``model`` is the board's own
  NIC (``lan9118``), or on virt ``tulip`` (no option ROM), and ``netdevice:
  none`` leaves it unplugged (QEMU warns "hub 0 is not connected to host
  network"), as near to the harness's ``-nic none`` as the template allows;
  the guest kernel has no networking (lean.config) anyway.  Measured with
  QEMU 7.2 here.
* ``-m`` is always passed: the board's RAM in MiB (QEMU ignores it where the
  board says ``fixed``).  ``extra_options`` carries ``-smp``, ``-no-reboot``
  (with ``panic=-1`` a panic ends QEMU instead of rebooting the guest),
  ``-sandbox`` and the board's extra arguments; no entry may hold whitespace,
  a quote or a brace (the line is re-split, and ``{...}`` is LAVA markup).
* The kernel command line is the job's, whole and unchanged, as ``-append``
  in the kernel image's ``image_arg`` (``-kernel {kernel} -append '...'``):
  the ``qemu`` boot method has no other way (``extra_kernel_args`` and
  ``boot_options`` are for bootloaders and installers).  It keeps
  ``cmaharness.shell=batch`` (see below).
* The files are content-addressed: ``<artifact_url><sha256>``, as the remote
  hosts' store; LAVA checks each download against ``sha256sum``.  The
  initramfs is passed as it is (gzip: the kernel unpacks it), no
  ``compression`` (LAVA would decompress it) and no overlay.

The test action: ``interactive``, not a lava-test-shell definition.  A
definition needs LAVA's overlay in the guest: by default on a qcow2 disk made
with libguestfs and attached as an IDE drive (vexpress has no IDE), or
appended to the ramdisk (``format: cpio.newc``, ``overlays: {lava: true}``).
Then LAVA waits for a shell prompt, exports its environment, and runs
``lava-test-runner`` through a POSIX shell with ``lava-test-case`` helpers, a
second protocol around ours whose output the judge does not read.  The
``interactive`` action needs none of that (``needs_overlay`` is False): it
types each command on the console and waits for regular expressions.  So
the job does exactly what :class:`harness.console.Console` does: one command
per step, the very line :func:`harness.script.step_line` builds (markers,
guard and all; first the ``shell`` step, ``true``), each typed only after
the previous step's end marker came back.  Typing the whole script at once
(one command of many lines, or a here-document) would change the protocol:
lines typed ahead sit in the tty, where a guest command reading stdin could
take them, and their echo can interleave with a marker being printed.

The shell stays the batch shell (``cmaharness.shell=batch``, as in every
job's command line): the interactive ash prints ``cma-harness# `` but runs
busybox's line editor, which caps a line at CONFIG_FEATURE_EDITING_MAX_LEN
(1024 bytes by default) while a step's line may take up to 4000 (the area
loop of the default matrix is about 2.8 KB), and it is not what the judge's
fixtures were recorded with.  The batch shell prints no prompt, so nothing
waits for one: the boot action's ``prompts`` is /init's banner
``cma-harness: init ready`` (what :meth:`Console.wait_for_shell` waits for),
each command's ``successes`` is its step's end marker with
``wait_for_prompt: false``, and the script's ``prompts`` (a prompt seen while
a success is awaited fails the command) is /init's ``cma-harness: shell
exited``, printed only when the shell died.  The markers are printed from a
``printf`` format, so the echo of the typed line never matches.  The guest is
not powered off at the end: LAVA's finalize stops QEMU, and the judge reads
"every step ended" as a poweroff.  A panic ends QEMU (``-no-reboot``) and the
job with it; a hang runs into the test action's timeout, LAVA having no
per-step budget.

Checking: :func:`validate` runs the system Python (``/usr/bin/python3``),
where Debian's ``lava-common`` lives (it is not on PyPI), on the job text:
``lava_common.compat.yaml_safe_load`` (the loader of LAVA's server) and
``lava_common.schemas.validate(data, strict=True, extra_context_variables=[])``.
The job text is JSON (:func:`job_yaml`): YAML, and what LAVA's loader reads
back is compared with the definition.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from harness.boards import Board
from harness.cmdline import validate_cmdline
from harness.console import READY_BANNER, SHELL_STEP
from harness.errors import EnvironmentProblem, InputError
from harness.job import Artifact, CellJob
from harness.qemu import SANDBOX
from harness.results import save
from harness.script import BudgetKind, Step, step_line

LAVA_COMMON_PACKAGE = "lava-common"  # Debian's package of lava_common (not on PyPI)
SYSTEM_PYTHON = Path("/usr/bin/python3")  # the Python that imports Debian's lava_common
SHELL_EXITED = "cma-harness: shell exited"  # rootfs/init, when the guest's shell died
ARTIFACT_KEYS = ("zimage", "dtb", "initrd")  # the keys of job_definition's ``urls``
URL_SCHEMES = ("http", "https", "file")  # what LAVA's downloader fetches that we can serve
_IMAGES = {"zimage": ("kernel", "-kernel {kernel}"), "dtb": ("dtb", "-dtb {dtb}"),
           "initrd": ("ramdisk", "-initrd {ramdisk}")}
_JOB_NAME_MAX = 200  # lava_common.schemas: job_name is 1..200 characters
_VALIDATE_TIMEOUT_S = 120
# QEMU's NIC model per machine: the board's own (hw/arm/vexpress.c, exynos4_boards.c), or
# on virt one without an option ROM.  LAVA's template adds a NIC to every job.
DEFAULT_NIC_MODELS = {"vexpress-a9": "lan9118", "vexpress-a15": "lan9118", "smdkc210": "lan9118",
                      "virt": "tulip"}
# The CPU for a board whose file names none: exynos4210 builds Cortex-A9 cores whatever -cpu says.
DEFAULT_CPUS = {"smdkc210": "cortex-a9"}
# Milliseconds between typed characters: QEMU's exynos4210 UART loses input beyond its
# 256-byte FIFO when a line arrives at once (harness.console.CHUNK), and LAVA types a line at
# once unless delayed (measured: the 574-byte debugfs-probe line arrived mangled).  With a
# delay LAVA 2023.01 sends character by character, each after pexpect's own 50 ms
# (delaybeforesend): ~20 characters/s, an smdkc210 cell of the default matrix took 11 minutes.
DEFAULT_CHARACTER_DELAYS_MS = {"smdkc210": 1}
_UNSAFE_OPTION = re.compile(r"[\s'\"\\{}]")
_REGEX_SPECIAL = re.compile(r"([\\.^$*+?{}\[\]|()])")
_VALIDATOR = r"""
import json, sys
try:
    from lava_common.compat import yaml_safe_load
    from lava_common.schemas import validate
    from voluptuous import Invalid
except ImportError as exc:
    print(exc)
    sys.exit(3)
for index, text in enumerate(json.load(sys.stdin)):
    try:
        data = yaml_safe_load(text)
        validate(data, strict=True, extra_context_variables=[])
    except Exception as exc:
        error = str(exc) if isinstance(exc, Invalid) else f"{type(exc).__name__}: {exc}"
        print(json.dumps({"index": index, "error": error}))
        sys.exit(1)
    print(json.dumps({"index": index, "data": data}))
"""


@dataclass(frozen=True)
class LavaSettings:
    """Where and how cell jobs run in a LAVA lab.

    Attributes:
        artifact_url: URL prefix the LAVA workers fetch the boot files from
            (``http``, ``https`` or ``file``); a file's URL is the prefix
            followed by its SHA-256 (hex), e.g. ``http://10.0.0.1:8765/<sha256>``.
        device_type: the LAVA device type (its template must be LAVA's qemu.jinja2).
        tags: device tags a worker's device must have.
        job_timeout_minutes: the whole job, in minutes (LAVA refuses an action
            timeout above it).
        deploy_timeout_minutes: downloading the boot files, in minutes.
        test_timeout_minutes: every guest step together, in minutes (LAVA has
            no per-step budget).
        timeout_factor: multiplies the job's boot budget (seconds), like
            ``$CMA_HARNESS_TIMEOUT_FACTOR`` on a harness host.
        priority: LAVA's priority, 0..100 or ``high``/``medium``/``low``.
        visibility: ``public``, ``personal`` (LAVA's word for private).
        job_name_prefix: the job name is ``<prefix> <board>:<cmdline>``.
        netdevice: the QEMU ``-net`` backend of the NIC LAVA's template adds
            (``none``: unplugged; ``user``: QEMU's user networking).
        sandbox: pass QEMU's ``-sandbox`` seccomp filter (:data:`harness.qemu.SANDBOX`);
            the workers' QEMU must have seccomp support (Debian's has).
        nic_models: QEMU NIC model per QEMU machine (see the module docstring).
        default_cpus: QEMU ``-cpu`` per machine, for boards whose file has ``cpu = ""``.
        character_delays_ms: milliseconds between typed characters, per QEMU machine.
    """

    artifact_url: str
    device_type: str = "qemu"
    tags: tuple[str, ...] = ()
    job_timeout_minutes: int = 90
    deploy_timeout_minutes: int = 10
    test_timeout_minutes: int = 60
    timeout_factor: float = 1.0
    priority: int | str = "medium"
    visibility: str = "public"
    job_name_prefix: str = "cma-harness"
    netdevice: str = "none"
    sandbox: bool = True
    nic_models: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_NIC_MODELS), hash=False)
    default_cpus: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_CPUS), hash=False)
    character_delays_ms: Mapping[str, int] = field(
        default_factory=lambda: dict(DEFAULT_CHARACTER_DELAYS_MS), hash=False)


def artifact_urls(job: CellJob, prefix: str) -> dict[str, str]:
    """The URL of each of ``job``'s boot files (keys of :data:`ARTIFACT_KEYS`): ``prefix`` + SHA-256.

    A ``/`` is added to ``prefix`` if it lacks one.

    Raises:
        InputError: the prefix is not an http, https or file URL.
    """
    scheme = urlsplit(prefix).scheme
    if scheme not in URL_SCHEMES:
        raise InputError(f"LAVA artifact URL {prefix!r}: must start with "
                         f"{', '.join(s + '://' for s in URL_SCHEMES)}")
    base = prefix if prefix.endswith("/") else prefix + "/"
    arts = {"zimage": job.zimage, "dtb": job.dtb, "initrd": job.initrd}
    return {key: base + art.sha256 for key, art in arts.items() if art is not None}


def job_definition(job: CellJob, settings: LavaSettings, urls: Mapping[str, str]) -> dict[str, Any]:
    """The LAVA job definition of ``job`` (see the module docstring), as a JSON-ready dict.

    ``urls``: where a worker downloads each boot file, by key of
    :data:`ARTIFACT_KEYS` (``dtb`` only if the job has one); see :func:`artifact_urls`.

    Raises:
        InputError: the kernel command line is unsafe (:func:`harness.cmdline.validate_cmdline`),
            a boot file has no URL or no SHA-256, the board's machine has no NIC
            model or (without a CPU of its own) no default CPU in ``settings``, or
            a QEMU argument holds whitespace, a quote or a brace.
        ValueError: a step's line is longer than the tty takes.
    """
    definition: dict[str, Any] = {
        "device_type": settings.device_type,
        "job_name": f"{settings.job_name_prefix} {job.cell.name}"[:_JOB_NAME_MAX],
        "timeouts": {"job": {"minutes": settings.job_timeout_minutes}},
        "priority": settings.priority,
        "visibility": settings.visibility,
    }
    if settings.tags:
        definition["tags"] = list(settings.tags)
    definition["metadata"] = {"cma-harness.cell": job.cell.name, "cma-harness.slug": job.cell.slug,
                              "cma-harness.nonce": job.nonce, "cma-harness.board": job.board.name}
    definition["context"] = _context(job.board, settings)
    definition["actions"] = [{"deploy": _deploy(job, settings, urls)}, {"boot": _boot(job, settings)},
                             {"test": _test(job, settings)}]
    return definition


def _context(board: Board, settings: LavaSettings) -> dict[str, Any]:
    """The job context LAVA renders qemu.jinja2 with: the QEMU machine, CPU, RAM, NIC and options."""
    cpu = board.cpu or settings.default_cpus.get(board.machine, "")
    if not cpu:
        raise InputError(f"board {board.name}: names no CPU and LavaSettings.default_cpus has none for "
                         f"machine {board.machine} (LAVA's qemu template always passes -cpu)")
    nic = settings.nic_models.get(board.machine)
    if nic is None:
        raise InputError(f"board {board.name}: LavaSettings.nic_models has no NIC model for machine "
                         f"{board.machine} (LAVA's qemu template always adds a NIC)")
    options = ["-smp", str(board.smp), "-no-reboot", *(("-sandbox", SANDBOX) if settings.sandbox else ()),
               *board.qemu_args]
    for option in options:
        if not option or _UNSAFE_OPTION.search(option):
            raise InputError(f"board {board.name}: QEMU argument {option!r} cannot go through LAVA "
                             "(its command line is re-split on whitespace; {...} is LAVA markup)")
    context: dict[str, Any] = {"arch": "arm", "machine": board.machine, "cpu": cpu,
                               "memory": board.memory_mib, "model": f"model={nic}",
                               "netdevice": settings.netdevice, "extra_options": options}
    delay = settings.character_delays_ms.get(board.machine, 0)
    if delay > 0:
        context["test_character_delay"] = delay
    return context


def _image(job: CellJob, key: str, art: Artifact, urls: Mapping[str, str]) -> dict[str, Any]:
    """One entry of the deploy action's ``images``: URL, SHA-256 and QEMU argument."""
    if key not in urls:
        raise InputError(f"cell {job.cell.name}: no URL for its {key} ({art.path})")
    if not art.sha256:
        raise InputError(f"cell {job.cell.name}: its {key} ({art.path}) has no SHA-256 "
                         "(a job made for this host only)")
    arg = _IMAGES[key][1]
    if key == "zimage" and job.kernel_cmdline:
        arg += " -append " + shlex.quote(job.kernel_cmdline)
    return {"url": urls[key], "sha256sum": art.sha256, "image_arg": arg}


def _deploy(job: CellJob, settings: LavaSettings, urls: Mapping[str, str]) -> dict[str, Any]:
    """The deploy action: the boot files to tmpfs (the kernel's ``image_arg`` carries ``-append``)."""
    validate_cmdline(job.kernel_cmdline)
    arts = {"zimage": job.zimage, "dtb": job.dtb, "initrd": job.initrd}
    images = {_IMAGES[key][0]: _image(job, key, art, urls) for key, art in arts.items() if art is not None}
    return {"to": "tmpfs", "timeout": {"minutes": settings.deploy_timeout_minutes}, "images": images}


def _boot(job: CellJob, settings: LavaSettings) -> dict[str, Any]:
    """The boot action: QEMU, until /init's banner (the job's boot budget, scaled, in seconds)."""
    seconds = max(1, math.ceil(job.budgets.boot * settings.timeout_factor))
    return {"method": "qemu", "media": "tmpfs", "timeout": {"seconds": seconds},
            "prompts": [_literal(READY_BANNER)]}


def _literal(text: str) -> str:
    """``text`` as a regular expression matching itself (pexpect compiles LAVA's patterns)."""
    return _REGEX_SPECIAL.sub(r"\\\1", text)


def end_pattern(nonce: str, step_id: str) -> str:
    """The regular expression of ``step_id``'s end marker line (``harness.script``), up to its newline.

    The console ends the line in ``\r\r\n`` (the batch shell's output goes through ``cat``
    to the tty), so any number of ``\r`` is allowed.
    """
    return rf"@@{_literal(nonce)} end {_literal(step_id)} (-|[0-9]+) [0-9]+(\.[0-9]+)?\r*\n"


def guest_steps(job: CellJob) -> list[Step]:
    """The steps typed on the console, in order: ``shell`` (``true``), then the cell's script."""
    return [Step(SHELL_STEP, "true", BudgetKind.BOOT), *job.script().steps]


def _test(job: CellJob, settings: LavaSettings) -> dict[str, Any]:
    """The interactive test action: each step's line, then wait for its end marker."""
    script = [{"command": step_line(step, job.nonce),
               "successes": [{"message": end_pattern(job.nonce, step.id)}],
               "wait_for_prompt": False} for step in guest_steps(job)]
    return {"timeout": {"minutes": settings.test_timeout_minutes},
            "interactive": [{"name": "cma-harness", "prompts": [_literal(SHELL_EXITED)],
                             "script": script}]}


def job_yaml(definition: Mapping[str, Any]) -> str:
    """The job text LAVA takes: JSON, which LAVA's YAML loader reads (checked by :func:`validate`).

    PyYAML is not a dependency of the harness; JSON is YAML (1.2, and what
    PyYAML's SafeLoader reads for the data here).
    """
    return json.dumps(definition, indent=2, ensure_ascii=True) + "\n"


def validate(definition: Mapping[str, Any]) -> None:
    """Check ``definition`` with LAVA's own loader and job schema (strict), in the system Python.

    Raises:
        InputError: LAVA's schema refuses it (its message), or LAVA's loader reads
            the job text back differently.
        EnvironmentProblem: no ``/usr/bin/python3``, or it cannot import
            ``lava_common`` (the Debian package ``lava-common``), or the check failed.
    """
    _validate_all([definition])


def _validate_all(definitions: Sequence[Mapping[str, Any]]) -> None:
    """:func:`validate` for several definitions in one run of the system Python."""
    texts = [job_yaml(d) for d in definitions]
    try:
        replies = [json.loads(line) for line in _run_validator(json.dumps(texts)).splitlines()]
    except ValueError as exc:
        raise EnvironmentProblem(f"{SYSTEM_PYTHON}: unreadable answer checking LAVA jobs: {exc}") from exc
    if not (len(replies) == len(texts) or (replies and "error" in replies[-1])):
        raise EnvironmentProblem(f"{SYSTEM_PYTHON}: checked {len(replies)} of {len(texts)} LAVA jobs")
    for reply in replies:
        definition = definitions[reply["index"]]
        name = definition.get("job_name", "the LAVA job")
        if "error" in reply:
            raise InputError(f"{name}: LAVA's job schema refuses it: {reply['error']}")
        if reply["data"] != json.loads(json.dumps(definition)):
            raise InputError(f"{name}: LAVA's YAML loader reads the job text back differently")


def _run_validator(stdin: str) -> str:
    """Run :data:`_VALIDATOR` in :data:`SYSTEM_PYTHON`; its output (JSON lines; an error last).

    Raises:
        EnvironmentProblem: see :func:`validate`.
    """
    install = (f"install the Debian package {LAVA_COMMON_PACKAGE} "
               f"(apt-get install --no-install-recommends {LAVA_COMMON_PACKAGE}, or make deps)")
    try:
        proc = subprocess.run([str(SYSTEM_PYTHON), "-I", "-c", _VALIDATOR], input=stdin,
                              capture_output=True, text=True, timeout=_VALIDATE_TIMEOUT_S, check=False)
    except OSError as exc:
        raise EnvironmentProblem(f"cannot run {SYSTEM_PYTHON} to check LAVA jobs with LAVA's schema: "
                                 f"{exc.strerror or exc}; {install}") from exc
    except subprocess.TimeoutExpired as exc:
        raise EnvironmentProblem(f"{SYSTEM_PYTHON}: checking LAVA jobs took over "
                                 f"{_VALIDATE_TIMEOUT_S}s") from exc
    if proc.returncode == 3:
        raise EnvironmentProblem(f"{SYSTEM_PYTHON} cannot import lava_common ({proc.stdout.strip()}): "
                                 f"{install}")
    if proc.returncode not in (0, 1):
        raise EnvironmentProblem(f"{SYSTEM_PYTHON}: checking LAVA jobs failed (exit "
                                 f"{proc.returncode}): {proc.stderr.strip()[-300:]}")
    return proc.stdout


def export_jobs(jobs: Sequence[CellJob], settings: LavaSettings, out_dir: Path) -> list[Path]:
    """Write ``<slug>.yaml`` in ``out_dir`` (made if missing) for each job; their paths, in order.

    Every definition is built and checked (:func:`validate`) before any file is
    written; each file is written atomically (temp file, then rename).  File
    URLs: :func:`artifact_urls` with ``settings.artifact_url``.

    Raises:
        InputError: two jobs of one cell, a bad artifact URL, or see
            :func:`job_definition` and :func:`validate`.
        EnvironmentProblem: see :func:`validate`; a file cannot be written.
    """
    slugs = [job.cell.slug for job in jobs]
    if len(set(slugs)) != len(slugs):
        twice = sorted({s for s in slugs if slugs.count(s) > 1})
        raise InputError(f"LAVA export: more than one job for the cell(s) {', '.join(twice)}")
    definitions = [job_definition(job, settings, artifact_urls(job, settings.artifact_url)) for job in jobs]
    if definitions:
        _validate_all(definitions)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EnvironmentProblem(f"cannot make {out_dir}: {exc.strerror or exc}") from exc
    paths = []
    for slug, definition in zip(slugs, definitions, strict=True):
        path = out_dir / f"{slug}.yaml"
        save(path, job_yaml(definition).encode())
        paths.append(path)
    return paths

"""QEMU command lines for a board, and the QEMU version for provenance."""

from __future__ import annotations

import ctypes
import functools
import shlex
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness.boards import Board
from harness.errors import EnvironmentProblem

QEMU = "qemu-system-arm"
# Every boot gets panic=-1: a panic powers the guest off at once (with
# -no-reboot QEMU exits), so a dead guest is noticed as EOF, not a timeout.
# cmaharness.shell=batch (a dotted parameter: the kernel ignores it) tells
# rootfs/init to start a non-interactive shell for the harness to drive.
HARNESS_KERNEL_ARGS = ("panic=-1",)
BATCH_SHELL_ARG = "cmaharness.shell=batch"


# QEMU's seccomp filter (system/qemu-seccomp.c): no obsolete syscalls, no setuid,
# no fork/exec, no scheduler or resource changes.  A guest needs none of them.
SANDBOX = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"


def die_with_parent() -> None:
    """``preexec_fn`` for a QEMU child: SIGKILL when the harness dies, even by SIGKILL.

    PR_SET_PDEATHSIG (include/uapi/linux/prctl.h).
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)


@functools.cache
def sandbox_args() -> tuple[str, ...]:
    """``("-sandbox", SANDBOX)`` if this QEMU build has seccomp support, else ``()``.

    Probed once per process (~30 ms): a QEMU built without seccomp exits 1 at once
    for ``-sandbox on``; one with it starts (stopped, ``-S``), reads ``quit`` on its
    monitor and exits 0.  (Every ``cma-harness cell`` on a host probes anew.)
    """
    argv = [QEMU, "-M", "none", "-S", "-display", "none", "-nic", "none", "-serial", "none",
            "-monitor", "stdio", "-sandbox", SANDBOX]
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=10, check=False, input=b"quit\n")
    except (subprocess.TimeoutExpired, OSError):
        return ()
    return ("-sandbox", SANDBOX) if proc.returncode == 0 else ()


@dataclass(frozen=True)
class BootSpec:
    """Everything one boot needs: the files (host paths) and the full kernel cmdline."""

    board: Board
    zimage: Path
    dtb: Path | None  # None: QEMU generates the device tree (virt)
    initrd: Path
    cmdline: str


def kernel_cmdline(board: Board, cell_cmdline: str, interactive: bool = False) -> str:
    """The whole kernel command line: board arguments, harness arguments, the cell's.

    ``interactive`` (a human at the console) leaves out the batch-shell switch.
    """
    harness = HARNESS_KERNEL_ARGS if interactive else (*HARNESS_KERNEL_ARGS, BATCH_SHELL_ARG)
    return " ".join([*board.kernel_args, *harness, cell_cmdline]).strip()


def qemu_argv(spec: BootSpec, interactive: bool = False) -> list[str]:
    """The qemu-system-arm argv for ``spec``: no network, serial console on stdio.

    ``interactive`` multiplexes the monitor onto stdio (``mon:stdio``) so a
    human's Ctrl-C reaches the guest and Ctrl-A x quits QEMU.
    """
    board = spec.board
    argv = [QEMU, "-M", board.machine]
    if board.cpu:
        argv += ["-cpu", board.cpu]
    argv += ["-smp", str(board.smp)]
    if not board.memory_fixed:
        argv += ["-m", str(board.memory_mib)]
    argv += ["-kernel", str(spec.zimage)]
    if spec.dtb is not None:
        argv += ["-dtb", str(spec.dtb)]
    argv += [
        "-initrd", str(spec.initrd),
        "-append", spec.cmdline,
        "-display", "none", "-nic", "none", "-no-reboot", *sandbox_args(),
        *(["-serial", "mon:stdio"] if interactive else ["-monitor", "none", "-serial", "stdio"]),
        *board.qemu_args,
    ]
    return argv


def dump_dtb(board: Board, dest: Path) -> Path:
    """The device tree QEMU generates for ``board`` (``-machine <m>,dumpdtb=``), written to ``dest``.

    For machines without a dtb file (``virt``); the cma= oracle reads its
    memory map and reserved-memory from it.

    Raises:
        EnvironmentProblem: QEMU failed to dump it.
    """
    argv = [QEMU, "-machine", f"{board.machine},dumpdtb={dest}", "-smp", str(board.smp),
            "-display", "none", "-nic", "none"]  # as at boot; no NIC needs no option ROM
    if board.cpu:
        argv += ["-cpu", board.cpu]
    if not board.memory_fixed:
        argv += ["-m", str(board.memory_mib)]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not dest.is_file():
        raise EnvironmentProblem(f"qemu could not dump the {board.machine} device tree: "
                                 f"{result.stderr.strip()[:200]}")
    return dest


def printable(argv: list[str]) -> str:
    """``argv`` shell-quoted, for the user to paste."""
    return shlex.join(argv)


def qemu_version() -> str:
    """First line of ``qemu-system-arm --version``.

    Raises:
        EnvironmentProblem: QEMU is not installed.
    """
    if shutil.which(QEMU) is None:
        raise EnvironmentProblem(f"{QEMU} not found: run 'make deps' (see README)")
    out = subprocess.run([QEMU, "--version"], capture_output=True, text=True, check=True)
    return out.stdout.splitlines()[0].strip()

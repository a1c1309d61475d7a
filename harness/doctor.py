"""Preflight (``cma-harness doctor``): is this host ready to build the kernels and boot the boards?

Every check takes well under a second and they run concurrently: each tool of
:data:`TOOLS` is looked up on ``PATH``; the cross compiler must link a tiny static
ARM program and the host compiler a tiny host program (:data:`COMPILES`); the
headers of :data:`HEADERS` must be there; QEMU must know each requested board's
machine and CPU; the armhf busybox must be in the cache; the cache's file
system must have room for a kernel build.  Each :class:`Problem` names the
Debian package that provides what is missing.  Nothing runs through a shell.
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from harness import rootfs
from harness.boards import Board
from harness.cache import cache_root
from harness.errors import EnvironmentProblem
from harness.kbuild import CROSS_COMPILE
from harness.qemu import QEMU

# Free space the cache's file system needs for one cold kernel build, in GiB.
# Measured with Linux 6.1 and 6.12: the unpacked, patched tree is 1.5-1.7 GiB, an
# O= build directory (lean.config, no debug info) ~0.2 GiB per defconfig and
# fragments (the default matrix has two), the artifacts ~15 MiB per kernel, and
# ccache grows by a few hundred MiB per cold build: ~2.5 GiB, and 4 GiB leaves
# room for make's temporaries and the initramfs builds.
MIN_FREE_GIB = 4.0
TIMEOUT_S = 30.0  # for any one probe; a healthy host answers each in well under a second
_GIB = 1 << 30
_ARM = 0x28  # ELF e_machine of 32-bit ARM
_PROGRAM = ("#include <stdio.h>\n#include <sys/ioctl.h>\n\n"
            "int main(void)\n{\n\treturn printf(\"ok\\n\") < 0;\n}\n")
# Where a tool missing from PATH may still be installed (root's PATH has them, a user's may not).
_SBIN = "/usr/sbin:/sbin"


@dataclass(frozen=True)
class Problem:
    """One thing missing or wrong on the host.

    Attributes:
        what: what is wrong, e.g. ``missing rsync`` or ``boards/x.toml: QEMU's
            qemu-system-arm has no machine 'y'``.
        package: the Debian package that provides it, or ``""`` when no package helps.
    """

    what: str
    package: str = ""

    def line(self) -> str:
        """The problem as one line, e.g. ``missing rsync (Debian package rsync)``."""
        return f"{self.what} (Debian package {self.package})" if self.package else self.what


@dataclass(frozen=True)
class Tool:
    """A command that must be on ``PATH``, the Debian package providing it, and what needs it.

    ``build``: only building a kernel or initramfs needs it (False: every run does).
    """

    command: str
    package: str
    needed_for: str
    build: bool = True


TOOLS: tuple[Tool, ...] = (
    Tool(CROSS_COMPILE + "gcc", "gcc-arm-linux-gnueabihf", "the kernel and the static guest programs"),
    Tool("gcc", "gcc", "the kernel's host programs (HOSTCC)"),
    Tool("make", "make", "the kernel build"),
    Tool("patch", "patch", "applying the series"),
    Tool("tar", "tar", "unpacking the kernel source"),
    Tool("xz", "xz-utils", "unpacking linux-source-*.tar.xz"),
    Tool("flex", "flex", "the kernel build's Kconfig and dtc"),
    Tool("bison", "bison", "the kernel build's Kconfig and dtc"),
    Tool("bc", "bc", "the kernel build's timeconst.h"),
    Tool("perl", "perl", "the kernel build and headers_install"),
    Tool("rsync", "rsync", "make headers_install"),
    Tool("cpio", "cpio", "the kernel build's kheaders (CONFIG_IKHEADERS)"),
    Tool("depmod", "kmod", "make modules_install (modules.dep for the guest's modprobe)"),
    Tool("ccache", "ccache", "rebuilds"),
    Tool("git", "git", "identifying a kernel tree given by path"),
    Tool("dtc", "device-tree-compiler", "the cma= oracle reading a dtb", build=False),
    Tool("fdtget", "device-tree-compiler", "the cma= oracle reading a dtb", build=False),
    Tool(QEMU, "qemu-system-arm", "booting the boards", build=False),
)


@dataclass(frozen=True)
class Header:
    """A host header the kernel's host programs include, and the Debian package providing it."""

    include: str
    package: str
    needed_for: str


HEADERS: tuple[Header, ...] = (
    Header("openssl/opensslv.h", "libssl-dev", "scripts/sign-file"),
    Header("gelf.h", "libelf-dev", "objtool and resolve_btfids"),
)


@dataclass(frozen=True)
class Compile:
    """A compiler that must turn :data:`_PROGRAM` into an executable.

    Attributes:
        compiler: the command; its absence is reported by :data:`TOOLS`.
        flags: extra arguments, e.g. ``-static``.
        libc_package: provides the headers, crt files and libc a failed link
            complains about (``No such file``, ``cannot find``).
        compiler_package: blamed for any other failure.
        proves: the ok line's claim, e.g. ``links a static ARM program``.
        machine: the ELF e_machine the output must have, or None for the host's.
    """

    compiler: str
    flags: tuple[str, ...]
    libc_package: str
    compiler_package: str
    proves: str
    machine: int | None


COMPILES: tuple[Compile, ...] = (
    Compile(CROSS_COMPILE + "gcc", ("-static",), "libc6-dev-armhf-cross", "gcc-arm-linux-gnueabihf",
            "links a static ARM program", _ARM),
    Compile("gcc", (), "libc6-dev", "gcc", "links a host program (HOSTCC)", None),
)


@dataclass(frozen=True)
class Findings:
    """What the checks found: the problems, and one summary line per check that passed."""

    problems: tuple[Problem, ...] = ()
    passed: tuple[str, ...] = ()

    @staticmethod
    def merge(parts: Iterable[Findings]) -> Findings:
        """All ``parts`` in order."""
        listed = list(parts)
        return Findings(tuple(p for f in listed for p in f.problems),
                        tuple(s for f in listed for s in f.passed))


class HostNotReady(EnvironmentProblem):
    """The host lacks something a build or boot needs; ``problems`` says each thing (one line each)."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__("; ".join(p.line() for p in problems))
        self.problems = tuple(problems)


def _run(argv: list[str], stdin: str = "", cwd: Path | None = None) -> tuple[int, str, str]:
    """Run ``argv`` (no shell) for at most :data:`TIMEOUT_S` seconds: (exit status, stdout, stderr).

    A program that cannot be started or does not finish gives status -1 and the reason as stderr.
    """
    try:
        proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, errors="replace",
                              cwd=cwd, timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return -1, "", f"{argv[0]} did not finish in {TIMEOUT_S:.0f} s"
    except OSError as exc:
        return -1, "", f"{argv[0]}: {exc.strerror or exc}"
    return proc.returncode, proc.stdout, proc.stderr


def _said(text: str) -> str:
    """The line of a tool's output that says what went wrong (else its first line), shortened."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = next((x for x in lines if "error" in x.lower()), lines[0] if lines else "no output")
    return line[:200]


def _elf_machine(path: Path) -> int | None:
    """e_machine of the 32-bit little-endian ELF file at ``path``, or None if it is not one."""
    try:
        with path.open("rb") as fh:
            head = fh.read(20)
    except OSError:
        return None
    return head[18] | head[19] << 8 if head[:6] == b"\x7fELF\x01\x01" and len(head) == 20 else None


def check_python() -> Findings:
    """The interpreter's version for the summary; never a problem.

    The package needs Python 3.11 or newer (``tomllib``) and could not have been
    imported by an older one; pip refuses to install it there (requires-python).
    """
    return Findings(passed=(f"Python {platform.python_version()} ({sys.executable})",))


def check_tools(tools: Sequence[Tool]) -> Findings:
    """Each of ``tools`` is on ``PATH``; one problem per missing command, naming its package.

    A command found only in /usr/sbin or /sbin is a problem too (the kernel's
    scripts look it up on ``PATH``), which says to add that directory to ``PATH``.
    """
    problems, passed = [], []
    for tool in tools:
        found = shutil.which(tool.command)
        if found:
            passed.append(f"{tool.command} ({found})")
        elif elsewhere := shutil.which(tool.command, path=_SBIN):
            problems.append(Problem(f"{tool.command} is not on PATH but in {Path(elsewhere).parent}: "
                                    f"add that directory to PATH"))
        else:
            problems.append(Problem(f"missing {tool.command}, needed for {tool.needed_for}", tool.package))
    return Findings(tuple(problems), tuple(passed))


def check_compile(spec: Compile) -> Findings:
    """``spec.compiler`` compiles and links a tiny C program (stdio.h, sys/ioctl.h) in a temporary directory.

    Nothing is reported when the compiler is not on ``PATH`` (:func:`check_tools` names it).
    """
    if shutil.which(spec.compiler) is None:
        return Findings()
    with tempfile.TemporaryDirectory(prefix="cma-harness-doctor-") as tmp:
        (Path(tmp) / "t.c").write_text(_PROGRAM)
        status, _, stderr = _run([spec.compiler, *spec.flags, "-o", "t", "t.c"], cwd=Path(tmp))
        machine = _elf_machine(Path(tmp) / "t") if status == 0 else None
    if status == 0 and (spec.machine is None or machine == spec.machine):
        _, version, _ = _run([spec.compiler, "-dumpfullversion"])
        return Findings(passed=(f"{spec.compiler} (gcc {version.strip() or '?'}) {spec.proves}",))
    if status != 0:
        libc = "no such file" in stderr.lower() or "cannot find" in stderr.lower()
        return Findings((Problem(f"{spec.compiler} cannot link a test program ({_said(stderr)})",
                                 spec.libc_package if libc else spec.compiler_package),))
    return Findings((Problem(f"{spec.compiler} did not produce an executable for the right machine "
                             f"(ELF e_machine {machine}, want {spec.machine})", spec.compiler_package),))


def check_header(header: Header) -> Findings:
    """The host compiler finds ``header`` (``gcc -E``); nothing is reported without gcc."""
    if shutil.which("gcc") is None:
        return Findings()
    status, _, stderr = _run(["gcc", "-E", "-x", "c", "-o", os.devnull, "-"],
                             stdin=f"#include <{header.include}>\n")
    if status == 0:
        return Findings(passed=(f"<{header.include}> for {header.needed_for}",))
    return Findings((Problem(f"missing the header <{header.include}>, needed for {header.needed_for} "
                             f"({_said(stderr)})", header.package),))


def _qemu_lists(flag: str) -> tuple[set[str], str]:
    """The names ``qemu-system-arm FLAG help`` lists (first word of each line), and its error if it failed."""
    status, stdout, stderr = _run([QEMU, flag, "help"])
    if status != 0:
        return set(), f"'{QEMU} {flag} help' failed: {_said(stderr or stdout)}"
    return {line.split()[0] for line in stdout.splitlines() if line.strip()}, ""


def check_qemu(boards: Sequence[Board]) -> Findings:
    """QEMU knows each board's machine and CPU (a CPU of ``""`` is the machine's default).

    Each QEMU query runs once for all boards.  Nothing is reported when QEMU is
    not on ``PATH`` (:func:`check_tools` names it).
    """
    if shutil.which(QEMU) is None:
        return Findings()
    machines, machine_error = _qemu_lists("-machine")
    cpus, cpu_error = _qemu_lists("-cpu")
    if machine_error or cpu_error:
        return Findings(tuple(Problem(e, "qemu-system-arm") for e in (machine_error, cpu_error) if e))
    problems, passed = [], []
    for board in boards:
        where = board.file or f"board {board.name}"
        lacks = [f"machine '{board.machine}'"] if board.machine not in machines else []
        lacks += [f"CPU '{board.cpu}'"] if board.cpu and board.cpu not in cpus else []
        problems += [Problem(f"{where}: QEMU's {QEMU} has no {what}", "qemu-system-arm") for what in lacks]
        if not lacks:
            passed.append(f"{QEMU} knows {board.name}: machine {board.machine}, "
                          f"CPU {board.cpu or 'the machine default'}")
    _, version, _ = _run([QEMU, "--version"])
    passed.insert(0, (version.splitlines() or [f"{QEMU}: version unknown"])[0].strip())
    return Findings(tuple(problems), tuple(passed))


def check_busybox() -> Findings:
    """The armhf static busybox is in the cache (:func:`harness.rootfs.find_busybox`), an ARM executable."""
    try:
        path = rootfs.find_busybox()
    except EnvironmentProblem:
        path = cache_root() / "busybox" / "bin" / "busybox"
        return Findings((Problem(f"missing the armhf busybox {path}: run scripts/install-deps.sh",
                                 "busybox-static:armhf, unpacked into the cache"),))
    if _elf_machine(path) != _ARM or not os.access(path, os.X_OK):
        return Findings((Problem(f"{path} is not an executable 32-bit ARM busybox: delete it and "
                                 "run scripts/install-deps.sh",
                                 "busybox-static:armhf, unpacked into the cache"),))
    return Findings(passed=(f"armhf busybox ({path})",))


def check_disk(min_free_gib: float | None = None) -> Findings:
    """The cache (created if missing) is writable and its file system has ``min_free_gib`` GiB free.

    ``min_free_gib`` defaults to :data:`MIN_FREE_GIB`.  A cache that cannot be
    created is a problem; the space is then measured at its nearest existing parent.
    """
    need = MIN_FREE_GIB if min_free_gib is None else min_free_gib
    root = cache_root()
    problems = []
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        problems.append(Problem(f"cannot create the cache {root} ({exc.strerror}): "
                                "set CMA_HARNESS_CACHE to a writable directory"))
    where = next(p for p in (root, *root.parents) if p.exists())
    if where == root and not os.access(root, os.W_OK | os.X_OK):
        problems.append(Problem(f"the cache {root} is not writable: "
                                "set CMA_HARNESS_CACHE to a writable directory"))
    free = shutil.disk_usage(where).free / _GIB
    if free < need:
        problems.append(Problem(f"only {free:.1f} GiB free in {where} (the cache); a kernel build "
                                f"needs {need:.0f} GiB: free some or set CMA_HARNESS_CACHE"))
    return Findings(tuple(problems), (f"{free:.1f} GiB free in {where} (the cache; a kernel build "
                                      f"needs {need:.0f} GiB)",) if not problems else ())


def examine(boards: Sequence[Board], need_build: bool = True) -> Findings:
    """Run every check for booting ``boards`` (and, with ``need_build``, building their kernels).

    Independent checks run concurrently; the whole takes about a second on a
    ready host (each probe is bounded by :data:`TIMEOUT_S`).  Never raises for
    what it finds: that is in the returned :class:`Findings`.
    """
    tasks: list[Callable[[], Findings]] = [
        check_python,
        functools.partial(check_tools, [t for t in TOOLS if need_build or not t.build]),
        functools.partial(check_qemu, boards),
    ]
    if need_build:
        tasks += [functools.partial(check_compile, c) for c in COMPILES]
        tasks += [functools.partial(check_header, h) for h in HEADERS]
        tasks += [check_busybox, check_disk]
    with ThreadPoolExecutor(max_workers=len(tasks)) as pool:
        futures = [pool.submit(task) for task in tasks]
        return Findings.merge(f.result() for f in futures)


def check(boards: Sequence[Board], need_build: bool = True) -> list[Problem]:
    """The problems :func:`examine` finds (empty: the host is ready)."""
    return list(examine(boards, need_build).problems)


def raise_if_problems(problems: Sequence[Problem]) -> None:
    """Raise :class:`HostNotReady` carrying ``problems`` unless there are none."""
    if problems:
        raise HostNotReady(problems)


def preflight(boards: Sequence[Board], need_build: bool = True) -> None:
    """Preflight of ``build``, ``run`` and ``boot``: :func:`check`, then :func:`raise_if_problems`.

    Raises:
        HostNotReady: one or more problems (each one line, naming its Debian package).
    """
    raise_if_problems(check(boards, need_build))

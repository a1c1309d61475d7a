"""The guest's initramfs: busybox, /init, kernel modules and guest programs.

The archive is packed with the kernel's own ``usr/gen_init_cpio`` from a spec
file, so device nodes need no root and the archive is reproducible; it is
compressed with gzip (``mtime=0``).  Guest programs are the directories under
``rootfs/`` holding C sources: ``rootfs/<prog>/*.c`` is cross-compiled static
into ``/usr/bin/<prog>``, and each subdirectory ``rootfs/<prog>/<sub>/`` is
installed as ``/usr/share/<prog>/<sub>/``.  Scripts in ``rootfs/bin/`` go to
``/usr/bin/`` as they are.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness import paths
from harness.cache import cache_root, digest, file_digest, publish_dir
from harness.errors import BuildError, EnvironmentProblem
from harness.integrity import discard_corrupt, manifest_problems, write_manifest
from harness.kbuild import CROSS_COMPILE, KernelBuild

ROOTFS_DIR = paths.ROOTFS_DIR
RECIPE_VERSION = "4"
# The kernel's own test programs, cross-built from the patched tree: guest name -> source.
SELFTESTS = {"dmabuf-heap": "tools/testing/selftests/dmabuf-heaps/dmabuf-heap.c"}
_DIRS = ("/bin", "/sbin", "/usr", "/usr/bin", "/usr/sbin", "/usr/share", "/proc", "/sys",
         "/dev", "/tmp", "/root", "/etc", "/lib", "/lib/modules", "/mnt")


@dataclass(frozen=True)
class Initramfs:
    """A built initramfs: ``path`` to the gzip newc archive, ``key`` its cache key."""

    path: Path
    key: str


def find_busybox() -> Path:
    """The armhf static busybox unpacked by ``make deps`` into the cache.

    Raises:
        EnvironmentProblem: it is not there.
    """
    path = cache_root() / "busybox" / "bin" / "busybox"
    if not path.is_file():
        raise EnvironmentProblem(f"armhf busybox not found at {path}: run 'make deps' (see README)")
    return path


def guest_programs(rootfs_dir: Path = ROOTFS_DIR) -> list[Path]:
    """Directories under ``rootfs_dir`` that hold C sources, sorted by name."""
    return sorted(d for d in rootfs_dir.iterdir() if d.is_dir() and any(d.glob("*.c")))


def _inputs(kernel: KernelBuild, busybox: Path, rootfs_dir: Path,
            extra: dict[str, Path]) -> list[str]:
    parts = [RECIPE_VERSION, kernel.key, kernel.toolchain, file_digest(busybox),
             file_digest(rootfs_dir / "init")]
    for src in [*guest_programs(rootfs_dir), rootfs_dir / "bin"]:
        for f in sorted(p for p in src.rglob("*") if p.is_file()):
            parts.append(f"{f.relative_to(rootfs_dir)}\0{file_digest(f)}")
    for name, source in sorted(SELFTESTS.items()):
        parts.append(f"{name}\0{file_digest(_selftest_source(kernel.selftests_src, source))}")
    for guest_path, host_path in sorted(extra.items()):
        parts.append(f"{guest_path}\0{file_digest(host_path)}")
    return parts


def _selftest_source(tree: Path, source: str) -> Path:
    """``tree / source``, a kernel selftest every initramfs carries.

    Raises:
        BuildError: it is missing (a kernel tree or build without its selftests):
            the initramfs would silently lack the program.
    """
    path = tree / source
    if not path.is_file():
        raise BuildError(f"kernel selftest {source} is missing from {tree}; "
                         "the initramfs would lack its program")
    return path


def compile_program(sources: list[Path], headers: Path, tree: Path, out: Path,
                    strict: bool = True) -> None:
    """Cross-compile C ``sources`` into the static ARM executable ``out``.

    The kernel's exported UAPI headers (``headers``: an ``INSTALL_HDR_PATH``)
    come first on the include path so programs see this series' uapi headers
    (e.g. cma-dev.h); ``tools/testing/selftests`` of the kernel ``tree``
    follows, for kselftest.h.
    ``strict`` adds ``-Wall -Wextra -Werror`` (our own programs).

    Raises:
        BuildError: the compiler failed; the message carries its first lines.
    """
    warnings = ["-Wall", "-Wextra", "-Werror"] if strict else []
    argv = [CROSS_COMPILE + "gcc", "-static", "-O2", *warnings,
            "-I", str(headers / "include"),
            "-I", str(tree / "tools" / "testing" / "selftests"), "-o", str(out),
            *map(str, sources)]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BuildError(f"compiling guest program {out.name} failed:\n{result.stderr[:2000]}")


def compile_guest_programs(headers: Path, tree: Path, bindir: Path,
                           rootfs_dir: Path = ROOTFS_DIR) -> list[Path]:
    """Compile every guest program of ``rootfs_dir`` and the kernel's own selftests into ``bindir``.

    ``headers`` is the kernel's ``INSTALL_HDR_PATH`` and ``tree`` its patched
    source (see :func:`compile_program`).  Returns the executables written.

    Raises:
        BuildError: a compiler failed, or a selftest's source is missing from ``tree``.
    """
    bindir.mkdir(parents=True, exist_ok=True)
    built = []
    for prog in guest_programs(rootfs_dir):
        compile_program(sorted(prog.glob("*.c")), headers, tree, bindir / prog.name)
        built.append(bindir / prog.name)
    for name, source in SELFTESTS.items():
        compile_program([_selftest_source(tree, source)], headers, tree, bindir / name, strict=False)
        built.append(bindir / name)
    return built


def _spec(root: Path) -> str:
    """gen_init_cpio spec lines for every directory, file and symlink under ``root``."""
    lines = [f"dir {d} 0755 0 0" for d in _DIRS]
    lines.append("nod /dev/console 0600 0 0 c 5 1")
    seen = set(_DIRS)
    for path in sorted(root.rglob("*")):
        guest = "/" + str(path.relative_to(root))
        if guest in seen:
            continue
        if path.is_symlink():
            lines.append(f"slink {guest} {path.readlink()} 0777 0 0")
        elif path.is_dir():
            lines.append(f"dir {guest} 0755 0 0")
        else:
            mode = "0755" if path.stat().st_mode & 0o111 else "0644"
            lines.append(f"file {guest} {path} {mode} 0 0")
    return "\n".join(lines) + "\n"


def _populate(root: Path, kernel: KernelBuild, busybox: Path, rootfs_dir: Path,
              extra: dict[str, Path]) -> None:
    """Lay out the guest's files under ``root``: busybox, /init, modules, programs, extras."""
    (root / "bin").mkdir(parents=True)
    shutil.copy2(busybox, root / "bin" / "busybox")
    shutil.copy2(rootfs_dir / "init", root / "init")
    (root / "init").chmod(0o755)
    if (kernel.modules / "lib").is_dir():
        shutil.copytree(kernel.modules / "lib", root / "lib", symlinks=True)
        for name in ("build", "source"):  # links into the host's build tree
            for link in (root / "lib" / "modules").glob(f"*/{name}"):
                link.unlink()
    compile_guest_programs(kernel.directory / "headers", kernel.selftests_src, root / "usr" / "bin",
                           rootfs_dir)
    for prog in guest_programs(rootfs_dir):
        for sub in sorted(d for d in prog.iterdir() if d.is_dir()):
            shutil.copytree(sub, root / "usr" / "share" / prog.name / sub.name)
    if (rootfs_dir / "bin").is_dir():
        shutil.copytree(rootfs_dir / "bin", root / "usr" / "bin", dirs_exist_ok=True)
        for script in (rootfs_dir / "bin").iterdir():  # executable however it was installed
            (root / "usr" / "bin" / script.name).chmod(0o755)
    for guest_path, host_path in extra.items():
        dest = root / guest_path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(host_path, dest)


def build_initramfs(kernel: KernelBuild, rootfs_dir: Path = ROOTFS_DIR,
                    extra: dict[str, Path] | None = None) -> Initramfs:
    """Build (or reuse from cache) the initramfs for ``kernel``.

    Args:
        kernel: supplies the modules, the UAPI headers and gen_init_cpio.
        rootfs_dir: holds ``init`` and the guest program directories.
        extra: additional files, guest path → host path (used by bench/).

    Raises:
        EnvironmentProblem: busybox is missing.
        BuildError: a guest program does not compile, or gen_init_cpio fails.
    """
    extra = extra or {}
    busybox = find_busybox()
    key = digest(_inputs(kernel, busybox, rootfs_dir, extra))[:16]
    final = cache_root() / "rootfs" / key
    if final.is_dir():
        problems = manifest_problems(final)
        if not problems:
            return Initramfs(final / "initramfs.cpio.gz", key)
        discard_corrupt(final, problems)
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=final.parent))
    try:
        root = work / "root"
        _populate(root, kernel, busybox, rootfs_dir, extra)
        (work / "spec").write_text(_spec(root))
        cpio = subprocess.run(
            [str(kernel.gen_init_cpio), str(work / "spec")], capture_output=True, check=False
        )
        if cpio.returncode != 0:
            raise BuildError(f"gen_init_cpio failed: {cpio.stderr.decode(errors='replace')[:500]}")
        out = work / "out"
        out.mkdir()
        with gzip.GzipFile(out / "initramfs.cpio.gz", "wb", mtime=0) as gz:
            gz.write(cpio.stdout)
        write_manifest(out)
        publish_dir(out, final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Initramfs(final / "initramfs.cpio.gz", key)

"""The wheels an SSH host installs to run ``cma-harness cell``: this harness and what it imports.

A host runs cells only, so its venv needs the harness wheel and the pure-Python
packages ``cell`` imports (:data:`CELL_RUNTIME`, at the versions installed
here), never fabric or a compiler: every wheel is ``py3-none-any``, so any
host with Python >= 3.11 takes them with ``pip install --no-index --no-deps``,
without reaching PyPI.

The harness wheel is built from the checkout (``pip wheel --no-deps``) and
cached by a digest of the package's files; an installed harness (not a
checkout) is given its wheel with ``$CMA_HARNESS_WHEEL``.  The runtime
wheels are fetched once with ``pip download`` into the cache.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from harness import paths
from harness.errors import EnvironmentProblem

# What ``cma-harness cell`` imports, with everything those need (checked against
# the installed packages' requirements by tests/test_hosts.py).
CELL_RUNTIME = ("pexpect", "ptyprocess", "junitparser", "rich", "markdown-it-py", "mdurl", "pygments")
WHEEL_ENV = "CMA_HARNESS_WHEEL"
_SOURCES = ("harness", "boards", "kernel-patches", "rootfs", "scripts/install-deps.sh", "pyproject.toml")


@dataclass(frozen=True)
class Wheelhouse:
    """The wheels a host installs, and the key of their venv.

    Attributes:
        harness: the harness wheel file.
        runtime: the runtime wheel files (:data:`CELL_RUNTIME`).
        key: 16 hex digits naming this exact set (the host's venv is ``venvs/<key>``).
    """

    harness: Path
    runtime: tuple[Path, ...]

    @property
    def files(self) -> tuple[Path, ...]:
        """Every wheel, the harness's first."""
        return (self.harness, *self.runtime)

    @property
    def key(self) -> str:
        """Digest of the harness wheel's content and the runtime wheels' names (with their versions)."""
        digest = hashlib.sha256(hashlib.sha256(self.harness.read_bytes()).digest())
        for wheel in self.runtime:
            digest.update(wheel.name.encode())
        return digest.hexdigest()[:16]


def _pip(args: list[str], what: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = " ".join((proc.stderr or proc.stdout).strip().splitlines()[-2:])
        raise EnvironmentProblem(f"{what} failed (pip exit {proc.returncode}): {tail}")


def source_digest(root: Path) -> str:
    """SHA-256 (hex, 16 digits) over the checkout's packaged files (paths and contents)."""
    digest = hashlib.sha256()
    for top in _SOURCES:
        base = root / top
        files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file()
                                                     and "__pycache__" not in p.parts)
        for f in files:
            digest.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def harness_wheel(cache: Path) -> Path:
    """The harness wheel: ``$CMA_HARNESS_WHEEL``, else built from the checkout into ``cache``.

    Raises:
        EnvironmentProblem: not a checkout and no ``$CMA_HARNESS_WHEEL``; the build failed.
    """
    given = os.environ.get(WHEEL_ENV)
    if given:
        if not Path(given).is_file():
            raise EnvironmentProblem(f"${WHEEL_ENV} {given}: no such file")
        return Path(given)
    if not paths.is_checkout():
        raise EnvironmentProblem(f"this cma-harness is installed, not a checkout: set ${WHEEL_ENV} to the "
                                 "wheel it was installed from, for the SSH hosts")
    root = paths.PACKAGE_DIR.parent
    out = cache / "wheelhouse" / f"harness-{source_digest(root)}"
    wheels = sorted(out.glob("cma_harness-*.whl"))
    if not wheels:
        part = out.with_name(out.name + ".part")
        _pip(["wheel", "-q", "--no-deps", "--wheel-dir", str(part), str(root)], "building the harness wheel")
        part.rename(out)
        wheels = sorted(out.glob("cma_harness-*.whl"))
    return wheels[0]


def runtime_wheels(cache: Path) -> tuple[Path, ...]:
    """The :data:`CELL_RUNTIME` wheels at the versions installed here, fetched once into ``cache``.

    Raises:
        EnvironmentProblem: a package is not installed here, or ``pip download`` failed.
    """
    pins = []
    for name in CELL_RUNTIME:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError as exc:
            raise EnvironmentProblem(f"{name} is not installed here: reinstall cma-harness") from exc
    out = cache / "wheelhouse" / "runtime"
    def present() -> dict[str, Path]:
        found = {}
        for pin in pins:
            name, version = pin.split("==")
            stem = f"{name.replace('-', '_')}-{version}-"
            match = [w for w in out.glob("*.whl") if w.name.lower().startswith(stem.lower())]
            if match:
                found[pin] = match[0]
        return found
    if len(present()) < len(pins):
        missing = [p for p in pins if p not in present()]
        _pip(["download", "-q", "--no-deps", "--only-binary=:all:", "--dest", str(out), *missing],
             "fetching the host runtime wheels")
    wheels = present()
    if len(wheels) < len(pins):
        raise EnvironmentProblem(f"pip download gave no wheel for {', '.join(set(pins) - set(wheels))}")
    return tuple(wheels[p] for p in pins)


def wheelhouse(cache: Path) -> Wheelhouse:
    """The harness wheel and its runtime wheels (see the module docstring).

    Raises:
        EnvironmentProblem: see :func:`harness_wheel` and :func:`runtime_wheels`.
    """
    return Wheelhouse(harness_wheel(cache), runtime_wheels(cache))

"""Where the harness's own data lives: the one place that decides it.

The data is the boards (``boards/*.toml``), the kernel series, patches and Kconfig
fragments (``kernel-patches/``), the guest's sources (``rootfs/``) and the
install script (``scripts/install-deps.sh``).  The checkout keeps them at its top,
beside the ``harness`` package; a wheel carries them inside the package as
``harness/data/`` (``pyproject.toml`` force-includes them there).  The packaged
default matrix is ``harness/matrices/default.toml`` in both.

A user's own boards, matrices, series and patches are given by path on the
command line and never need to be in either place.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from harness.errors import EnvironmentProblem

PACKAGE_DIR = Path(__file__).resolve().parent


def _data_root() -> Path:
    """The directory holding ``boards/``, ``kernel-patches/``, ``rootfs/`` and ``scripts/``.

    ``harness/data`` in an installed wheel, else the checkout's top (an editable
    install or a source tree on ``sys.path``).

    Raises:
        EnvironmentProblem: neither exists (a broken install).
    """
    for root in (PACKAGE_DIR / "data", PACKAGE_DIR.parent):
        if (root / "boards").is_dir() and (root / "kernel-patches").is_dir():
            return root
    raise EnvironmentProblem(f"the harness's data (boards/, kernel-patches/) is missing next to "
                             f"{PACKAGE_DIR}: reinstall cma-harness")


DATA_ROOT = _data_root()
BOARDS_DIR = DATA_ROOT / "boards"
PATCHES_DIR = DATA_ROOT / "kernel-patches"
FRAGMENTS_DIR = PATCHES_DIR / "fragments"
ROOTFS_DIR = DATA_ROOT / "rootfs"
INSTALL_DEPS = DATA_ROOT / "scripts" / "install-deps.sh"
DEFAULT_MATRIX = PACKAGE_DIR / "matrices" / "default.toml"


def is_checkout() -> bool:
    """True when running from a source checkout (editable), False from an installed wheel."""
    return DATA_ROOT == PACKAGE_DIR.parent


def harness_version() -> str:
    """The installed distribution's version, e.g. ``0.1.0`` (``unknown`` if not installed)."""
    try:
        return metadata.version("cma-harness")
    except metadata.PackageNotFoundError:
        return "unknown"

"""Debian's newest kernel source from unstable, fetched on demand into the cache.

``--kernel-src /usr/src/linux-source-X.Y.tar.xz`` for a version Debian 12 does
not carry (e.g. unstable's 7.2) is not installed: apt runs as this user with a
private state directory and a private sources list naming only unstable
(``apt-get -o Dir::State=... -o Dir::Etc::SourceParts=...``), so the machine's
apt configuration, package lists and installed packages stay as they were.
``apt-get download`` fetches the ``linux-source-X.Y`` .deb and its tarball is
taken out of the package's data archive (``dpkg-deb --fsys-tarfile``) into
``<cache>/sources/linux-source-X.Y.tar.xz``, once per machine.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from harness import paths
from harness.cache import cache_root
from harness.errors import EnvironmentProblem, InputError

DEFAULT_MIRROR = "http://deb.debian.org/debian"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


def cached_tarball(version: str) -> Path:
    """Where unstable's ``linux-source-<version>`` tarball is kept: ``<cache>/sources/``."""
    return cache_root() / "sources" / f"linux-source-{version}.tar.xz"


def _mirror() -> str:
    """The Debian mirror this machine installs bookworm from (``install-deps.sh --mirror``)."""
    found = subprocess.run(["bash", str(paths.INSTALL_DEPS), "--mirror", "bookworm"],
                           capture_output=True, text=True, check=False).stdout.strip()
    return found or DEFAULT_MIRROR


def _apt(state: Path, *args: str) -> list[str]:
    """An ``apt-get`` command line that reads and writes only under ``state`` (an empty dpkg status)."""
    return ["apt-get", "-q", "-o", f"Dir::State={state / 'state'}", "-o", f"Dir::Cache={state / 'cache'}",
            "-o", "Dir::Etc::SourceList=/dev/null", "-o", f"Dir::Etc::SourceParts={state / 'sources'}",
            "-o", f"Dir::State::status={state / 'status'}", "-o", "Debug::NoLocking=1", *args]


def _private_apt(work: Path) -> Path:
    """A private apt directory under ``work`` whose only source is unstable's main; updated.

    Raises:
        EnvironmentProblem: unstable's package index cannot be fetched.
    """
    state = work / "apt"
    for sub in ("state/lists/partial", "cache/archives/partial", "sources"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    (state / "status").write_text("")  # no installed packages: only unstable's are seen
    (state / "sources" / "unstable.sources").write_text(
        f"Types: deb\nURIs: {_mirror()}\nSuites: unstable\nComponents: main\nSigned-By: {KEYRING}\n")
    update = subprocess.run(_apt(state, "update"), capture_output=True, text=True, check=False)
    if update.returncode != 0:
        lines = (update.stderr or update.stdout).strip().splitlines() or ["no output"]
        raise EnvironmentProblem(f"cannot read Debian unstable's package index: {lines[-1]}")
    return state


def _download(state: Path, version: str, work: Path) -> Path:
    """``apt-get download linux-source-<version>`` into ``work``; the .deb's path.

    Raises:
        InputError: unstable has no such package (the message names the versions it has).
    """
    package = f"linux-source-{version}"
    got = subprocess.run(_apt(state, "download", package), cwd=work, capture_output=True, text=True,
                         check=False)
    debs = sorted(work.glob(f"{package}_*.deb"))
    if got.returncode == 0 and debs:
        return debs[0]
    search = subprocess.run(["apt-cache", *_apt(state)[1:], "search", "--names-only", "^linux-source-[0-9]"],
                            capture_output=True, text=True, check=False).stdout
    have = sorted({line.split()[0] for line in search.splitlines() if line.strip()})
    raise InputError(f"Debian unstable has no {package} (it has {', '.join(have) or 'none'}); "
                     "pass one of those or a kernel tree")


def _extract_tarball(deb: Path, version: str, dest: Path) -> None:
    """Copy ``./usr/src/linux-source-<version>.tar.xz`` out of ``deb``'s data archive to ``dest``.

    Raises:
        EnvironmentProblem: dpkg-deb fails or the package holds no such file.
    """
    member = f"./usr/src/linux-source-{version}.tar.xz"
    with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        found = False
        with tarfile.open(fileobj=proc.stdout, mode="r|") as archive:
            for info in archive:
                if info.name == member and info.isfile():
                    source = archive.extractfile(info)
                    assert source is not None
                    with dest.open("wb") as out:
                        shutil.copyfileobj(source, out)
                    found = True
                    break
        proc.stdout.close()
    if not found:
        raise EnvironmentProblem(f"{deb.name} holds no {member}")


def fetch_unstable_source(version: str, progress: Callable[[str], None] | None = None) -> Path:
    """Unstable's ``linux-source-<version>`` tarball, fetched into the cache if not there yet.

    ``version`` is ``VERSION.PATCHLEVEL`` (e.g. ``"7.2"``); ``progress`` is told
    one line before the download (about 160 MB).

    Returns:
        The cached tarball, ``<cache>/sources/linux-source-<version>.tar.xz``.

    Raises:
        InputError: unstable has no such package.
        EnvironmentProblem: apt, the network or dpkg-deb failed.
    """
    final = cached_tarball(version)
    if final.is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".linux-source-{version}-", dir=final.parent) as tmp:
        work = Path(tmp)
        state = _private_apt(work)
        if progress is not None:
            progress(f"fetching Debian unstable's linux-source-{version} (private apt state; "
                     "the machine's apt sources are not changed)")
        deb = _download(state, version, work)
        part = work / final.name
        _extract_tarball(deb, version, part)
        part.rename(final)
    return final

"""The hosts file: the SSH machines a run may spread its cells over, as data (TOML).

One table per host::

    [hosts.lab1]
    address = "10.0.0.2"            # name or IP address (required)
    port = 22                       # default 22
    user = "ci"                     # default: this user's login name
    key = "~/.ssh/id_ed25519"       # private key file (required: key authentication only)
    known_hosts = "~/.ssh/known_hosts"  # pins the host's key (default shown)
    slots = 2                       # cells at once on it (default 1)
    workdir = "/var/tmp/cma-harness"    # its venv, artifact store and jobs (default shown)
    python = "python3"              # a Python >= 3.11 there (default shown)

Relative paths resolve beside the file; ``~`` is this user's home.  There are
no passwords: a ``password`` key (or any key not above) is refused.  The same
tables under ``[hosts]`` in the user config (:func:`user_config_path`) are
used when ``run`` gets no ``--hosts``.
"""

from __future__ import annotations

import getpass
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from harness.boards import read_input_text
from harness.errors import InputError

DEFAULT_WORKDIR = "/var/tmp/cma-harness"
_KEYS = {"address", "port", "user", "key", "known_hosts", "slots", "workdir", "python"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_ADDRESS = re.compile(r"[A-Za-z0-9_.:-]+")


@dataclass(frozen=True)
class Host:
    """One SSH host of a run.

    Attributes:
        name: its table name in the hosts file (in results as the ``host`` property).
        address: host name or IP address.
        port: SSH port.
        user: login name.
        key: private key file on this machine.
        known_hosts: known_hosts file on this machine pinning the host's key.
        slots: cells it runs at once (>= 1).
        workdir: absolute POSIX path on the host: venvs, artifact store, jobs.
        python: the Python (>= 3.11) that makes the host's venv.
    """

    name: str
    address: str
    port: int
    user: str
    key: Path
    known_hosts: Path
    slots: int = 1
    workdir: str = DEFAULT_WORKDIR
    python: str = "python3"

    @property
    def where(self) -> str:
        """``user@address:port``, for messages."""
        return f"{self.user}@{self.address}:{self.port}"


def user_config_path() -> Path:
    """``$CMA_HARNESS_CONFIG``, else ``$XDG_CONFIG_HOME/cma-harness/config.toml`` (``~/.config``)."""
    env = os.environ.get("CMA_HARNESS_CONFIG")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "cma-harness" / "config.toml"


def _path(value: object, where: str, base: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise InputError(f"{where}: must be a non-empty string (a file path)")
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _int(table: dict[str, Any], key: str, default: int, low: int, high: int, where: str) -> int:
    value = table.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InputError(f"{where}: '{key}' must be an integer from {low} to {high}")
    return value


def _text(table: dict[str, Any], key: str, default: str | None, where: str) -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or not value:
        raise InputError(f"{where}: '{key}' must be a non-empty string" if key in table
                         else f"{where}: '{key}' is required")
    return value


def parse_host(name: str, table: object, where: str, base: Path) -> Host:
    """One ``[hosts.NAME]`` table; relative key and known_hosts paths resolve in ``base``.

    Raises:
        InputError: an unknown key (``password`` among them), a missing address or
            key, a value of the wrong type or out of range, a relative workdir.
    """
    where = f"{where}: [hosts.{name}]"
    if not _NAME.fullmatch(name):
        raise InputError(f"{where}: a host name is letters, digits, '_', '.' and '-'")
    if not isinstance(table, dict):
        raise InputError(f"{where}: must be a table")
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        extra = " (key authentication only: no passwords in files)" if "password" in unknown else ""
        raise InputError(f"{where}: unknown key '{unknown[0]}'{extra}; known: {', '.join(sorted(_KEYS))}")
    address = _text(table, "address", None, where)
    if not _ADDRESS.fullmatch(address):
        raise InputError(f"{where}: 'address' {address!r} is not a host name or IP address")
    if "key" not in table:
        raise InputError(f"{where}: 'key' is required (a private key file: key authentication only)")
    workdir = _text(table, "workdir", DEFAULT_WORKDIR, where)
    if not PurePosixPath(workdir).is_absolute():
        raise InputError(f"{where}: 'workdir' must be an absolute path on the host")
    return Host(name, address, _int(table, "port", 22, 1, 65535, where),
                _text(table, "user", getpass.getuser(), where), _path(table["key"], f"{where} key", base),
                _path(table.get("known_hosts", "~/.ssh/known_hosts"), f"{where} known_hosts", base),
                _int(table, "slots", 1, 1, 256, where), workdir, _text(table, "python", "python3", where))


def parse_hosts(data: dict[str, Any], where: str, base: Path) -> list[Host]:
    """The hosts of a parsed hosts file (or user config's ``[hosts]``), in file order.

    Raises:
        InputError: no ``[hosts]`` table, or see :func:`parse_host`.
    """
    tables = data.get("hosts")
    if not isinstance(tables, dict) or not tables:
        raise InputError(f"{where}: no [hosts.NAME] table")
    return [parse_host(name, table, where, base) for name, table in tables.items()]


def load_hosts(path: Path) -> list[Host]:
    """Read the hosts file ``path`` (see the module docstring).

    Raises:
        InputError: unreadable, not TOML, or see :func:`parse_hosts`.
    """
    try:
        data = tomllib.loads(read_input_text(path, "hosts file"))
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: {exc}") from exc
    return parse_hosts(data, str(path), path.parent)


def configured_hosts(path: Path | None) -> list[Host]:
    """The hosts of ``--hosts path``, else of the user config's ``[hosts]``, else none.

    Raises:
        InputError: see :func:`load_hosts`.
    """
    if path is not None:
        return load_hosts(path)
    config = user_config_path()
    if not config.is_file():
        return []
    try:
        data = tomllib.loads(read_input_text(config, "user config"))
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{config}: {exc}") from exc
    return parse_hosts(data, str(config), config.parent) if "hosts" in data else []


def check_host_files(hosts: tuple[Host, ...] | list[Host]) -> None:
    """Refuse, before anything is built, a host whose key or known_hosts file cannot be read.

    Raises:
        InputError: ``host NAME: key file PATH ...`` or ``... known_hosts PATH ...``.
    """
    for host in hosts:
        for what, path in (("key file", host.key), ("known_hosts", host.known_hosts)):
            if not path.is_file() or not os.access(path, os.R_OK):
                raise InputError(f"host {host.name}: {what} {path} is not a readable file")

"""One SSH host of a run, through fabric: pinned host keys, preparing it, running a cell job there.

:func:`connect` opens a :class:`fabric.Connection` that trusts only the host key
pinned in the host's known_hosts file: fabric sets paramiko's ``AutoAddPolicy``
and loads no known_hosts, so both are replaced (an unknown or changed key is a
:class:`HostKeyRejected` naming the host and the key's SHA-256 fingerprint).
Key authentication only: no agent, no password, no ``~/.ssh`` keys but the one
the hosts file names.

:class:`RemoteHost` prepares a host once per run (:meth:`RemoteHost.prepare`:
Python >= 3.11, the harness wheel in ``<workdir>/venvs/<key>``, the remote
``cma-harness doctor --cells-only``, the boot files in the content-addressed
``<workdir>/store/<sha256>``) and runs a cell there (:meth:`RemoteHost.run_cell`:
``cma-harness cell JOB.json``; its console log and result JSON come back).
Every remote command is a list of words joined with :func:`shlex.join`:
nothing the user wrote reaches a remote shell unquoted.
"""

from __future__ import annotations

import io
import logging
import shlex
import socket
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from harness.cellresult import CellResult
from harness.errors import EnvironmentProblem, InputError
from harness.hosts import Host
from harness.job import Artifact, CellJob
from harness.wheelhouse import Wheelhouse

if TYPE_CHECKING:
    from fabric import Connection

CONNECT_TIMEOUT_S = 10
# The property of a remote cell's wall time on this machine, job sent to result back (s):
# its ``seconds`` (on the host) plus what SSH costs (bench/bench_remote.py).
REMOTE_SECONDS = "remote.seconds"
# A machine that vanishes (powered off, its network gone) sends no FIN or RST: SSH keepalives
# every KEEPALIVE_S put data on the wire, and TCP_USER_TIMEOUT drops the connection when
# none of it is acknowledged for DEAD_AFTER_S, so a cell there is lost within a minute, not
# after TCP's ~15 minutes of retransmissions (Linux: tcp(7) TCP_USER_TIMEOUT).
KEEPALIVE_S = 10
DEAD_AFTER_S = 45


class HostKeyRejected(EnvironmentProblem):
    """The host's key is not the one pinned in its known_hosts file (or none is pinned)."""


class HostUnusable(Exception):
    """The host cannot take cells: unreachable, no login, or not ready (``str`` says why)."""


class HostLost(Exception):
    """The host went away while a cell ran on it (``str`` says how)."""


def _fingerprint(key: Any) -> str:
    return f"{key.get_name()} {key.fingerprint}"


def _policy(host: Host) -> Any:
    import paramiko

    class Pinned(paramiko.MissingHostKeyPolicy):
        """Refuses every key not already in the loaded known_hosts (paramiko's RejectPolicy, saying why)."""

        def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
            raise HostKeyRejected(f"host {host.name} ({host.where}): its key {_fingerprint(key)} is not "
                                  f"pinned in {host.known_hosts}; refusing to connect")
    return Pinned()


def _quiet_paramiko() -> None:
    """paramiko logs a dropped connection with a traceback (its transport thread, level ERROR),
    which Python's last-resort handler would print on stderr: every fault here is reported
    by the harness itself, once, in one line."""
    log = logging.getLogger("paramiko")
    if not log.handlers:
        log.addHandler(logging.NullHandler())
        log.propagate = False


def connect(host: Host, timeout: float = CONNECT_TIMEOUT_S) -> Connection:
    """An open fabric connection to ``host`` with its key checked against ``host.known_hosts``.

    Raises:
        HostKeyRejected: the key is unknown, or differs from the pinned one.
        InputError: the known_hosts or key file cannot be read.
        HostUnusable: the host cannot be reached or refuses the key login.
    """
    from fabric import Config, Connection

    _quiet_paramiko()
    if not host.key.is_file():
        raise InputError(f"host {host.name}: key file {host.key} does not exist")
    conn = Connection(host.address, user=host.user, port=host.port, connect_timeout=int(timeout),
                      config=Config(overrides={"load_ssh_configs": False}),
                      connect_kwargs={"key_filename": [str(host.key)], "look_for_keys": False,
                                      "allow_agent": False})
    conn.client.set_missing_host_key_policy(_policy(host))
    try:
        conn.client.load_host_keys(str(host.known_hosts))
    except OSError as exc:
        raise InputError(f"host {host.name}: cannot read known_hosts {host.known_hosts}: "
                         f"{exc.strerror or exc}") from exc
    try:
        _open(conn, host)
    except BaseException:
        conn.close()  # paramiko keeps the socket of a refused host key open
        raise
    conn.transport.set_keepalive(KEEPALIVE_S)
    sock = conn.transport.sock
    if hasattr(socket, "TCP_USER_TIMEOUT") and isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, DEAD_AFTER_S * 1000)
    return conn


def _open(conn: Connection, host: Host) -> None:
    """``conn.open()``, its failures as this module's exceptions (see :func:`connect`)."""
    import paramiko
    try:
        conn.open()
    except paramiko.BadHostKeyException as exc:
        raise HostKeyRejected(f"host {host.name} ({host.where}): its key {_fingerprint(exc.key)} differs "
                              f"from the one pinned in {host.known_hosts} "
                              f"({_fingerprint(exc.expected_key)}); refusing to connect") from exc
    except paramiko.AuthenticationException as exc:
        raise HostUnusable(f"{host.where} refused the key {host.key}: {exc}") from exc
    except (OSError, paramiko.SSHException, EOFError) as exc:
        raise HostUnusable(f"cannot reach {host.where}: {exc or type(exc).__name__}") from exc


def reachable(host: Host) -> bool:
    """Whether ``host`` still answers a login and runs ``true`` (a few seconds at most)."""
    try:
        with connect(host, timeout=5) as conn:
            return bool(conn.run("true", hide=True, warn=True, timeout=10).ok)
    except Exception:  # HostUnusable, OSError, EOFError, paramiko's and invoke's failures of a dying host
        return False


class RemoteHost:
    """A prepared SSH host: where its venv, store and this run's jobs are.

    Attributes:
        host: the hosts file's entry.
        run_key: names this run's job and output directories on the host.
    """

    def __init__(self, host: Host, run_key: str) -> None:
        self.host = host
        self.run_key = run_key
        self.work = PurePosixPath(host.workdir)
        self.venv = self.work / "venvs" / "unset"
        self.jobs = self.work / "runs" / run_key
        self._local = threading.local()

    def _conn(self) -> Connection:
        """This thread's connection (one per slot), opened on first use."""
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is None or not conn.is_connected:
            conn = connect(self.host)
            self._local.conn = conn
        return conn

    def sh(self, argv: Sequence[str], timeout: float | None = 120) -> Any:
        """Run ``argv`` (quoted word by word) on the host; the invoke Result (not raising on exit status)."""
        return self._conn().run(shlex.join(argv), hide=True, warn=True, in_stream=False, timeout=timeout)

    def _check(self, argv: Sequence[str], what: str, timeout: float | None = 300) -> str:
        res = self.sh(argv, timeout)
        if res.exited == -1:  # paramiko: the channel closed without an exit status
            raise HostUnusable(f"{what} on {self.host.name}: the SSH connection was lost")
        if not res.ok:
            said = " ".join((res.stderr or res.stdout).strip().splitlines()[-3:])
            raise HostUnusable(f"{what} failed on {self.host.name} (exit {res.exited}): {said}")
        return str(res.stdout)

    def put(self, data: bytes | Path, remote: PurePosixPath) -> None:
        """Copy a local file or bytes to ``remote`` (written as ``.part``, then renamed)."""
        part = f"{remote}.part"
        src: Any = io.BytesIO(data) if isinstance(data, bytes) else str(data)
        conn = self._conn()
        conn.put(src, part)
        conn.sftp().posix_rename(part, str(remote))

    def prepare(self, wheels: Wheelhouse, boards: dict[str, str], artifacts: Iterable[Artifact]) -> None:
        """Get the host ready for this run's cells (see the module docstring).

        ``boards``: board name -> board file text (for the remote doctor).

        Raises:
            HostKeyRejected: see :func:`connect`.
            HostUnusable: unreachable, Python too old, the install or doctor failed.
        """
        self._check_python()
        self._install(wheels)
        self._doctor(boards)
        self._push(artifacts)
        self._check(["mkdir", "-p", str(self.jobs)], "making the run's directory")

    def _check_python(self) -> None:
        code = "import sys; print('%d.%d' % sys.version_info[:2])"
        out = self._check([self.host.python, "-c", code], f"running {self.host.python}").strip()
        major, minor = (int(x) for x in out.split("."))
        if (major, minor) < (3, 11):
            raise HostUnusable(f"{self.host.name}: {self.host.python} is Python {out}; cells need >= 3.11")

    def _install(self, wheels: Wheelhouse) -> None:
        self.venv = self.work / "venvs" / wheels.key
        done = self.venv / ".complete"
        if self.sh(["test", "-e", str(done)]).ok:
            return
        store = self.work / "wheels"
        self._check(["mkdir", "-p", str(store)], "making the wheel directory")
        have = set(self._check(["ls", str(store)], "listing wheels").split())
        for wheel in wheels.files:
            if wheel.name not in have:
                self.put(wheel, store / wheel.name)
        self._check(["rm", "-rf", str(self.venv)], "removing a half-made venv")
        self._check([self.host.python, "-m", "venv", str(self.venv)], "making the venv")
        pip = [str(self.venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
        self._check([*pip, "install", "-q", "--no-index", "--no-deps",
                     *(str(store / w.name) for w in wheels.files)], "installing the harness wheel")
        self._check(["touch", str(done)], "marking the venv complete")

    def _doctor(self, boards: dict[str, str]) -> None:
        bdir = self.jobs / "boards"
        self._check(["mkdir", "-p", str(bdir)], "making the boards directory")
        for name, text in boards.items():
            self.put(text.encode(), bdir / f"{name}.toml")
        argv = [str(self.venv / "bin" / "cma-harness"), "doctor", "--cells-only", "--boards-dir", str(bdir)]
        for name in boards:
            argv += ["--board", name]
        res = self.sh(argv)
        if res.exited == -1:
            raise HostUnusable(f"the doctor on {self.host.name}: the SSH connection was lost")
        if not res.ok:
            said = "; ".join(line.removeprefix("cma-harness: error: ")
                             for line in str(res.stderr).strip().splitlines()[-5:])
            raise HostUnusable(f"{self.host.name} is not ready to boot: {said}")

    def _push(self, artifacts: Iterable[Artifact]) -> None:
        store = self.work / "store"
        self._check(["mkdir", "-p", str(store)], "making the artifact store")
        have = set(self._check(["ls", str(store)], "listing the store").split())
        for art in {a.sha256: a for a in artifacts}.values():
            if art.sha256 not in have:
                self.put(art.path, store / art.sha256)

    def remote_job(self, job: CellJob) -> CellJob:
        """``job`` with its boot files in the host's store (absolute paths there)."""
        def there(a: Artifact) -> Artifact:
            return Artifact(Path(str(self.work / "store" / a.sha256)), a.sha256)
        return replace(job, zimage=there(job.zimage), dtb=None if job.dtb is None else there(job.dtb),
                       initrd=there(job.initrd))

    def run_cell(self, job: CellJob, log: Path) -> CellResult:
        """Run ``job`` with ``cma-harness cell`` on the host; its log is copied to ``log``.

        The result comes back with its log at ``log``, ``extra["host"]`` the
        host's name and ``extra["remote.seconds"]`` the wall time here; xfail is
        applied there, as ``cell`` does.

        Raises:
            HostLost: the host stopped answering (the cell should run elsewhere).
            HostUnusable: ``cell`` failed on the host for a reason not of the
                guest (exit 2, e.g. a boot file that differs), or gave no result.
        """
        start = time.monotonic()
        slug = job.cell.slug
        out = self.jobs / slug
        jobfile = self.jobs / f"{slug}.job.json"
        try:
            self.put(self.remote_job(job).to_json().encode(), jobfile)
            # The pid file lets stop_cells() SIGTERM it; it goes when the cell ends.
            script = '"$@" </dev/null & echo $! >"$P"; wait $!; s=$?; rm -f "$P"; exit $s'
            # harness.cellcmd, not the cma-harness script: it imports what a cell needs, half the time.
            argv = ["env", f"P={self.jobs / (slug + '.pid')}", "sh", "-c", script, "sh",
                    str(self.venv / "bin" / "python"), "-m", "harness.cellcmd", "cell", str(jobfile),
                    "-o", str(out)]
            res = self._conn().run(shlex.join(argv), hide=True, warn=True, in_stream=False)
        except (OSError, EOFError) as exc:
            raise self._lost(exc) from exc
        except Exception as exc:  # paramiko.SSHException and invoke's failures of a dropped channel
            if type(exc).__module__.split(".")[0] not in ("paramiko", "invoke", "fabric"):
                raise
            raise self._lost(exc) from exc
        if res.exited not in (0, 1):
            if res.exited == 2:
                said = " ".join(str(res.stderr).strip().splitlines()[-2:])
                raise HostUnusable(f"'cma-harness cell' on {self.host.name} refused the job: {said}")
            why = ("the SSH connection dropped (no exit status)" if res.exited == -1
                   else f"'cma-harness cell' ended with status {res.exited}")
            raise self._lost(RuntimeError(why))
        result = self._fetch(out, slug, log)
        result.extra[REMOTE_SECONDS] = f"{time.monotonic() - start:.3f}"
        return result

    def _fetch(self, out: PurePosixPath, slug: str, log: Path) -> CellResult:
        try:
            self._conn().get(str(out / f"{slug}.log"), str(log))
            buf = io.BytesIO()
            self._conn().get(str(out / f"{slug}.result.json"), buf)
        except (OSError, EOFError) as exc:
            raise self._lost(exc) from exc
        tmp = log.with_name(f"{slug}.remote-result.json")
        tmp.write_bytes(buf.getvalue())
        try:
            result = CellResult.load(tmp)
        finally:
            tmp.unlink(missing_ok=True)
        result.log = log
        result.extra = {"host": self.host.name, **result.extra}
        return result

    def _lost(self, exc: BaseException) -> Exception:
        """HostLost if the host no longer answers, else HostUnusable for this cell only."""
        self._local.conn = None
        why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if not reachable(self.host):
            return HostLost(f"host {self.host.name} ({self.host.where}) was lost mid-cell ({why})")
        return HostUnusable(f"the cell's SSH session on {self.host.name} broke ({why})")

    def stop_cells(self) -> None:
        """SIGTERM every ``cma-harness cell`` of this run on the host (each kills its QEMU). Never raises."""
        script = 'for f in "$1"/*.pid; do [ -e "$f" ] && kill -TERM "$(cat "$f")" 2>/dev/null; done; true'
        try:
            with connect(self.host, timeout=5) as conn:
                conn.run(shlex.join(["sh", "-c", script, "sh", str(self.jobs)]), hide=True, warn=True,
                         timeout=10)
        except Exception:  # the host may be gone: nothing more to stop there
            pass

"""Real SSH hosts on this one machine, for integration tests.

:func:`ssh_hosts` starts one OpenSSH server per host.  Each host preferably lives in its own network
namespace (``ip netns``), reached over a veth pair at a private /30 and listening on port 22, so that
everything a session starts (QEMU, say) belongs to the host and :meth:`TestHost.kill` can take the whole
host down at once, as a crashed machine would go.  Without CAP_NET_ADMIN the hosts fall back to loopback
mode: one sshd per host on 127.0.0.1 at a free port, a host's processes being its sshd and all descendants.

Everything is written below the caller's ``root``: keys (a 0700 directory), each host's sshd
configuration, its sshd log and an empty work directory.  sshd's ``StrictModes`` refuses an
``authorized_keys`` file below a group- or world-writable directory (such as /tmp), so ``root`` must be
below one that is not, e.g. ``~/.cache/cma-harness``; :func:`ssh_hosts` checks that first.

Usage::

    with ssh_hosts(2, Path.home() / ".cache/cma-harness/hosts-test") as hosts:
        hosts_file = write_hosts_toml(hosts, tmp_path / "hosts.toml")
        ...
        hosts[0].kill()
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

SSHD = "/usr/sbin/sshd"
PRIVSEP_DIR = Path("/run/sshd")  # sshd's privilege separation directory: must exist, root's, 0755
NETNS_PREFIX = "cmah-"
START_TIMEOUT = 10.0  # seconds for every sshd to accept TCP connections
KILL_TIMEOUT = 5.0  # seconds for a host's processes to be gone after SIGKILL
_IP_TIMEOUT = 30.0  # seconds for one `ip` or `ssh-keygen` command
_SUBNET = "10.231.{k}.0/24"  # the hosts' /30s are carved from one free /24 of these
_MAX_HOSTS = 64  # /30s in a /24
_LOG_TAIL = 40  # lines of an sshd log quoted in errors


@dataclass
class TestHost:
    """One SSH host: an sshd (in its own network namespace unless ``netns`` is None) and its files.

    ``address``:``port`` is where its sshd listens; ``user`` logs in with the private key ``key``;
    ``known_hosts`` pins exactly this host's key (``host_key_pub``) in OpenSSH known_hosts format;
    ``workdir`` is an empty directory for the host's work; ``log`` is sshd's log (``-E``).
    """

    __test__: ClassVar[bool] = False  # not a test class, though pytest would collect it by its name

    name: str
    netns: str | None
    address: str
    port: int
    user: str
    key: Path
    known_hosts: Path
    host_key_pub: Path
    workdir: Path
    sshd: subprocess.Popen[bytes]
    log: Path

    def vanish(self) -> None:
        """The machine drops off the network without a word: the namespace's end of its link goes
        down, so nothing more (no FIN, no RST) reaches or leaves it; its processes keep running.

        Raises:
            RuntimeError: a loopback host (no link of its own to cut).
        """
        if self.netns is None:
            raise RuntimeError(f"{self.name}: a loopback host cannot vanish from the network")
        tag, index = self.netns.split("-")[1], self.netns.rsplit("-", 1)[1]
        _run(["ip", "netns", "exec", self.netns, "ip", "link", "set", f"cmah{tag}n{index}", "down"])

    def pids(self) -> list[int]:
        """The host's live processes (zombies left out), the ones :meth:`kill` kills.

        In a network namespace: every process in it (``ip netns pids``): the sshd listener, its
        per-connection sshds and all that their sessions started.  In loopback mode: the sshd listener and
        all its descendants, plus any process whose ``SSH_CONNECTION`` names this host's port (a session's
        program that daemonized out of the tree).
        """
        if self.netns is not None:
            return sorted(_netns_pids(self.netns))
        return sorted(self._loopback_members(set()))

    def commands(self) -> list[str]:
        """The command lines (``/proc/<pid>/cmdline``, arguments joined by spaces) of :meth:`pids`."""
        commands = []
        for pid in self.pids():
            try:
                raw = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            commands.append(raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace"))
        return commands

    def kill(self) -> None:
        """SIGKILL every process of the host (:meth:`pids`), as if the machine died; idempotent.

        Afterwards nothing listens at ``address``:``port`` (new connections are refused) and open
        connections are cut.  Raises RuntimeError if processes remain after ``KILL_TIMEOUT`` seconds.
        """
        if self.netns is not None:
            # Membership is by namespace, so a process forked meanwhile is found on the next round.
            deadline = time.monotonic() + KILL_TIMEOUT
            while pids := _netns_pids(self.netns):
                for pid in pids:
                    _signal(pid, signal.SIGKILL)
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name}: processes {sorted(pids)} survive SIGKILL")
                time.sleep(0.005)
        else:
            # Membership is by ancestry, which a process loses when its parent dies: stop the whole tree
            # first (a stopped process cannot fork), then kill it.
            frozen: set[int] = set()
            while new := self._loopback_members(frozen) - frozen:
                for pid in new:
                    _signal(pid, signal.SIGSTOP)
                frozen |= new
            for pid in frozen:
                _signal(pid, signal.SIGKILL)
            deadline = time.monotonic() + KILL_TIMEOUT
            while alive := {pid for pid in frozen if _alive(pid)} - {self.sshd.pid}:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name}: processes {sorted(alive)} survive SIGKILL")
                time.sleep(0.005)
        if self.sshd.poll() is None:
            self.sshd.kill()
        self.sshd.wait(KILL_TIMEOUT)

    def _loopback_members(self, known: set[int]) -> set[int]:
        """Loopback mode: the live sshd listener, ``known``'s live pids, all their descendants, and every
        process whose ``SSH_CONNECTION`` ends in this host's address and port."""
        table = _process_table()
        roots = {pid for pid in known if pid in table}
        if self.sshd.poll() is None and self.sshd.pid in table:
            roots.add(self.sshd.pid)
        suffix = f" {self.address} {self.port}".encode()
        for pid in table:
            if pid not in roots and _ssh_connection(pid).endswith(suffix):
                roots.add(pid)
        children: dict[int, list[int]] = {}
        for pid, ppid in table.items():
            children.setdefault(ppid, []).append(pid)
        members, todo = set(), list(roots)
        while todo:
            pid = todo.pop()
            if pid not in members:
                members.add(pid)
                todo.extend(children.get(pid, []))
        return members


def netns_available() -> bool:
    """Whether this process can create network namespaces (CAP_NET_ADMIN and ``ip``): tries one."""
    if shutil.which("ip") is None:
        return False
    name = f"{NETNS_PREFIX}probe-{secrets.token_hex(3)}"
    if _run(["ip", "netns", "add", name], check=False).returncode != 0:
        return False
    _run(["ip", "netns", "del", name], check=False)
    return True


@contextmanager
def ssh_hosts(n: int, root: Path, *, netns: bool | None = None,
              keep: bool = False) -> Iterator[list[TestHost]]:
    """``n`` running SSH hosts named host1..host<n>, set up below ``root`` (created 0755 if missing).

    ``netns``: None tries network namespaces and falls back to loopback mode, True requires them,
    False uses loopback mode.  On exit every host's processes are killed, the namespaces and veth devices
    deleted and (unless ``keep``) this run's directory below ``root`` removed: nothing is left running.
    Raises RuntimeError when an sshd does not accept connections within ``START_TIMEOUT`` seconds (with
    its log's tail), ValueError when ``root`` is somewhere sshd's StrictModes would refuse.
    """
    if not 1 <= n <= _MAX_HOSTS:
        raise ValueError(f"ssh_hosts: n must be 1..{_MAX_HOSTS}, not {n}")
    if not os.access(SSHD, os.X_OK):
        raise RuntimeError(f"ssh_hosts: no {SSHD} (install openssh-server: scripts/install-deps.sh)")
    root = root.absolute()
    _makedirs(root)
    _check_strict_modes(root)
    try:
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    except PermissionError:
        pass  # not root: sshd does not need it then
    user = pwd.getpwuid(os.geteuid()).pw_name
    tag = secrets.token_hex(3)
    run = root / f"run-{tag}"
    run.mkdir(mode=0o755)
    namespaces: list[str] = []
    links: list[str] = []
    hosts: list[TestHost] = []
    try:
        run.chmod(0o755)
        keys = run / "keys"
        keys.mkdir(mode=0o700)
        keys.chmod(0o700)
        client_key = keys / "client_key"
        _keygen(client_key, "cma-harness test client")
        authorized_keys = keys / "authorized_keys"
        authorized_keys.write_bytes((keys / "client_key.pub").read_bytes())
        authorized_keys.chmod(0o600)
        subnet = None
        if netns is not False and _try_netns_add(f"{NETNS_PREFIX}{tag}-1", required=netns is True):
            namespaces.append(f"{NETNS_PREFIX}{tag}-1")
            subnet = _free_subnet()
        for i in range(1, n + 1):
            name = f"host{i}"
            host_dir = run / name
            host_dir.mkdir(mode=0o755)
            workdir = host_dir / "work"
            workdir.mkdir(mode=0o755)
            host_key = keys / f"{name}_host_key"
            _keygen(host_key, f"cma-harness test {name}")
            ns: str | None = None
            if subnet is not None:
                ns = f"{NETNS_PREFIX}{tag}-{i}"
                if i > 1:
                    _run(["ip", "netns", "add", ns])
                    namespaces.append(ns)
                address = _setup_veth(ns, f"cmah{tag}h{i}", f"cmah{tag}n{i}", subnet, i - 1)
                links.append(f"cmah{tag}h{i}")
                port = 22
            else:
                address, port = "127.0.0.1", _free_port()
            config, log = host_dir / "sshd_config", host_dir / "sshd.log"
            _write_sshd_config(config, address, port, host_key, authorized_keys, log)
            hosts.append(TestHost(
                name=name, netns=ns, address=address, port=port, user=user, key=client_key,
                known_hosts=host_dir / "known_hosts", host_key_pub=Path(f"{host_key}.pub"), workdir=workdir,
                sshd=_start_sshd(ns, config, log), log=log))
            hosts[-1].known_hosts.write_text(_known_hosts_line(hosts[-1], hosts[-1].host_key_pub))
        _wait_ready(hosts, authorized_keys)
        yield hosts
    finally:
        errors = []
        for host in hosts:
            try:
                host.kill()
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                errors.append(str(e))
        for link in links:
            _run(["ip", "link", "del", link], check=False)  # deletes its peer in the namespace too
        for ns in namespaces:
            if _run(["ip", "netns", "del", ns], check=False).returncode != 0:
                errors.append(f"cannot delete network namespace {ns}")
        if not keep:
            shutil.rmtree(run, ignore_errors=True)
        if errors:
            raise RuntimeError("ssh_hosts cleanup: " + "; ".join(errors))


def write_hosts_toml(hosts: list[TestHost], path: Path, slots: int = 1,
                     extra: dict[str, object] | None = None) -> Path:
    """Write ``hosts`` as a TOML hosts file (a ``[hosts.NAME]`` table each) to ``path``; return ``path``.

    ``slots`` is each host's number of concurrent jobs; ``extra`` adds keys (str, int, float, bool, Path,
    lists and dicts of these) to every table, replacing a standard key of the same name.
    """
    lines = []
    for host in hosts:
        table: dict[str, object] = {
            "address": host.address, "port": host.port, "user": host.user, "key": host.key,
            "known_hosts": host.known_hosts, "slots": slots, "workdir": host.workdir,
        }
        table.update(extra or {})
        lines.append(f"[hosts.{_toml_key(host.name)}]")
        lines.extend(f"{_toml_key(key)} = {_toml_value(value)}" for key, value in table.items())
        lines.append("")
    text = "\n".join(lines)
    tomllib.loads(text)  # a formatting mistake here fails now, not in the harness
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def wrong_known_hosts(host: TestHost, path: Path) -> Path:
    """Write to ``path`` a known_hosts file for ``host``'s address and port but a freshly generated,
    different ed25519 key (a host that must be refused); return ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        key = Path(tmp) / "wrong_key"
        _keygen(key, "cma-harness wrong host key")
        path.write_text(_known_hosts_line(host, Path(f"{key}.pub")))
    return path


# -- helpers ---------------------------------------------------------------------------------------------

def _run(args: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a short command (``_IP_TIMEOUT`` seconds at most); RuntimeError with its stderr if ``check``."""
    done = subprocess.run(args, capture_output=True, text=True, timeout=_IP_TIMEOUT, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: exit {done.returncode}: {done.stderr.strip()}")
    return done


def sshd_root() -> Path:
    """A new directory for :func:`ssh_hosts` that sshd's StrictModes accepts.

    Below the harness cache (``hosts-test/``) unless the cache is somewhere StrictModes
    refuses (e.g. ``CMA_HARNESS_CACHE`` under /tmp), then below ``~/.cache/cma-harness-tests``.
    """
    from harness.cache import cache_root

    for base in (cache_root() / "hosts-test", Path.home() / ".cache" / "cma-harness-tests"):
        _makedirs(base)
        base.chmod(0o700)
        try:
            _check_strict_modes(base)
        except ValueError:
            continue
        return Path(tempfile.mkdtemp(dir=base))
    raise ValueError("ssh_hosts: no directory sshd's StrictModes accepts (see _check_strict_modes)")


def _makedirs(path: Path) -> None:
    """Create ``path`` and missing parents, mode 0755 (never group- or world-writable)."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        directory.mkdir(mode=0o755, exist_ok=True)
        directory.chmod(0o755)


def _check_strict_modes(directory: Path) -> None:
    """ValueError unless sshd's StrictModes accepts files in ``directory``: it and every parent up to the
    user's home (or /) must belong to root or the user and not be group- or world-writable."""
    uid = os.geteuid()
    home = Path(pwd.getpwuid(uid).pw_dir).resolve()
    for d in [directory.resolve(), *directory.resolve().parents]:
        st = d.stat()
        if st.st_uid not in (0, uid) or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise ValueError(f"ssh_hosts: sshd's StrictModes refuses keys below {d} (mode "
                             f"{stat.S_IMODE(st.st_mode):04o}, uid {st.st_uid}): use a root below "
                             f"e.g. ~/.cache/cma-harness")
        if d == home:
            break


def _keygen(path: Path, comment: str) -> None:
    """A new ed25519 key pair without passphrase at ``path`` and ``path``.pub."""
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])


def _known_hosts_line(host: TestHost, public_key: Path) -> str:
    """The known_hosts line giving ``host``'s address (``[address]:port`` unless port 22) ``public_key``."""
    kind, blob = public_key.read_text().split()[:2]
    name = host.address if host.port == 22 else f"[{host.address}]:{host.port}"
    return f"{name} {kind} {blob}\n"


def _try_netns_add(name: str, required: bool) -> bool:
    """Create network namespace ``name``; False if that is not allowed here (RuntimeError if ``required``)."""
    if shutil.which("ip") is not None:
        done = _run(["ip", "netns", "add", name], check=False)
        if done.returncode == 0:
            return True
        reason = done.stderr.strip()
    else:
        reason = "no ip command (install iproute2)"
    if required:
        raise RuntimeError(f"ssh_hosts: cannot create a network namespace: {reason}")
    return False


def _free_subnet() -> ipaddress.IPv4Network:
    """A random 10.231.k.0/24 that overlaps no address or route of this machine's root namespace."""
    used = []
    for args in (["ip", "-o", "-4", "addr", "show"], ["ip", "-4", "route", "show", "table", "all"]):
        for word in _run(args).stdout.split():
            try:
                used.append(ipaddress.ip_network(word, strict=False))
            except ValueError:
                continue
    free = [net for k in range(256) if not any(
        (net := ipaddress.IPv4Network(_SUBNET.format(k=k))).overlaps(u) for u in used if u.version == 4)]
    if not free:
        raise RuntimeError("ssh_hosts: no free 10.231.k.0/24 on this machine")
    return secrets.choice(free)


def _setup_veth(ns: str, host_side: str, ns_side: str, subnet: ipaddress.IPv4Network, index: int) -> str:
    """Link namespace ``ns`` to the root namespace by a veth pair on the ``index``-th /30 of ``subnet``;
    bring its loopback up; return the namespace side's address."""
    base = subnet.network_address + 4 * index
    outside, inside = f"{base + 1}/30", f"{base + 2}/30"
    _run(["ip", "link", "add", host_side, "type", "veth", "peer", "name", ns_side, "netns", ns])
    _run(["ip", "addr", "add", outside, "dev", host_side])
    _run(["ip", "link", "set", host_side, "up"])
    _run(["ip", "-n", ns, "addr", "add", inside, "dev", ns_side])
    _run(["ip", "-n", ns, "link", "set", ns_side, "up"])
    _run(["ip", "-n", ns, "link", "set", "lo", "up"])
    return str(base + 2)


def _free_port() -> int:
    """A TCP port of 127.0.0.1 free right now (the kernel's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _write_sshd_config(config: Path, address: str, port: int, host_key: Path, authorized_keys: Path,
                       log: Path) -> None:
    """Write to ``config`` an sshd configuration for ``address``:``port``: host key ``host_key``, the
    client keys of ``authorized_keys`` only, SFTP, no PAM."""
    for path in (host_key, authorized_keys, log):
        if re.search(r'[\s"%]', str(path)):
            raise ValueError(f"ssh_hosts: sshd cannot take the path {path!r} (blank, quote or %)")
    config.write_text(
        "# Written by tests/sshd_hosts.py: one test host's sshd.\n"
        f"Port {port}\n"
        f"ListenAddress {address}\n"
        f"HostKey {host_key}\n"
        f"AuthorizedKeysFile {authorized_keys}\n"
        "PidFile none\n"
        "StrictModes yes\n"
        "PubkeyAuthentication yes\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "PermitRootLogin prohibit-password\n"
        "UsePAM no\n"
        "Subsystem sftp internal-sftp\n"
        "MaxSessions 20\n"
        "MaxStartups 50\n"
        "LogLevel VERBOSE\n"
        "PrintMotd no\n"
        "PrintLastLog no\n"
        "UseDNS no\n"
        "X11Forwarding no\n")


def _start_sshd(netns: str | None, config: Path, log: Path) -> subprocess.Popen[bytes]:
    """Start an sshd with ``config`` in the foreground (inside ``netns``, if any), logging to ``log``."""
    command = [SSHD, "-D", "-E", str(log), "-f", str(config)]
    if netns is not None:
        command = ["ip", "netns", "exec", netns, *command]  # ip execs sshd: the same pid
    with log.open("ab") as out:  # what sshd prints before it opens its -E log
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=out)


def _wait_ready(hosts: list[TestHost], authorized_keys: Path) -> None:
    """Wait until every host's sshd accepts TCP connections (``START_TIMEOUT`` seconds), restarting a
    loopback sshd whose free port was taken meanwhile; RuntimeError with the sshd log's tail otherwise."""
    deadline = time.monotonic() + START_TIMEOUT
    waiting = list(hosts)
    while waiting:
        for host in list(waiting):
            if host.sshd.poll() is not None:
                log = _log_tail(host.log)
                if host.netns is None and "Address already in use" in log and time.monotonic() < deadline:
                    host.port = _free_port()
                    host.known_hosts.write_text(_known_hosts_line(host, host.host_key_pub))
                    config = host.log.parent / "sshd_config"
                    host_key = host.host_key_pub.with_suffix("")  # host1_host_key.pub -> host1_host_key
                    _write_sshd_config(config, host.address, host.port, host_key, authorized_keys, host.log)
                    host.sshd = _start_sshd(None, config, host.log)
                    continue
                raise RuntimeError(f"ssh_hosts: {host.name}'s sshd exited ({host.sshd.returncode}):\n{log}")
            try:
                with socket.create_connection((host.address, host.port), timeout=0.5):
                    waiting.remove(host)
            except OSError:
                pass
        if waiting:
            if time.monotonic() > deadline:
                host = waiting[0]
                raise RuntimeError(f"ssh_hosts: {host.name}'s sshd does not accept connections at "
                                   f"{host.address}:{host.port} after {START_TIMEOUT} s:\n"
                                   f"{_log_tail(host.log)}")
            time.sleep(0.01)


def _log_tail(log: Path) -> str:
    """The last ``_LOG_TAIL`` lines of ``log``."""
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-_LOG_TAIL:])
    except OSError as e:
        return f"(no log: {e})"


def _netns_pids(ns: str) -> set[int]:
    """The live processes of network namespace ``ns`` (empty if it is gone)."""
    done = _run(["ip", "netns", "pids", ns], check=False)
    if done.returncode != 0:
        return set()
    return {pid for pid in map(int, done.stdout.split()) if _alive(pid)}


def _process_table() -> dict[int, int]:
    """pid -> parent pid of every live (not zombie) process, from /proc/<pid>/stat."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields and fields[0] not in ("Z", "X"):
            table[int(entry.name)] = int(fields[1])
    return table


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a process that has not exited (a zombie has)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return bool(fields) and fields[0] not in ("Z", "X")


def _ssh_connection(pid: int) -> bytes:
    """The value of ``SSH_CONNECTION`` in ``pid``'s initial environment (b"" if none or unreadable)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return b""
    for item in environ.split(b"\0"):
        if item.startswith(b"SSH_CONNECTION="):
            return item[len(b"SSH_CONNECTION="):]
    return b""


def _signal(pid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to ``pid``, which may have exited meanwhile."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _toml_key(key: str) -> str:
    """``key`` as a TOML key: bare if it can be, else a quoted string."""
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _toml_value(value: object) -> str:
    """``value`` as a TOML value (JSON string quoting is valid TOML basic-string quoting)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(str(k))} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"write_hosts_toml: cannot write {type(value).__name__} {value!r} as TOML")

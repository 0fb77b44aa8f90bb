"""Start and stop the world's server processes so that nothing is left behind.

Every process starts in its own session (``setsid``: a signal to the group reaches its children too, and a
Ctrl-C in the terminal that ran ``voxfleet cluster up`` does not reach it) with stdout+stderr in a log file,
and carries the marker ``VOXFLEET_WORLD=<world id>`` in its environment. ``stop`` signals the recorded process
groups; ``kill_marked`` then sweeps /proc for anything that still carries the marker (a pod's grandchild that
started its own session, a server whose parent died), which is how "stop leaves nothing behind" is kept.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

MARKER_ENV = "VOXFLEET_WORLD"


class ServerFailed(RuntimeError):
    """A server exited or never became ready; the message carries its log tail."""


@dataclass
class Server:
    name: str
    pid: int
    log: Path
    popen: subprocess.Popen | None = None  # only in the process that started it

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return pid_alive(self.pid)

    def check(self) -> None:
        """Raise ServerFailed with the log tail if the server has exited."""
        if not self.alive():
            code = self.popen.returncode if self.popen is not None else "?"
            raise ServerFailed(f"{self.name} exited (code {code}); last lines of {self.log}:\n{log_tail(self.log)}")


def start(name: str, argv: list[str], *, log_dir: Path, world_id: str, env: dict[str, str] | None = None,
          cwd: Path | None = None, pass_fds: tuple[int, ...] = (), user: str | None = None) -> Server:
    """``user``: run as that user (PostgreSQL refuses to run as root)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    full_env = dict(os.environ if env is None else env)
    full_env[MARKER_ENV] = world_id
    with open(log, "ab") as out:
        popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=full_env,
                                 cwd=cwd, start_new_session=True, pass_fds=pass_fds, user=user,
                                 group=user, extra_groups=[] if user else None)
    return Server(name, popen.pid, log, popen)


def stop_group(pid: int, *, timeout: float = 5.0) -> None:
    """SIGTERM the process group led by ``pid``, SIGKILL it after ``timeout`` seconds."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not _group_alive(pid):
            return
        time.sleep(0.05)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _reap(pid)


def stop_groups(pids: list[int], *, timeout: float = 5.0) -> None:
    """Stop several groups concurrently: SIGTERM all, wait for all, then SIGKILL the rest."""
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in pids:
            _reap(pid)
        if not any(_group_alive(p) for p in pids):
            return
        time.sleep(0.05)
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        _reap(pid)


def marked_pids(world_id: str) -> list[int]:
    """Processes whose environment carries this world's marker (our own process excluded)."""
    needle = f"{MARKER_ENV}={world_id}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry))
    return found


def kill_marked(world_id: str) -> list[int]:
    """SIGKILL every process still carrying the world's marker; returns their pids."""
    pids = marked_pids(world_id)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _reap(pid)
    return pids


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); it is dead for our purposes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # killpg(0) succeeds while zombies of the group exist; look for a live member.
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(") ", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


def _reap(pid: int) -> None:
    """Collect a child's exit status so it doesn't linger as a zombie (only works for our own children)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        return f"(no log: {e})"
    return "\n".join(text.splitlines()[-lines:])


def free_port(kind: int = socket.SOCK_STREAM, *, other_than: tuple[int, ...] = ()) -> int:
    """A port the kernel just handed out on 127.0.0.1 (free for TCP, or UDP with SOCK_DGRAM), never one of
    `other_than`: a port chosen a moment ago and closed again can come straight back (CI once gave a gateway the
    same API and /metrics port, and it refused to start)."""
    while True:
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in other_than:
            return port


def free_ports(count: int, kind: int = socket.SOCK_STREAM) -> list[int]:
    """Distinct free ports: all sockets stay bound until every port is chosen, so none repeats."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, kind)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_until(what: str, probe, *, timeout: float, servers: list[Server] = (), interval: float = 0.05):
    """Call ``probe()`` until it returns a truthy value; fail early with a log tail if a server died."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        for server in servers:
            server.check()
        try:
            result = probe()
            if result:
                return result
        except Exception as e:  # noqa: BLE001 - the probe's errors are the "not yet" signal
            last_error = e
        if time.monotonic() > deadline:
            tails = "".join(f"\n--- {s.name} ({s.log}):\n{log_tail(s.log)}" for s in servers)
            raise ServerFailed(f"timed out after {timeout:.0f} s waiting for {what}"
                               f"{f' (last error: {last_error})' if last_error else ''}{tails}")
        time.sleep(interval)

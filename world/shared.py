"""One world shared by several processes (pytest-xdist workers): the first to arrive starts it, the last to leave
stops it. Bookkeeping lives next to the world: ``lock`` (flock) and ``users`` (pids of the processes using it;
dead ones don't count, so a crashed worker can't keep the world alive forever).

A killed test run (timeout, SIGKILL, a closed terminal) never reaches ``release``, and its servers live in their
own sessions. So the first user also starts a reaper (``python -m voxfleet.world.shared reap <dir>``) that stops
the world once no user is alive; the world's own stop ends the reaper (it carries the world's marker).
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from . import processes
from .processes import ServerFailed
from .world import World, WorldInfo

FAILED_FILE = "start-failed"


class SharedWorld:
    def __init__(self, state_dir: Path):
        self.state_dir = Path(state_dir)
        self.world = World(self.state_dir)

    @contextmanager
    def _locked(self):
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.state_dir / "lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # blocks while another process starts or stops the world
            yield

    def _users(self) -> list[int]:
        try:
            pids = json.loads((self.state_dir / "users").read_text())
        except (FileNotFoundError, ValueError):
            return []
        return [p for p in pids if processes.pid_alive(p)]

    def _write_users(self, pids: list[int]) -> None:
        (self.state_dir / "users").write_text(json.dumps(sorted(set(pids))))

    def acquire(self, progress: Callable[[str], None] = lambda _: None) -> WorldInfo:
        with self._locked():
            failed = self.state_dir / FAILED_FILE
            if failed.exists():  # another worker already tried: fail the same way, fast
                raise ServerFailed(failed.read_text())
            if not self.world.running():
                try:
                    info = self.world.start(progress)
                except Exception as e:
                    failed.write_text(f"{type(e).__name__}: {e}")
                    raise
                processes.start("reaper", [sys.executable, "-m", "voxfleet.world.shared", "reap",
                                           str(self.state_dir)], log_dir=Path(info.logs_dir), world_id=info.world_id)
            self._write_users(self._users() + [os.getpid()])
            return WorldInfo.load(self.state_dir)

    def release(self) -> float | None:
        """Drop this process; stop the world if it was the last user. Returns the stop time, if it stopped."""
        with self._locked():
            users = [p for p in self._users() if p != os.getpid()]
            self._write_users(users)
            if users:
                return None
            return self.world.stop()

    def reap_when_abandoned(self, interval: float = 2.0) -> None:
        """Wait until every user is gone, then stop the world (if nobody stopped it already)."""
        while True:
            time.sleep(interval)
            with self._locked():
                if not self.world.running():
                    return
                if not self._users():
                    print(f"no live user of {self.state_dir} left: stopping the world", flush=True)
                    self.world.stop()
                    return


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "reap":
        sys.exit("usage: python -m voxfleet.world.shared reap <world dir>")
    SharedWorld(Path(sys.argv[2])).reap_when_abandoned()

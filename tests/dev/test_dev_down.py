"""`voxfleet dev down` ends what a `voxfleet dev` that was killed (kill -9, a closed laptop) left running: the
processes it recorded and anything else carrying its run's environment marker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

from voxfleet.devplatform.dev_state import DevState
from voxfleet.world import processes


def test_down_stops_the_recorded_processes_and_every_marked_straggler(tmp_path):
    world_id = f"devtest-{uuid.uuid4().hex[:8]}"
    # The recorded process starts a child that leaves its process group (as a server's helper might): stopping
    # the group misses it, only the marker finds it.
    pid_file = tmp_path / "straggler.pid"
    script = (f"import os, time\nif os.fork() == 0:\n    os.setsid()\n    open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
              f"    time.sleep(120)\nelse:\n    time.sleep(120)\n")
    recorded = processes.start("operator", [sys.executable, "-c", script], log_dir=tmp_path / "logs",
                               world_id=world_id)
    deadline = time.monotonic() + 30
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, "the straggler did not start"
        time.sleep(0.05)
    straggler = int(pid_file.read_text())
    assert processes.pid_alive(straggler)
    gone = subprocess.Popen(["true"])
    gone.wait()  # the supervisor that died without cleaning up
    state = DevState(dev_dir=str(tmp_path), world_dir=str(tmp_path / "world"), world_id=world_id,
                     supervisor_pid=gone.pid, pids={"operator": recorded.pid})
    state.save()
    state.save_api_key("vfk_test_key")
    assert oct(os.stat(state.api_key_file).st_mode & 0o777) == "0o600"

    status = subprocess.run([sys.executable, "-m", "voxfleet.cli", "dev", "status", "--dev-dir", str(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    assert status.returncode == 1 and "DEGRADED" in status.stdout and "gone" in status.stdout
    assert "vfk_test_key" not in status.stdout  # the key's file is named, never the key

    started = time.monotonic()
    down = subprocess.run([sys.executable, "-m", "voxfleet.cli", "dev", "down", "--dev-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert down.returncode == 0, down.stderr
    assert time.monotonic() - started < 30
    recorded.popen.wait(5)
    assert not processes.pid_alive(straggler)
    assert processes.marked_pids(world_id) == []
    assert not (tmp_path / "dev.json").exists() and not state.api_key_file.exists()
    again = subprocess.run([sys.executable, "-m", "voxfleet.cli", "dev", "down", "--dev-dir", str(tmp_path)],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "nothing to stop" in again.stderr

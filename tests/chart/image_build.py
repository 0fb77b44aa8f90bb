"""Build the Dockerfile with buildah (daemonless, chroot isolation: no Docker, no privileges beyond root here) and
run the image's checks. Used by test_image.py, which runs only on request (a cold build is minutes).

The base image comes from VOXFLEET_PYTHON_IMAGE, else `python:3.11-slim` is pulled; where no container registry
is reachable, a stand-in is built once from Debian packages (debootstrap: Debian 12 with its python3.11, the
same distribution as python:3.11-slim, Python from Debian instead of from source) and cached in buildah's store.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "localhost/voxfleet:test"
STANDIN = "localhost/voxfleet-standin/python:3.11-slim"
OFFLINE_AGENT = ROOT / "examples" / "offline-demo.yaml"


def buildah(*args: str, timeout: float = 1800, check: bool = True, net: bool = True) -> subprocess.CompletedProcess:
    argv = ["buildah", *args]
    if not net:  # a fresh network namespace with only loopback up: nothing outside is reachable
        argv = ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *argv]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"buildah {' '.join(args[:3])} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result


def base_image() -> str:
    if os.environ.get("VOXFLEET_PYTHON_IMAGE"):
        return os.environ["VOXFLEET_PYTHON_IMAGE"]
    if buildah("inspect", "--type", "image", STANDIN, check=False).returncode == 0:
        return STANDIN
    if buildah("pull", "--quiet", "docker.io/library/python:3.11-slim", check=False, timeout=600).returncode == 0:
        return "docker.io/library/python:3.11-slim"
    _build_standin()
    return STANDIN


def _build_standin() -> None:
    if not shutil.which("debootstrap"):
        raise AssertionError("no registry and no debootstrap: set VOXFLEET_PYTHON_IMAGE or apt-get install debootstrap")
    rootfs = Path(tempfile.mkdtemp(prefix="voxfleet-standin-"))
    try:
        subprocess.run(["debootstrap", "--variant=minbase", "--include=python3.11,python3.11-venv,ca-certificates",
                        "bookworm", str(rootfs), "http://deb.debian.org/debian"], check=True, capture_output=True,
                       timeout=1200)
        local_bin = rootfs / "usr" / "local" / "bin"
        local_bin.mkdir(parents=True, exist_ok=True)
        for name in ("python", "python3", "python3.11"):  # where python:3.11-slim has its interpreter
            (local_bin / name).symlink_to("/usr/bin/python3.11")
        container = buildah("from", "scratch").stdout.strip()
        buildah("add", container, str(rootfs), "/")
        buildah("config", "--env", "PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--env", "LANG=C.UTF-8", "--cmd", "python3", container)
        buildah("commit", "--rm", container, STANDIN)
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)


def build(base: str) -> None:
    """The multi-stage build, layers cached. The host's pip configuration and CA bundle are mounted into RUN steps
    (never into layers) so a build behind a TLS-inspecting proxy reaches PyPI."""
    mounts = []
    for path in ("/etc/pip.conf", "/etc/ssl/certs/ca-certificates.crt"):
        if Path(path).exists():
            mounts += ["-v", f"{path}:{path}:ro"]
    buildah("bud", "--isolation", "chroot", "--layers", *mounts, "--build-arg", f"PYTHON_IMAGE={base}",
            "-t", IMAGE, "-f", str(ROOT / "Dockerfile"), str(ROOT))


def image_config() -> dict:
    return json.loads(buildah("inspect", "--type", "image", IMAGE).stdout)


class Container:
    """A working container of the image, for running commands in it."""

    def __init__(self) -> None:
        self.name = buildah("from", IMAGE).stdout.strip()

    def run(self, *command: str, net: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        return buildah("run", "--isolation", "chroot", self.name, "--", *command, net=net, timeout=timeout,
                       check=False)

    def copy(self, source: Path, destination: str) -> None:
        buildah("copy", "--chown", "10001:10001", self.name, str(source), destination)

    def remove(self) -> None:
        buildah("rm", self.name, check=False)


def offline_agent_config(tmp: Path) -> Path:
    """The offline demo agent as a worker reads it, with smart-turn on (so that model loads too) and without its
    tool (which calls a local demo server)."""
    import yaml

    from voxfleet.api.voiceagent import VoiceAgentSpec
    from voxfleet.api.worker_config import WorkerConfig

    spec = yaml.safe_load(OFFLINE_AGENT.read_text())["spec"]
    spec.pop("tools", None)
    spec["intents"] = [intent for intent in spec["intents"] if "toolCall" not in intent]
    spec["turnDetection"]["detector"] = "smart-turn"
    config = WorkerConfig(tenant="demo", agent="concierge", namespace="tenant-demo",
                          spec=VoiceAgentSpec.model_validate(spec))
    path = tmp / "agent.json"
    path.write_text(config.render())
    return path


# Starts a worker with no network and waits for /readyz: models load from the installed wheels or not at all.
OFFLINE_START = r"""
export VOXFLEET_WORKER_TOKEN=offline-check-token-0123456789 VOXFLEET_REGION=us-east
voxfleet worker --config /tmp/agent.json --host 127.0.0.1 --port 8080 > /tmp/worker.log 2>&1 &
python - <<'PY'
import json, sys, time, urllib.request
deadline = time.monotonic() + 180
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen("http://127.0.0.1:8080/readyz", timeout=2) as answer:
            if answer.status == 200:
                break
    except OSError:
        pass
    time.sleep(0.5)
log = open("/tmp/worker.log").read()
ready = [json.loads(line) for line in log.splitlines() if '"worker ready"' in line]
print(json.dumps({"ready": bool(ready), "event": ready[0] if ready else None, "log_tail": log[-3000:]}))
PY
"""

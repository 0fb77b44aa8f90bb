"""Find the real server binaries the test world runs.

Lookup order for each server, first hit wins:

1. ``VOXFLEET_<NAME>_BIN`` (``VOXFLEET_KUBE_APISERVER_BIN``, ``VOXFLEET_LIVEKIT_SERVER_BIN`` ...): used as is.
2. The versioned cache ``$VOXFLEET_BIN_DIR/<name>-<version>`` (default ``~/.cache/voxfleet/bin``), filled by
   ``build-servers.sh``.
3. ``PATH`` (a user who already has the servers installed). kubectl from PATH is accepted only within one
   minor version of ours: Debian ships an old kubectl that cannot talk to a v1.36 apiserver reliably.
4. Otherwise build the missing ones with ``build-servers.sh`` (minutes, once per machine).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

K8S_VERSION = "v1.36.3"

# Keep in step with build-servers.sh: the cache file names carry these versions.
VERSIONS: dict[str, str] = {
    "etcd": "v3.6.16",
    "kube-apiserver": K8S_VERSION,
    "kube-controller-manager": K8S_VERSION,
    "kube-scheduler": K8S_VERSION,
    "kubectl": K8S_VERSION,
    "livekit-server": "v1.13.5",
    "kwok": "v0.8.0",
    "helm": "v3.22.0",
    # Telemetry servers (tests/telemetry): Prometheus v3.16.0 is Go module v0.316.0; the collector is our wrapper
    # module world/otelcol with every collector module at this one release.
    "prometheus": "v0.316.0",
    "promtool": "v0.316.0",
    "otelcol": "v0.161.0",
}

BUILD_SCRIPT = Path(__file__).with_name("build-servers.sh")


class MissingBinary(RuntimeError):
    """A server binary is neither configured, cached, on PATH nor buildable here."""


@dataclass(frozen=True)
class Binary:
    name: str
    path: Path
    source: str  # "env", "cache", "path" or "built": says where it came from, for status output


def cache_dir() -> Path:
    if "VOXFLEET_BIN_DIR" in os.environ:
        return Path(os.environ["VOXFLEET_BIN_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "voxfleet" / "bin"


def env_var_for(name: str) -> str:
    return "VOXFLEET_" + name.upper().replace("-", "_") + "_BIN"


def cached_path(name: str) -> Path:
    return cache_dir() / f"{name}-{VERSIONS[name]}"


def find(name: str, *, build: bool = True) -> Binary:
    """Return the binary for ``name`` (one of VERSIONS), building it if nothing else is available."""
    if name not in VERSIONS:
        raise ValueError(f"unknown server {name!r}; known: {', '.join(VERSIONS)}")
    found = _find_without_building(name)
    if found:
        return found
    if not build:
        raise MissingBinary(f"{name} {VERSIONS[name]} not found (set {env_var_for(name)} or run {BUILD_SCRIPT})")
    build_servers([name])
    path = cached_path(name)
    if not _is_executable(path):
        raise MissingBinary(f"{BUILD_SCRIPT} finished but {path} is missing")
    return Binary(name, path, "built")


def find_all(names: list[str] | None = None) -> dict[str, Binary]:
    """Find several binaries, building every missing one in a single build-servers.sh run."""
    names = names or list(VERSIONS)
    missing = [n for n in names if not _find_without_building(n)]
    if missing:
        build_servers(missing)
    return {n: find(n, build=False) for n in names}


def _find_without_building(name: str) -> Binary | None:
    configured = os.environ.get(env_var_for(name))
    if configured:
        path = Path(configured)
        if not _is_executable(path):
            raise MissingBinary(f"{env_var_for(name)}={configured} is not an executable file")
        return Binary(name, path, "env")
    path = cached_path(name)
    if _is_executable(path):
        return Binary(name, path, "cache")
    on_path = shutil.which(name)
    if on_path and _acceptable_from_path(name, Path(on_path)):
        return Binary(name, Path(on_path), "path")
    return None


def _acceptable_from_path(name: str, path: Path) -> bool:
    if name != "kubectl":
        return True
    try:
        out = subprocess.run([str(path), "version", "--client", "-o", "yaml"], capture_output=True, text=True,
                             timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    match = re.search(r"gitVersion:\s*v1\.(\d+)", out)
    ours = int(K8S_VERSION.split(".")[1])
    return bool(match) and abs(int(match.group(1)) - ours) <= 1


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def build_servers(names: list[str]) -> None:
    """Run build-servers.sh for ``names``, streaming its progress to stderr."""
    if not shutil.which("go"):
        raise MissingBinary(
            f"cannot build {', '.join(names)}: Go is not installed. Install Go 1.26+ (https://go.dev/dl), or put "
            f"prebuilt binaries on PATH or name them with {env_var_for(names[0])} (one variable per server).")
    print(f"voxfleet: building {', '.join(names)} from source (first run on this machine, several minutes; "
          f"cached in {cache_dir()})", file=sys.stderr, flush=True)
    env = dict(os.environ, VOXFLEET_BIN_DIR=str(cache_dir()))
    result = subprocess.run(["bash", str(BUILD_SCRIPT), *names], env=env, stdout=sys.stderr, stderr=sys.stderr)
    if result.returncode != 0:
        raise MissingBinary(f"{BUILD_SCRIPT} {' '.join(names)} failed with exit code {result.returncode}")

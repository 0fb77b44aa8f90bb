"""What a running `voxfleet dev` tells other processes (`voxfleet dev status`, `voxfleet call`, tests):
``<dev dir>/dev.json`` with its URLs, the processes it started and where the tenant API key is kept.

The key itself sits in its own file (mode 0600) beside it, never in dev.json, so showing the state shows no secret.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

STATE_FILE = "dev.json"
API_KEY_FILE = "api-key"
DEFAULT_GATEWAY = "http://127.0.0.1:8000"


def default_dev_dir() -> Path:
    if os.environ.get("VOXFLEET_DEV_DIR"):
        return Path(os.environ["VOXFLEET_DEV_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "voxfleet" / "dev"


@dataclass
class DevState:
    dev_dir: str
    world_dir: str
    world_id: str  # the environment marker every process of this run carries (VOXFLEET_WORLD=<id>)
    supervisor_pid: int  # the `voxfleet dev` process itself
    kubeconfig: str = ""
    gateway_url: str = ""
    playground_url: str = ""
    tool_server_url: str = ""
    tenant: str = ""
    agents: list[str] = field(default_factory=list)  # namespace/name of the agents it applied
    pids: dict[str, int] = field(default_factory=dict)  # process name -> pid (= its process group)
    logs: dict[str, str] = field(default_factory=dict)  # process name -> log file
    phase: str = "starting"  # starting, ready, stopping
    started_at: float = 0.0

    @property
    def api_key_file(self) -> Path:
        return Path(self.dev_dir) / API_KEY_FILE

    def api_key(self) -> str | None:
        try:
            return self.api_key_file.read_text().strip() or None
        except OSError:
            return None

    def save(self) -> None:
        path = Path(self.dev_dir) / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(path)

    def save_api_key(self, key: str) -> None:
        fd = os.open(self.api_key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(key + "\n")

    @classmethod
    def load(cls, dev_dir: Path | None = None) -> "DevState":
        """The state of the platform in ``dev_dir`` (FileNotFoundError when none was started there)."""
        path = Path(dev_dir or default_dev_dir()) / STATE_FILE
        return cls(**json.loads(path.read_text()))

    def forget(self) -> None:
        (Path(self.dev_dir) / STATE_FILE).unlink(missing_ok=True)
        self.api_key_file.unlink(missing_ok=True)


def gateway_and_key(gateway: str | None, key: str | None, dev_dir: Path | None) -> tuple[str, str | None]:
    """The gateway URL and API key a client command uses: its flags, then the running `voxfleet dev` (URL and key),
    then $VOXFLEET_GATEWAY_URL / $VOXFLEET_API_KEY, then the local default URL."""
    try:
        state = DevState.load(dev_dir)
    except (FileNotFoundError, ValueError, TypeError):
        state = None
    gateway = gateway or (state.gateway_url if state else None) or os.environ.get("VOXFLEET_GATEWAY_URL") \
        or DEFAULT_GATEWAY
    key = key or os.environ.get("VOXFLEET_API_KEY") or (state.api_key() if state else None)
    return gateway, key

"""Container probes (httpGet, tcpSocket, exec) run against the real process, as a kubelet runs them."""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass, field

import httpx


def _port(value, container: dict) -> int:
    """A probe port is a number or the name of one of the container's ports."""
    if isinstance(value, int) or str(value).isdigit():
        return int(value)
    for port in container.get("ports") or []:
        if port.get("name") == value:
            return int(port["containerPort"])
    raise ValueError(f"probe names port {value!r}, which the container doesn't declare")


def run(probe: dict, *, pod_ip: str, container: dict, env: dict[str, str], cwd: str | None = None) -> bool:
    """One probe attempt; True on success. Errors (refused, timeout, bad port) count as failure."""
    timeout = float(probe.get("timeoutSeconds", 1))
    try:
        if "httpGet" in probe:
            get = probe["httpGet"]
            scheme = get.get("scheme", "HTTP").lower()
            host = get.get("host") or pod_ip
            path = get.get("path", "/")
            headers = {h["name"]: h["value"] for h in get.get("httpHeaders") or []}
            url = f"{scheme}://{host}:{_port(get['port'], container)}{path if path.startswith('/') else '/' + path}"
            # Like kubelet: no certificate checks, 2xx/3xx is success, redirects are not followed.
            response = httpx.get(url, headers=headers, timeout=timeout, verify=False, follow_redirects=False)
            return 200 <= response.status_code < 400
        if "tcpSocket" in probe:
            tcp = probe["tcpSocket"]
            with socket.create_connection((tcp.get("host") or pod_ip, _port(tcp["port"], container)), timeout=timeout):
                return True
        if "exec" in probe:
            result = subprocess.run(probe["exec"]["command"], env=env, cwd=cwd, timeout=timeout,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            return result.returncode == 0
    except (OSError, httpx.HTTPError, subprocess.TimeoutExpired, ValueError):
        return False
    return False  # grpc probes: not supported in the test world


@dataclass
class ProbeState:
    """Kubelet's success/failure thresholds for one probe of one container run."""
    probe: dict
    started_at: float = field(default_factory=time.monotonic)
    ok: bool = False
    successes: int = 0
    failures: int = 0
    next_at: float = 0.0

    def __post_init__(self) -> None:
        self.next_at = self.started_at + float(self.probe.get("initialDelaySeconds", 0))

    @property
    def period(self) -> float:
        period = float(self.probe.get("periodSeconds", 10))
        # Deliberate deviation from kubelet: until the first success we probe every 0.2 s instead of waiting a
        # whole period after an early failure. It only makes pods turn Ready sooner, which tests wait for.
        return period if self.ok else min(period, 0.2)

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def record(self, success: bool, now: float) -> bool:
        """Count one result; returns True when the probe's verdict (ok) changed."""
        before = self.ok
        if success:
            self.successes, self.failures = self.successes + 1, 0
            if self.successes >= int(self.probe.get("successThreshold", 1)):
                self.ok = True
        else:
            self.failures, self.successes = self.failures + 1, 0
            if self.failures >= int(self.probe.get("failureThreshold", 3)):
                self.ok = False
        self.next_at = now + self.period
        return self.ok != before

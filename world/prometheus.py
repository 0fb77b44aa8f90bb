"""A real Prometheus on loopback, configured with scrape configs a test gives it, and a PromQL query helper.

Pods are discovered the way an in-cluster Prometheus discovers them, with ``kubernetes_sd_configs`` against the
world's apiserver (``kubeconfig_file``: the world's kubeconfig), so a pod's 127.x IP and container port are
scraped exactly as podIP:port in a cluster. Scrape and rule evaluation intervals default to 1 s so a test sees
a sample within seconds. ``start()`` waits for /-/ready; ``reload()`` swaps the configuration in place.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from . import processes
from .binaries import Binary
from .processes import Server

FAST_INTERVAL = "1s"


class PromQLError(RuntimeError):
    """Prometheus refused a query (bad PromQL, a timeout): the message carries its error type and text."""


def kubernetes_sd(role: str, *, kubeconfig: str | Path, namespaces: Sequence[str] | None = None) -> dict:
    """One ``kubernetes_sd_configs`` entry against the world's apiserver (role: pod, service, endpointslice ...)."""
    entry: dict = {"role": role, "kubeconfig_file": str(kubeconfig)}
    if namespaces:
        entry["namespaces"] = {"names": list(namespaces)}
    return entry


def static_scrape_config(job: str, targets: Sequence[str], *, metrics_path: str = "/metrics",
                         interval: str = FAST_INTERVAL) -> dict:
    """A scrape config for fixed ``host:port`` targets (a process started by the test, not a pod)."""
    return {"job_name": job, "metrics_path": metrics_path, "scrape_interval": interval, "scrape_timeout": interval,
            "static_configs": [{"targets": list(targets)}]}


def config(scrape_configs: Sequence[dict], *, rule_files: Sequence[Path] = (), scrape_interval: str = FAST_INTERVAL,
           evaluation_interval: str = FAST_INTERVAL) -> dict:
    return {
        "global": {"scrape_interval": scrape_interval, "scrape_timeout": scrape_interval,
                   "evaluation_interval": evaluation_interval},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": list(scrape_configs),
    }


@dataclass
class Prometheus:
    url: str
    config_file: Path
    server: Server
    scrape_interval: str = FAST_INTERVAL
    evaluation_interval: str = FAST_INTERVAL

    def _api(self, path: str, params: dict | None = None, *, timeout: float = 10.0, post: bool = False):
        # Queries are POSTed as a form: a dashboard's long PromQL would not fit a URL everywhere.
        response = (httpx.post(f"{self.url}/api/v1/{path}", data=params, timeout=timeout) if post
                    else httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=timeout))
        body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
        if response.status_code != 200 or body.get("status") != "success":
            raise PromQLError(f"{path} {params or ''}: HTTP {response.status_code} "
                              f"{body.get('errorType', '')}: {body.get('error', response.text[:300])}")
        return body["data"]

    def query(self, promql: str, *, at: float | None = None) -> list[dict]:
        """An instant query; the result's series as ``{"metric": {...}, "value": [ts, "v"]}`` (or a scalar's list)."""
        params = {"query": promql}
        if at is not None:
            params["time"] = str(at)
        data = self._api("query", params, post=True)
        return data["result"] if data["resultType"] in ("vector", "matrix") else [{"metric": {}, "value":
                                                                                    data["result"]}]

    def query_range(self, promql: str, *, start: float, end: float, step: str = "1s") -> list[dict]:
        return self._api("query_range", {"query": promql, "start": str(start), "end": str(end), "step": step},
                         post=True)["result"]

    def value(self, promql: str) -> float | None:
        """The single number an instant query returns (None when it returns no series)."""
        result = self.query(promql)
        if not result:
            return None
        if len(result) > 1:
            raise PromQLError(f"{promql!r} returned {len(result)} series, expected one: "
                              f"{[r['metric'] for r in result][:5]}")
        return float(result[0]["value"][1])

    def targets(self) -> list[dict]:
        """Active scrape targets: ``labels``, ``scrapePool``, ``scrapeUrl``, ``health`` (up/down/unknown),
        ``lastError``."""
        return self._api("targets", {"state": "active"})["activeTargets"]

    def alerts(self) -> list[dict]:
        """Pending and firing alerts: ``labels``, ``annotations``, ``state`` ("pending"/"firing"), ``value``."""
        return self._api("alerts")["alerts"]

    def rule_groups(self) -> list[dict]:
        """The loaded rule groups with each rule's ``health`` and ``lastError`` (a rule that fails to evaluate)."""
        return self._api("rules")["groups"]

    def wait_for(self, what: str, probe: Callable[[], object], *, timeout: float = 30.0):
        """Poll ``probe()`` until truthy; on timeout, fail with the targets' health and the server's log tail."""
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while True:
            self.server.check()
            try:
                result = probe()
                if result:
                    return result
            except (PromQLError, httpx.HTTPError) as e:
                last_error = e
            if time.monotonic() > deadline:
                try:
                    health = [(t["scrapePool"], t["scrapeUrl"], t["health"], t.get("lastError", ""))
                              for t in self.targets()]
                except (PromQLError, httpx.HTTPError) as e:
                    health = [f"(targets unavailable: {e})"]
                raise TimeoutError(f"prometheus: timed out after {timeout:.0f} s waiting for {what}"
                                   f"{f' (last error: {last_error})' if last_error else ''}; targets: {health}; "
                                   f"log {self.server.log}:\n{processes.log_tail(self.server.log, 10)}")
            time.sleep(0.2)

    def wait_for_series(self, promql: str, *, timeout: float = 30.0) -> list[dict]:
        """Wait until ``promql`` returns at least one series; returns them."""
        return self.wait_for(f"a series for {promql!r}", lambda: self.query(promql), timeout=timeout)

    def wait_for_targets_up(self, job: str | None = None, *, count: int = 1, timeout: float = 30.0) -> list[dict]:
        """Wait until ``count`` targets (of ``job``, if given) have been scraped successfully; returns them."""
        def up():
            found = [t for t in self.targets()
                     if t["health"] == "up" and (job is None or t["labels"].get("job") == job
                                                 or t["scrapePool"] == job)]
            return found if len(found) >= count else None
        return self.wait_for(f"{count} healthy target(s){f' of {job}' if job else ''}", up, timeout=timeout)

    def reload(self, scrape_configs: Sequence[dict], *, rule_files: Sequence[Path] = ()) -> None:
        """Replace the configuration and have Prometheus load it (fails if Prometheus rejects it)."""
        self.config_file.write_text(yaml.safe_dump(
            config(scrape_configs, rule_files=rule_files, scrape_interval=self.scrape_interval,
                   evaluation_interval=self.evaluation_interval), sort_keys=False))
        response = httpx.post(f"{self.url}/-/reload", timeout=30)
        if response.status_code != 200:
            raise PromQLError(f"prometheus refused the new configuration: {response.text.strip()}")

    def stop(self) -> None:
        processes.stop_group(self.server.pid, timeout=10)


def start(*, binary: Binary, state_dir: Path, scrape_configs: Sequence[dict] = (), rule_files: Sequence[Path] = (),
          scrape_interval: str = FAST_INTERVAL, evaluation_interval: str = FAST_INTERVAL,
          world_id: str | None = None, timeout: float = 30.0) -> Prometheus:
    """Start Prometheus under ``state_dir`` (config, TSDB, log) and wait until it is ready to answer queries."""
    state_dir.mkdir(parents=True, exist_ok=True)
    config_file = state_dir / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(
        config(scrape_configs, rule_files=rule_files, scrape_interval=scrape_interval,
               evaluation_interval=evaluation_interval), sort_keys=False))
    port = processes.free_port()
    argv = [str(binary.path), f"--config.file={config_file}", f"--storage.tsdb.path={state_dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle", "--log.level=info",
            # (hidden flag, default 5 s) how often discovered targets reach the scrapers: a new pod is scraped
            # about 4 s sooner, which every test that waits for a first sample pays.
            "--scrape.discovery-reload-interval=1s"]
    server = processes.start("prometheus", argv, log_dir=state_dir,
                             world_id=world_id or f"telemetry-{uuid.uuid4().hex[:8]}")
    prometheus = Prometheus(f"http://127.0.0.1:{port}", config_file, server, scrape_interval, evaluation_interval)
    try:
        processes.wait_until(f"prometheus /-/ready on {prometheus.url}",
                             lambda: httpx.get(f"{prometheus.url}/-/ready", timeout=1).status_code == 200,
                             timeout=timeout, servers=[server], interval=0.1)
    except BaseException:
        prometheus.stop()
        raise
    return prometheus

"""The platform a hostile tenant attacks: every real part, started for one test module on the shared world.

- the real kube-apiserver of the world (``kube``), with the CRDs installed;
- a platform namespace holding the platform's root worker token (a fresh random one, recorded in the run's
  secret ledger) in the ``voxfleet-worker-token`` Secret, as the chart installs it;
- a real ``voxfleet operator`` process (its own tenant shard) whose worker pods run ``voxfleet worker`` as real
  processes at their pod IPs through the world's pod runner (tests/operator/operator_process.py);
- a real ``voxfleet gateway`` process (tests/gateway/gateway_process.py) with the world's LiveKits, the test
  allow-list of outbound networks (127.0.0.1/32, where the listener runs) and rate limits out of the way;
- tenants made as a platform team makes them (a Tenant object; the operator creates the namespace) with API keys
  from ``voxfleet keys``, every key recorded in the ledger;
- a listener: a real HTTP server on 127.0.0.1 run by the test that records every request it receives, headers
  and body included, so a test can ask whether any secret ever reached it.

    platform = HostilePlatform.start(kube, pods, livekit, logs_dir)
    acme = platform.add_tenant("acme")
    with platform.api(acme) as http: http.put("/v1/agents/x", json=spec)
    platform.stop()
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.fakes.http_server import LocalHTTPServer, Reply, Request
from tests.gateway.conftest import livekit_regions, session_gateway_env
from tests.gateway.gateway_process import GatewayProcess
from tests.gateway.tenant_setup import create_key
from tests.operator.fleet import GROUP, VERSION, Fleet, condition
from tests.operator.operator_process import SHARD_LABEL, OperatorProcess
from tests.security import log_scan, secret_ledger
from tests.world.waiting import wait_for
from voxfleet.api import labels
from voxfleet.api.worker_credentials import token_for_namespace
from voxfleet.world.access import Cluster, RunnerPool

WORKER_TOKEN_SECRET = "voxfleet-worker-token"
TEST_ALLOWED_CIDRS = ["127.0.0.1/32"]
REGION = "us-east"
OFFLINE_PIPELINE = {"stt": {"provider": "pocketsphinx"}, "llm": {"provider": "scripted"},
                    "tts": {"provider": "espeak", "voice": "en-us"}}


@dataclass
class Tenant:
    name: str
    namespace: str
    key: str = field(repr=False)  # a failing test's traceback shows its fixtures: never a key

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


class Listener:
    """A real HTTP server on 127.0.0.1 that answers every request with a tool-like 200 and records it."""

    def __init__(self) -> None:
        self.server = LocalHTTPServer(lambda _request: Reply(200, {"speech": "Listener here."}))

    @property
    def url(self) -> str:
        return self.server.url

    def requests(self) -> list[Request]:
        return self.server.calls()

    def leaks(self, values: dict[str, str]) -> list[str]:
        """What of ``values`` (value -> what) reached the listener, raw or base64, anywhere in a request."""
        found = []
        for request in self.requests():
            seen = (request.path + json.dumps(request.query) + json.dumps(request.headers)).encode() + request.body
            for value, what in values.items():
                forms = (value.encode(), base64.b64encode(value.encode()))
                if any(form in seen for form in forms):
                    found.append(f"{what} in {request.method} {request.path}")
        return found


def offline_spec(**changes: Any) -> dict[str, Any]:
    """A small offline agent (no keys, no network) in one region with no warm workers unless asked (minWorkers):
    no buffer either, or the operator would start one for the default two free slots."""
    spec: dict[str, Any] = {"greeting": "Hello.", "pipeline": OFFLINE_PIPELINE,
                            "regions": [{"name": REGION, "minWorkers": 0, "maxWorkers": 2}],
                            "scaling": {"bufferSessions": 0}}
    spec.update(changes)
    return spec


def tool(url: str, *, name: str = "lookup", headers: list[dict[str, Any]] | None = None,
         parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "description": "Look something up.",
            "parameters": parameters or {"type": "object", "properties": {"q": {"type": "string"}}},
            "http": {"url": url, "method": "POST", "timeoutMs": 3000, **({"headers": headers} if headers else {})}}


@dataclass
class HostilePlatform:
    kube: Cluster
    pods: RunnerPool
    platform_namespace: str
    root_token: str = field(repr=False)
    gateway: GatewayProcess
    operator: OperatorProcess
    fleet: Fleet
    api_client: Any
    listener: Listener
    logs: Path
    tenants: list[Tenant] = field(default_factory=list)

    @classmethod
    def start(cls, kube: Cluster, pods: RunnerPool, livekit: dict, logs: Path,
              gateway_env: dict[str, str] | None = None, database_url: str | None = None) -> "HostilePlatform":
        platform_namespace = kube.new_namespace("vfsec")
        root_token = secret_ledger.record(secrets.token_urlsafe(32), "worker root token of a security platform")
        api_client = kube.api_client()
        client.CoreV1Api(api_client).create_namespaced_secret(platform_namespace, {
            "metadata": {"name": WORKER_TOKEN_SECRET},
            "data": {labels.WORKER_TOKEN_KEY: base64.b64encode(root_token.encode()).decode()}})
        listener = Listener()
        listener.server.start()
        gateway = GatewayProcess(
            kubeconfig=kube.kubeconfig, platform_namespace=platform_namespace, log_path=logs / "gateway.log",
            regions=livekit_regions(livekit), database_url=database_url,  # history, webhooks, usage attacked too
            extra_env=session_gateway_env(
                VOXFLEET_WORKER_TOKEN=root_token, VOXFLEET_OUTBOUND_ALLOWED_CIDRS=json.dumps(TEST_ALLOWED_CIDRS),
                VOXFLEET_RATE_LIMIT_PER_SECOND="100000", VOXFLEET_RATE_LIMIT_BURST="100000",
                VOXFLEET_LOG_LEVEL="info", **(gateway_env or {})))
        secret_ledger.record(gateway.env["VOXFLEET_SESSION_SIGNING_KEY"], "the gateway's session signing key")
        operator = OperatorProcess(
            kubeconfig=kube.kubeconfig, platform_namespace=platform_namespace, shard=f"sec{uuid.uuid4().hex[:8]}",
            log_path=logs / "operator.log",
            extra_env={"VOXFLEET_WORKER_COMMAND": json.dumps([sys.executable, "-m", "voxfleet.cli", "worker"]),
                       "VOXFLEET_OUTBOUND_ALLOWED_CIDRS": json.dumps(TEST_ALLOWED_CIDRS)})
        try:
            gateway.start()
            operator.start()
        except Exception:
            gateway.stop()
            operator.stop()
            listener.server.stop()
            raise
        fleet = Fleet(api_client, operator.argv[-1].split("=", 1)[1], platform_namespace)
        return cls(kube=kube, pods=pods, platform_namespace=platform_namespace, root_token=root_token,
                   gateway=gateway, operator=operator, fleet=fleet, api_client=api_client, listener=listener,
                   logs=logs)

    def stop(self) -> None:
        try:
            self.fleet.delete_everything()
        finally:
            self.operator.stop()
            self.gateway.stop()
            self.listener.server.stop()
            self.api_client.close()
            self.kube.delete_namespace(self.platform_namespace)

    # --- tenants ---------------------------------------------------------------------------------------------

    def tenant_object(self, name: str, **spec: Any) -> dict[str, Any]:
        return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Tenant",
                "metadata": {"name": name, "labels": {SHARD_LABEL: self.fleet.shard}},
                "spec": {"allowedRegions": [REGION, "eu-west"], **spec}}

    def create_tenant_object(self, name: str, **spec: Any) -> dict[str, Any]:
        created = self.fleet.custom.create_cluster_custom_object(GROUP, VERSION, "tenants",
                                                                 self.tenant_object(name, **spec))
        self.fleet.tenants.append(name)
        return created

    def add_tenant(self, prefix: str = "t", *, name: str | None = None, **spec: Any) -> Tenant:
        """A Tenant the operator makes Ready, with an API key (recorded in the ledger)."""
        name = name or f"{prefix}-{uuid.uuid4().hex[:6]}"
        self.create_tenant_object(name, **spec)
        ready = self.fleet.wait_tenant_ready(name)
        key = secret_ledger.record(create_key(self.kube, self.platform_namespace, name),
                                   f"API key of tenant {name}")
        tenant = Tenant(name=name, namespace=ready["status"]["namespace"], key=key)
        wait_for(f"the gateway to take tenant {name}'s key", lambda: self.api(tenant).get("/v1/agents")
                 .status_code == 200, timeout=20, interval=0.2)
        self.tenants.append(tenant)
        return tenant

    def api(self, tenant: Tenant | None = None, timeout: float = 30) -> httpx.Client:
        """The gateway's tenant API, as ``tenant`` (no key when None)."""
        return httpx.Client(base_url=self.gateway.url, headers=tenant.headers if tenant else {}, timeout=timeout)

    # --- what the cluster holds ------------------------------------------------------------------------------

    def secret_values(self, namespace: str) -> dict[str, str]:
        """Every value of every Secret in ``namespace`` (read as the platform admin): value -> what."""
        found = {}
        for item in client.CoreV1Api(self.api_client).list_namespaced_secret(namespace).items:
            for key, data in (item.data or {}).items():
                value = base64.b64decode(data).decode(errors="replace")
                if len(value) >= secret_ledger.MIN_SECRET_LENGTH:
                    found[value] = f"Secret {namespace}/{item.metadata.name} key {key}"
        return found

    def worker_token_of(self, namespace: str) -> str:
        """The worker token the operator wrote into a tenant's namespace (recorded in the ledger)."""
        secret = client.CoreV1Api(self.api_client).read_namespaced_secret(WORKER_TOKEN_SECRET, namespace)
        token = base64.b64decode(secret.data[labels.WORKER_TOKEN_KEY]).decode()
        return secret_ledger.record(token, f"worker token of namespace {namespace}")

    def platform_credentials(self) -> dict[str, str]:
        """The platform's root token and every tenant's worker token: nothing outside the platform may see any."""
        found = {self.root_token: "the platform's root worker token"}
        for tenant in self.tenants:
            with contextlib.suppress(ApiException):
                found[self.worker_token_of(tenant.namespace)] = f"tenant {tenant.name}'s worker token"
        return found

    def log_findings(self) -> list:
        """Every secret this process minted (and each tenant namespace's derived worker token) searched for in the
        platform's logs: gateway, operator, and every worker pod of its tenants."""
        files = sorted(self.logs.glob("*.log"))
        for tenant in self.tenants:
            files += sorted((self.pods.pods_dir / tenant.namespace).glob("*/*.log"))
        values = secret_ledger.minted_here()
        values.update({token_for_namespace(self.root_token, t.namespace): f"worker token of {t.namespace}"
                       for t in self.tenants})
        findings, _, _ = log_scan.scan(values, files)
        return findings

    def agent_object(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.fleet.agent(namespace, name)

    def worker_pods(self, namespace: str, agent: str) -> list[client.V1Pod]:
        return self.fleet.pool_pods(namespace, agent)

    def wait_ready_workers(self, tenant: Tenant, agent: str, count: int = 1, timeout: float = 120) -> list[str]:
        """Pod IPs of ``count`` Ready workers of the agent."""
        pods = wait_for(f"{count} Ready worker(s) of {tenant.name}/{agent}",
                        lambda: (ready := self.fleet.ready_pods(tenant.namespace, agent)) and len(ready) >= count
                        and ready, timeout=timeout, interval=0.5)
        return [p.status.pod_ip for p in pods]

    def degraded(self, namespace: str, name: str) -> dict[str, Any]:
        return condition(self.agent_object(namespace, name), "Degraded")

    def kubectl_as(self, tenant_group: str, *args: str, input: str | None = None):
        """kubectl as a member of a tenant's group (the admin impersonates; the tenant's RBAC decides)."""
        return self.kube.kubectl("--as", f"mallory-{uuid.uuid4().hex[:4]}", "--as-group", tenant_group,
                                 "--as-group", "system:authenticated", *args, check=False, input=input)


def fields_named(response: httpx.Response) -> list[str]:
    """The fields a gateway refusal names (ErrorBody details)."""
    body = response.json()
    return [str(d.get("field", "")) for d in body.get("details") or []]


def names_field(response: httpx.Response, *fragments: str) -> bool:
    """Whether some detail of the refusal names a field containing every fragment (e.g. "tools[0]", "url")."""
    return any(all(fragment in name for fragment in fragments) for name in fields_named(response))


@contextlib.contextmanager
def started(kube: Cluster, pods: RunnerPool, livekit: dict, logs: Path, **kwargs: Any) -> Iterator[HostilePlatform]:
    platform = HostilePlatform.start(kube, pods, livekit, logs, **kwargs)
    try:
        yield platform
    finally:
        platform.stop()
    findings = platform.log_findings()
    assert not findings, "secrets in the platform's logs:\n" + "\n".join(map(str, findings[:50]))

"""An asyncio Kubernetes REST client for the operator: server-side apply, reads, status patches, watches.

Raw dicts in and out (the builders produce manifests as dicts, the caches keep projections of them), one aiohttp
connection pool, and the same credentials kopf logs in with (`KubeCredentials`), so there is one source of truth
for who the operator is.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from voxfleet.api import kube_json

FIELD_MANAGER = "voxfleet-operator"
_THROTTLE_RETRIES = 5
_IN_CLUSTER = Path("/var/run/secrets/kubernetes.io/serviceaccount")

# kind -> (API prefix, plural, namespaced). Only the kinds the operator reads or writes.
RESOURCES: dict[str, tuple[str, str, bool]] = {
    "Namespace": ("api/v1", "namespaces", False),
    "Node": ("api/v1", "nodes", False),
    "Pod": ("api/v1", "pods", True),
    "Secret": ("api/v1", "secrets", True),
    "ConfigMap": ("api/v1", "configmaps", True),
    "Service": ("api/v1", "services", True),
    "ServiceAccount": ("api/v1", "serviceaccounts", True),
    "ResourceQuota": ("api/v1", "resourcequotas", True),
    "LimitRange": ("api/v1", "limitranges", True),
    "Event": ("api/v1", "events", True),
    "Deployment": ("apis/apps/v1", "deployments", True),
    "PodDisruptionBudget": ("apis/policy/v1", "poddisruptionbudgets", True),
    "NetworkPolicy": ("apis/networking.k8s.io/v1", "networkpolicies", True),
    "Role": ("apis/rbac.authorization.k8s.io/v1", "roles", True),
    "RoleBinding": ("apis/rbac.authorization.k8s.io/v1", "rolebindings", True),
    "Lease": ("apis/coordination.k8s.io/v1", "leases", True),
    "ValidatingAdmissionPolicy": ("apis/admissionregistration.k8s.io/v1", "validatingadmissionpolicies", False),
    "ValidatingAdmissionPolicyBinding": ("apis/admissionregistration.k8s.io/v1",
                                         "validatingadmissionpolicybindings", False),
    "Tenant": ("apis/voxfleet.dev/v1alpha1", "tenants", False),
    "VoiceAgent": ("apis/voxfleet.dev/v1alpha1", "voiceagents", True),
}


class KubeApiError(RuntimeError):
    def __init__(self, status: int, reason: str, message: str):
        super().__init__(f"{status} {reason}: {message}")
        self.status, self.reason, self.message = status, reason, message


class NotFound(KubeApiError):
    pass


class Conflict(KubeApiError):
    pass


class Gone(KubeApiError):
    """410: a watch's resourceVersion is too old; list again."""


def resource_path(kind: str, namespace: str | None = None, name: str | None = None, subresource: str = "") -> str:
    prefix, plural, namespaced = RESOURCES[kind]
    path = f"/{prefix}"
    if namespaced and namespace:
        path += f"/namespaces/{quote(namespace)}"
    path += f"/{plural}"
    if name:
        path += f"/{quote(name)}"
    if subresource:
        path += f"/{subresource}"
    return path


def object_path(manifest: dict[str, Any], subresource: str = "") -> str:
    meta = manifest["metadata"]
    return resource_path(manifest["kind"], meta.get("namespace"), meta["name"], subresource)


@dataclass(frozen=True)
class KubeCredentials:
    """Where the apiserver is and how to authenticate, from a kubeconfig or the in-cluster service account."""

    server: str
    ca_path: str | None = None
    cert_path: str | None = None
    key_path: str | None = None
    token: str | None = None
    token_path: str | None = None  # in-cluster tokens rotate: read the file again on each login
    insecure: bool = False

    @classmethod
    def load(cls, kubeconfig: str | None = None) -> "KubeCredentials":
        """A kubeconfig (explicit, $KUBECONFIG or ~/.kube/config) if there is one, else the pod's service account."""
        path = kubeconfig or os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
        if Path(path).exists():
            return cls._from_kubeconfig(path)
        if (_IN_CLUSTER / "token").exists():
            host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
            return cls(server=f"https://{host}:{port}", ca_path=str(_IN_CLUSTER / "ca.crt"),
                       token_path=str(_IN_CLUSTER / "token"))
        raise RuntimeError(f"no Kubernetes credentials: {path} does not exist and this is not a pod"
                           " (set KUBECONFIG or pass --kubeconfig)")

    @classmethod
    def _from_kubeconfig(cls, path: str) -> "KubeCredentials":
        # The kubernetes package resolves contexts, embedded data (written to temp files) and exec plugins.
        from kubernetes import client, config

        configuration = client.Configuration()
        config.load_kube_config(config_file=path, client_configuration=configuration)
        # kubernetes >= 37 files the kubeconfig's token under "BearerToken"; older releases under "authorization".
        api_key = configuration.api_key or {}
        auth = api_key.get("BearerToken") or api_key.get("authorization") or ""
        token = auth.split(" ", 1)[1] if auth.lower().startswith("bearer ") else None
        return cls(server=configuration.host, ca_path=configuration.ssl_ca_cert, cert_path=configuration.cert_file,
                   key_path=configuration.key_file, token=token, insecure=not configuration.verify_ssl)

    def current_token(self) -> str | None:
        if self.token_path:
            return Path(self.token_path).read_text().strip()
        return self.token

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_path)
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.cert_path:
            context.load_cert_chain(self.cert_path, self.key_path)
        return context


class KubeClient:
    def __init__(self, credentials: KubeCredentials, *, max_connections: int = 64, timeout: float = 30.0):
        self.credentials = credentials
        self._ssl = credentials.ssl_context()
        self._max_connections = max_connections
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self.on_write: Callable[[str, str], None] | None = None  # (method, path) after each successful write

    @property
    def session(self) -> aiohttp.ClientSession:
        # Created lazily: an aiohttp session belongs to the running loop.
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._max_connections, ssl=self._ssl)
            self._session = aiohttp.ClientSession(base_url=self.credentials.server, connector=connector)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _headers(self, content_type: str | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        token = self.credentials.current_token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    async def request(self, method: str, path: str, *, body: Any = None, params: dict[str, str] | None = None,
                      content_type: str = "application/json") -> dict[str, Any]:
        data = kube_json.body_bytes(body) if body is not None else None
        for attempt in range(_THROTTLE_RETRIES + 1):
            async with self.session.request(method, path, data=data, params=params, timeout=self._timeout,
                                            headers=self._headers(content_type if data is not None else None)
                                            ) as response:
                text = await response.text()
                retry_after = response.headers.get("Retry-After", "1")
            # 429: the apiserver's priority and fairness (or a CRD's storage starting): wait as told, try again.
            if response.status == 429 and attempt < _THROTTLE_RETRIES:
                await asyncio.sleep(min(float(retry_after) if retry_after.isdigit() else 1.0, 5.0))
                continue
            if response.status >= 400:
                raise _error(response.status, text)
            break
        if method != "GET" and self.on_write is not None:
            self.on_write(method, path)
        return json.loads(text) if text else {}

    # --- verbs ----------------------------------------------------------------------------------------------

    async def apply(self, manifest: dict[str, Any], *, field_manager: str = FIELD_MANAGER,
                    subresource: str = "") -> dict[str, Any]:
        """Server-side apply (forced): we own every field we send, and only those."""
        return await self.request("PATCH", object_path(manifest, subresource), body=manifest,
                                  params={"fieldManager": field_manager, "force": "true"},
                                  content_type="application/apply-patch+yaml")

    async def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        return await self.request("GET", resource_path(kind, namespace, name))

    async def get_or_none(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        try:
            return await self.get(kind, name, namespace)
        except NotFound:
            return None

    async def list(self, kind: str, namespace: str | None = None, **params: str) -> dict[str, Any]:
        return await self.request("GET", resource_path(kind, namespace), params=params or None)

    async def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        meta = manifest["metadata"]
        return await self.request("POST", resource_path(manifest["kind"], meta.get("namespace")), body=manifest)

    async def replace(self, manifest: dict[str, Any]) -> dict[str, Any]:
        return await self.request("PUT", object_path(manifest), body=manifest)

    async def merge_patch(self, kind: str, name: str, patch: dict[str, Any], namespace: str | None = None,
                          subresource: str = "") -> dict[str, Any]:
        return await self.request("PATCH", resource_path(kind, namespace, name, subresource), body=patch,
                                  content_type="application/merge-patch+json")

    async def delete(self, kind: str, name: str, namespace: str | None = None, *,
                     propagation: str = "Background") -> dict[str, Any] | None:
        try:
            return await self.request("DELETE", resource_path(kind, namespace, name),
                                      body={"kind": "DeleteOptions", "apiVersion": "v1",
                                            "propagationPolicy": propagation})
        except NotFound:
            return None

    async def watch(self, path: str, *, resource_version: str, timeout_seconds: int = 300,
                    params: dict[str, str] | None = None) -> AsyncIterator[dict[str, Any]]:
        """Watch events ({type, object}) from `resource_version` until the server ends the stream."""
        query = {"watch": "true", "resourceVersion": resource_version, "allowWatchBookmarks": "true",
                 "timeoutSeconds": str(timeout_seconds), **(params or {})}
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=timeout_seconds + 30)
        async with self.session.get(path, params=query, headers=self._headers(), timeout=timeout) as response:
            if response.status >= 400:
                raise _error(response.status, await response.text())
            buffer = b""
            # Chunks, not readline(): one object (a big Pod) can exceed aiohttp's line limit.
            async for chunk in response.content.iter_any():
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    if event.get("type") == "ERROR":
                        status = event.get("object") or {}
                        raise _error(int(status.get("code", 500)), json.dumps(status))
                    yield event


def _error(status: int, text: str) -> KubeApiError:
    try:
        body = json.loads(text)
        reason, message = body.get("reason", ""), body.get("message", text)
    except ValueError:
        reason, message = "", text
    cls = {404: NotFound, 409: Conflict, 410: Gone}.get(status, KubeApiError)
    return cls(status, reason, message)


async def gather_limited(limit: int, coroutines: list) -> list:
    """asyncio.gather with at most `limit` running at once (exceptions returned, not raised)."""
    semaphore = asyncio.Semaphore(limit)

    async def run(coroutine):
        async with semaphore:
            return await coroutine

    return await asyncio.gather(*(run(c) for c in coroutines), return_exceptions=True)

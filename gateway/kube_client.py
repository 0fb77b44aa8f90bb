"""An asyncio Kubernetes REST client: the few verbs the gateway needs (get, list, server-side apply, delete,
watch) over one pooled HTTP/1.1 connection set.

The generated ``kubernetes`` client is synchronous; the gateway serves hundreds of sessions per second on one
event loop and keeps long-lived watches open, so it speaks the REST API directly. Connection settings still
come from the ``kubernetes`` package's loaders (kubeconfig or in-cluster service account), so every
authentication method they support works here too.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from voxfleet.api import kube_json

APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"


class KubeApiError(RuntimeError):
    """A non-2xx answer of the apiserver; ``status`` is the apiserver's Status object (reason, causes...)."""

    def __init__(self, code: int, status: dict[str, Any]):
        self.code = code
        self.status = status
        super().__init__(f"{code} {status.get('reason', '')}: {status.get('message', '')}")

    @property
    def causes(self) -> list[dict[str, Any]]:
        return list((self.status.get("details") or {}).get("causes") or [])


class _ConfigAuth(httpx.Auth):
    """Bearer token from the loaded configuration on every request (in-cluster tokens are refreshed by it)."""

    def __init__(self, configuration: k8s_client.Configuration):
        self._configuration = configuration

    def auth_flow(self, request: httpx.Request):
        token = self._configuration.get_api_key_with_prefix("BearerToken", alias="authorization")
        if token:
            request.headers["Authorization"] = token
        yield request


def load_configuration(kubeconfig: Path | None = None) -> k8s_client.Configuration:
    """Kubeconfig when given, else in-cluster, else the default kubeconfig (KUBECONFIG / ~/.kube/config)."""
    configuration = k8s_client.Configuration()
    if kubeconfig is not None:
        k8s_config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration,
                                    persist_config=False)
        return configuration
    try:
        k8s_config.load_incluster_config(client_configuration=configuration)
    except k8s_config.ConfigException:
        k8s_config.load_kube_config(client_configuration=configuration, persist_config=False)
    return configuration


class KubeClient:
    def __init__(self, configuration: k8s_client.Configuration, *, timeout: float = 30.0,
                 max_connections: int = 32):
        ssl_context = ssl.create_default_context(cafile=configuration.ssl_ca_cert) \
            if configuration.verify_ssl else ssl._create_unverified_context()  # noqa: S323 (the user's choice)
        if configuration.cert_file:
            ssl_context.load_cert_chain(configuration.cert_file, configuration.key_file)
        self.http = httpx.AsyncClient(
            base_url=configuration.host.rstrip("/"), verify=ssl_context, auth=_ConfigAuth(configuration),
            timeout=httpx.Timeout(timeout, connect=5.0),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections))

    @classmethod
    def from_kubeconfig(cls, kubeconfig: Path | None = None, **kwargs: Any) -> "KubeClient":
        return cls(load_configuration(kubeconfig), **kwargs)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                      body: Any = None, content_type: str = "application/json") -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        content = None
        if body is not None:
            content = kube_json.body_bytes(body)
            headers["Content-Type"] = content_type
        response = await self.http.request(method, path, params=params, content=content, headers=headers)
        return _checked(response)

    async def get(self, path: str, **params: Any) -> dict[str, Any]:
        return await self.request("GET", path, params=params or None)

    async def apply(self, path: str, body: dict[str, Any], *, field_manager: str, force: bool = True,
                    dry_run: bool = False) -> dict[str, Any]:
        """Server-side apply: the apiserver merges, validates (schema + CEL) and records field ownership."""
        params: dict[str, Any] = {"fieldManager": field_manager, "force": "true" if force else "false"}
        if dry_run:
            params["dryRun"] = "All"
        return await self.request("PATCH", path, params=params, body=body, content_type=APPLY_PATCH)

    async def create(self, path: str, body: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        return await self.request("POST", path, params={"dryRun": "All"} if dry_run else None, body=body)

    async def delete(self, path: str, *, preconditions: dict[str, str] | None = None) -> dict[str, Any]:
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": preconditions} if preconditions \
            else None
        return await self.request("DELETE", path, body=body)

    async def watch(self, path: str, *, resource_version: str, label_selector: str | None = None,
                    timeout_seconds: int = 290) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """(type, object) events after ``resource_version`` until the server ends the watch."""
        params: dict[str, Any] = {"watch": "true", "resourceVersion": resource_version,
                                  "allowWatchBookmarks": "true", "timeoutSeconds": timeout_seconds}
        if label_selector:
            params["labelSelector"] = label_selector
        timeout = httpx.Timeout(timeout_seconds + 30, connect=5.0)
        async with self.http.stream("GET", path, params=params, timeout=timeout) as response:
            if response.status_code >= 400:
                await response.aread()
                _checked(response)
            async for line in response.aiter_lines():
                if line:
                    event = json.loads(line)
                    yield event["type"], event["object"]


def _checked(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json() if response.content else {}
    except ValueError:
        data = {"message": response.text[:500]}
    if response.status_code >= 400:
        raise KubeApiError(response.status_code, data if isinstance(data, dict) else {"message": str(data)})
    return data


def namespaced_path(group: str, version: str, plural: str, namespace: str | None, name: str | None = None) -> str:
    """REST path of a resource collection or object (core group when group is empty)."""
    base = f"/api/{version}" if not group else f"/apis/{group}/{version}"
    path = f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"
    return f"{path}/{name}" if name else path

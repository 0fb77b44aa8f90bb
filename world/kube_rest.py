"""A small JSON-over-HTTPS client for the world's own plumbing (node creation, the pod runner's watches and
status patches).

The world talks plain REST instead of the generated ``kubernetes`` client: it wants raw dicts (what a Pod
looks like on the wire is what kubelet-like code reasons about), streaming watches with explicit
resourceVersions, and explicit patch types. Tests and components use the ``kubernetes`` client as usual.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import yaml
from voxfleet.api import kube_json


class KubeError(RuntimeError):
    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}")
        self.status = status


class NotFound(KubeError):
    pass


class Gone(KubeError):
    """410: the watch's resourceVersion is too old; list again."""


class KubeRest:
    def __init__(self, server: str, ssl_context: ssl.SSLContext, *, token: str | None = None, timeout: float = 30.0,
                 max_connections: int = 64):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.server = server.rstrip("/")
        self._ssl = ssl_context
        self._headers = headers
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self.http = httpx.Client(base_url=self.server, verify=ssl_context, headers=headers, timeout=timeout,
                                 limits=limits)

    @classmethod
    def from_kubeconfig(cls, path: Path, **kwargs) -> "KubeRest":
        """Client for a kubeconfig as written by ``voxfleet.world.kubeconfig`` (file references, one context)."""
        config = yaml.safe_load(Path(path).read_text())
        context = next(c["context"] for c in config["contexts"] if c["name"] == config["current-context"])
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
        user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
        ctx = ssl.create_default_context(cafile=cluster["certificate-authority"])
        if "client-certificate" in user:
            ctx.load_cert_chain(user["client-certificate"], user["client-key"])
        return cls(cluster["server"], ctx, token=user.get("token"), **kwargs)

    def close(self) -> None:
        self.http.close()

    # --- requests -------------------------------------------------------------------------------------------

    def request(self, method: str, path: str, *, body=None, params: dict | None = None,
                content_type: str = "application/json") -> dict:
        content = kube_json.body_bytes(body) if body is not None else None
        headers = {"Content-Type": content_type} if content is not None else {}
        response = self.http.request(method, path, content=content, params=params, headers=headers)
        return _checked(response)

    def get(self, path: str, **params) -> dict:
        return self.request("GET", path, params=params or None)

    def create(self, path: str, body: dict) -> dict:
        return self.request("POST", path, body=body)

    def patch(self, path: str, body: dict, *, patch_type: str = "strategic") -> dict:
        types = {"strategic": "application/strategic-merge-patch+json", "merge": "application/merge-patch+json"}
        return self.request("PATCH", path, body=body, content_type=types[patch_type])

    def delete(self, path: str, body: dict | None = None) -> dict:
        return self.request("DELETE", path, body=body)

    def watch(self, path: str, *, resource_version: str, timeout_seconds: int = 300,
              **params) -> Iterator[dict]:
        """Yield watch events ({type, object}) from ``resource_version``; ends when the server closes the watch.
        Raises Gone when the version is too old."""
        query = {"watch": "true", "resourceVersion": resource_version, "allowWatchBookmarks": "true",
                 "timeoutSeconds": str(timeout_seconds), **params}
        timeout = httpx.Timeout(30.0, read=timeout_seconds + 30)
        with self.http.stream("GET", path, params=query, timeout=timeout) as response:
            if response.status_code >= 400:
                response.read()
                _checked(response)
            for line in response.iter_lines():
                if not line:
                    continue
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object", {})
                    code = int(status.get("code", 500))
                    raise (Gone if code == 410 else KubeError)(code, status.get("message", "watch error"))
                yield event


def _checked(response: httpx.Response) -> dict:
    if response.status_code < 400:
        return response.json() if response.content else {}
    try:
        message = response.json().get("message", response.text)
    except ValueError:
        message = response.text
    if response.status_code == 404:
        raise NotFound(404, message)
    if response.status_code == 410:
        raise Gone(410, message)
    raise KubeError(response.status_code, message)


def pod_path(namespace: str, name: str, subresource: str = "") -> str:
    path = f"/api/v1/namespaces/{quote(namespace)}/pods/{quote(name)}"
    return f"{path}/{subresource}" if subresource else path

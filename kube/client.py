"""The async Kubernetes client every voxfleet component uses: raw dicts in and out, one aiohttp connection pool.

Objects stay dicts (what the apiserver sends is what builders produce and caches project), bodies are written
by `voxfleet.api.kube_json` (UTF-8, readable by the apiserver's JSON and YAML parsers), every request carries a
fresh token from the credentials' token source (exec-plugin tokens are renewed before they expire, and once
after a 401), and 429/5xx answers are retried as `Backoff` says, honouring Retry-After.

Addressing: verbs take a kind name from `voxfleet.kube.KINDS` ("Pod", "VoiceAgent") or a `ResourceType`, plus
namespace/name; `request()` takes any REST path for the rest (subresources like serviceaccounts/x/token).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp

from voxfleet.api import kube_json
from voxfleet.kube.backoff import Backoff
from voxfleet.kube.credentials import Credentials
from voxfleet.kube.errors import Gone, KubeApiError, NotFound, error_for, error_from_text
from voxfleet.kube.resources import Kind, object_path, resource_path, resource_type

APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
PATCH_TYPES = {"merge": MERGE_PATCH, "strategic": STRATEGIC_MERGE_PATCH, "json": JSON_PATCH, "apply": APPLY_PATCH}


class WatchEvent(NamedTuple):
    """One watch event: type is ADDED, MODIFIED, DELETED or BOOKMARK (ERROR events are raised, never yielded)."""

    type: str
    object: dict[str, Any]


class KubeClient:
    """One apiserver, one connection pool (created lazily in the running event loop), one token source.

    max_connections bounds concurrent requests (watches hold one each); timeout is per request (not per watch).
    """

    def __init__(self, credentials: Credentials, *, max_connections: int = 64, timeout: float = 30.0,
                 backoff: Backoff = Backoff(), user_agent: str = "voxfleet"):
        self.credentials = credentials
        self.server = credentials.server.rstrip("/")
        self.backoff = backoff
        self.tokens = credentials.token_source()
        self.on_write: Callable[[str, str], None] | None = None  # (method, path) after each successful write
        self.retries = 0  # requests sent again after a 429/5xx or a connection failure (metrics and tests read it)
        self._ssl = credentials.ssl_context()
        self._max_connections = max_connections
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_kubeconfig(cls, kubeconfig: str | Path | None = None, *, context: str | None = None,
                        **kwargs: Any) -> "KubeClient":
        """Credentials.load(): explicit kubeconfig, $KUBECONFIG, the pod's service account, ~/.kube/config."""
        return cls(Credentials.load(kubeconfig, context=context), **kwargs)

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._max_connections, ssl=self._ssl)
            self._session = aiohttp.ClientSession(self.server, connector=connector,
                                                  headers={"User-Agent": self._user_agent})
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> "KubeClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- the one request loop: auth, retries, errors ------------------------------------------------------------

    async def request(self, method: str, path: str, *, params: dict[str, Any] | None = None, body: Any = None,
                      content_type: str = "application/json") -> dict[str, Any]:
        """Send one request (retried per `backoff`; once more after a 401 with a refreshed token) and return
        the decoded JSON answer ({} when empty). Raises KubeApiError (NotFound, Conflict, ...) otherwise."""
        data = kube_json.body_bytes(body) if body is not None else None
        async with self._send(method, path, params=params, data=data, content_type=content_type,
                              timeout=self._timeout) as response:
            raw = await response.read()
        if method != "GET" and self.on_write is not None:
            self.on_write(method, path)
        return json.loads(raw) if raw else {}

    async def get_text(self, path: str) -> str:
        """A GET whose answer is not JSON (the apiserver's own /metrics)."""
        async with self._send("GET", path, params=None, data=None, content_type="",
                              timeout=self._timeout) as response:
            return (await response.read()).decode()

    def _send(self, method: str, path: str, *, params: dict[str, Any] | None, data: bytes | None,
              content_type: str, timeout: aiohttp.ClientTimeout) -> "_Response":
        return _Response(self, method, path, _clean(params), data, content_type, timeout)

    async def _headers(self, content_type: str | None) -> tuple[dict[str, str], str | None]:
        headers = {"Accept": "application/json"}
        token = await self.tokens.token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if content_type:
            headers["Content-Type"] = content_type
        return headers, token

    # --- verbs ------------------------------------------------------------------------------------------------

    async def get(self, kind: Kind, name: str, namespace: str | None = None, *,
                  subresource: str = "") -> dict[str, Any]:
        return await self.request("GET", resource_path(kind, namespace, name, subresource))

    async def get_or_none(self, kind: Kind, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        try:
            return await self.get(kind, name, namespace)
        except NotFound:
            return None

    async def list(self, kind: Kind, namespace: str | None = None, *, label_selector: str | None = None,
                   field_selector: str | None = None, page_size: int = 500,
                   resource_version: str | None = None) -> dict[str, Any]:
        """Every matching object (all namespaces when namespace is None), fetched in pages of `page_size` and
        returned as one list: {"items": [...], "metadata": {"resourceVersion": <the list's>}}."""
        path = resource_path(kind, namespace)
        params: dict[str, Any] = {"labelSelector": label_selector, "fieldSelector": field_selector,
                                  "limit": page_size or None, "resourceVersion": resource_version}
        items: list[dict[str, Any]] = []
        while True:
            page = await self.request("GET", path, params=params)
            items.extend(page.get("items") or [])
            meta = page.get("metadata") or {}
            if not meta.get("continue"):
                return {"kind": page.get("kind", ""), "apiVersion": page.get("apiVersion", ""),
                        "metadata": {"resourceVersion": meta.get("resourceVersion", "")}, "items": items}
            params = dict(params, **{"continue": meta["continue"], "resourceVersion": None})

    async def create(self, manifest: dict[str, Any], *, dry_run: bool = False,
                     field_manager: str | None = None) -> dict[str, Any]:
        meta = manifest["metadata"]
        path = resource_path(manifest["kind"], meta.get("namespace"))
        return await self.request("POST", path, body=manifest,
                                  params={"dryRun": "All" if dry_run else None, "fieldManager": field_manager})

    async def replace(self, manifest: dict[str, Any], *, subresource: str = "",
                      field_manager: str | None = None) -> dict[str, Any]:
        """PUT: with metadata.resourceVersion set, a Conflict when the object changed since it was read."""
        return await self.request("PUT", object_path(manifest, subresource), body=manifest,
                                  params={"fieldManager": field_manager})

    async def apply(self, manifest: dict[str, Any], *, field_manager: str, force: bool = True,
                    subresource: str = "", dry_run: bool = False) -> dict[str, Any]:
        """Server-side apply: the apiserver merges, validates (schema and CEL) and records that `field_manager`
        owns exactly the fields sent. force=True takes fields over from other managers (a controller's
        choice); force=False raises Conflict naming them. subresource="status" applies status."""
        return await self.request("PATCH", object_path(manifest, subresource), body=manifest,
                                  params={"fieldManager": field_manager, "force": "true" if force else "false",
                                          "dryRun": "All" if dry_run else None},
                                  content_type=APPLY_PATCH)

    async def patch(self, kind: Kind, name: str, patch: Any, namespace: str | None = None, *,
                    patch_type: str = "merge", subresource: str = "",
                    field_manager: str | None = None) -> dict[str, Any]:
        """PATCH with patch_type "merge" (RFC 7386), "strategic" (built-in kinds only) or "json" (RFC 6902)."""
        return await self.request("PATCH", resource_path(kind, namespace, name, subresource), body=patch,
                                  params={"fieldManager": field_manager}, content_type=PATCH_TYPES[patch_type])

    async def merge_patch(self, kind: Kind, name: str, patch: dict[str, Any], namespace: str | None = None, *,
                          subresource: str = "", field_manager: str | None = None) -> dict[str, Any]:
        return await self.patch(kind, name, patch, namespace, subresource=subresource, field_manager=field_manager)

    async def delete(self, kind: Kind, name: str, namespace: str | None = None, *,
                     propagation: str | None = "Background", preconditions: dict[str, str] | None = None,
                     grace_period_seconds: int | None = None) -> dict[str, Any] | None:
        """Delete; None when it was already gone. preconditions: {"uid": ..., "resourceVersion": ...}."""
        options: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if propagation:
            options["propagationPolicy"] = propagation
        if preconditions:
            options["preconditions"] = preconditions
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = grace_period_seconds
        try:
            return await self.request("DELETE", resource_path(kind, namespace, name), body=options)
        except NotFound:
            return None

    async def watch(self, kind: Kind | None = None, namespace: str | None = None, *, resource_version: str = "",
                    label_selector: str | None = None, field_selector: str | None = None,
                    timeout_seconds: int = 290, bookmarks: bool = True,
                    path: str | None = None) -> AsyncIterator[WatchEvent]:
        """Watch events after `resource_version` until the server ends the watch (after about
        timeout_seconds). BOOKMARK events (only metadata.resourceVersion) are yielded: keep their version.
        Raises Gone when the version is too old (list again), KubeApiError for other ERROR events.
        `path` instead of kind: watch any collection path."""
        path = path or resource_path(resource_type(kind), namespace)  # type: ignore[arg-type]
        params = {"watch": "true", "resourceVersion": resource_version or None,
                  "allowWatchBookmarks": "true" if bookmarks else None, "timeoutSeconds": timeout_seconds,
                  "labelSelector": label_selector, "fieldSelector": field_selector}
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=timeout_seconds + 30)
        async with self._send("GET", path, params=params, data=None, content_type="", timeout=timeout) as response:
            buffer = b""
            # Chunks split on newlines, not readline(): one event (a big object) can exceed aiohttp's line limit.
            async for chunk in response.content.iter_any():
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    if event.get("type") == "ERROR":
                        status = event.get("object") or {}
                        raise error_for(int(status.get("code") or 500), status)
                    yield WatchEvent(event["type"], event["object"])


class _Response:
    """`async with` one request's answer, after the retries: auth headers, 401 refresh, backoff, errors."""

    def __init__(self, client: KubeClient, method: str, path: str, params: dict[str, str] | None,
                 data: bytes | None, content_type: str, timeout: aiohttp.ClientTimeout):
        self.client, self.method, self.path, self.params = client, method, path, params
        self.data, self.content_type, self.timeout = data, content_type, timeout
        self._response: aiohttp.ClientResponse | None = None

    async def __aenter__(self) -> aiohttp.ClientResponse:
        client = self.client
        attempt, refreshed = 0, False
        while True:
            headers, token = await client._headers(self.content_type if self.data is not None else None)
            try:
                response = await client.session.request(self.method, self.path, params=self.params,
                                                        data=self.data, headers=headers, timeout=self.timeout)
            except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError) as error:
                # No connection at all: the server never saw the request, any verb may go again. A connection the
                # server closed under it (a kept-alive one, an apiserver restarting): only idempotent verbs.
                never_sent = isinstance(error, aiohttp.ClientConnectorError)
                delay = client.backoff.retry_delay("GET" if never_sent else self.method, 503, None, attempt)
                if delay is None:
                    raise
                attempt += 1
                client.retries += 1
                await asyncio.sleep(delay)
                continue
            if response.status < 400:
                self._response = response
                return response
            text = (await response.read()).decode("utf-8", errors="replace")
            retry_after = response.headers.get("Retry-After")
            response.release()
            if response.status == 401 and not refreshed and await client.tokens.rejected(token):
                refreshed = True
                continue
            delay = client.backoff.retry_delay(self.method, response.status, retry_after, attempt)
            if delay is None:
                raise error_from_text(response.status, text)
            attempt += 1
            client.retries += 1
            await asyncio.sleep(delay)

    async def __aexit__(self, exc_type: object, *exc: object) -> None:
        if self._response is not None:
            # A watch left mid-stream must not hand a half-read connection back to the pool.
            if exc_type is None:
                self._response.release()
            else:
                self._response.close()


def _clean(params: dict[str, Any] | None) -> dict[str, str] | None:
    """Query parameters without the unset ones, as strings."""
    if not params:
        return None
    cleaned = {key: str(value) for key, value in params.items() if value is not None and value != ""}
    return cleaned or None


async def gather_limited(limit: int, coroutines: list) -> list:
    """asyncio.gather with at most `limit` running at once (exceptions returned, not raised)."""
    semaphore = asyncio.Semaphore(limit)

    async def run(coroutine):
        async with semaphore:
            return await coroutine

    return await asyncio.gather(*(run(c) for c in coroutines), return_exceptions=True)


__all__ = ["APPLY_PATCH", "JSON_PATCH", "MERGE_PATCH", "STRATEGIC_MERGE_PATCH", "KubeClient", "WatchEvent",
           "gather_limited", "Gone", "KubeApiError"]

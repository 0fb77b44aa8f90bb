"""The same client for threaded code (the world's pod runner, devplatform scripts): each call runs on the
KubeClient's own event loop in a background thread and blocks the calling thread until it is done.

There is still one client (one connection pool, one token source, the same retries); this is only a doorway into
its loop, safe to use from any number of threads at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

from voxfleet.kube.client import KubeClient, WatchEvent
from voxfleet.kube.credentials import Credentials
from voxfleet.kube.resources import Kind

T = TypeVar("T")


class BlockingKubeClient:
    """Synchronous verbs with the signatures of KubeClient's (see there); `watch` is a plain iterator."""

    def __init__(self, credentials: Credentials, **client_options: Any):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="voxfleet-kube", daemon=True)
        self._thread.start()
        self.client = KubeClient(credentials, **client_options)
        self.server = self.client.server
        self.credentials = credentials
        self._closed = False

    @classmethod
    def from_kubeconfig(cls, kubeconfig: str | Path | None = None, *, context: str | None = None,
                        **client_options: Any) -> "BlockingKubeClient":
        return cls(Credentials.load(kubeconfig, context=context), **client_options)

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if threading.current_thread() is self._thread or self._closed:
            coroutine.close()
            if self._closed:  # a stopped loop would never run the call: the caller would wait forever
                raise RuntimeError("BlockingKubeClient is closed")
            raise RuntimeError("BlockingKubeClient called from its own event loop: use .client (async) there")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def close(self) -> None:
        """Close the pool and stop the loop; calls blocked in other threads (a watch) raise CancelledError."""
        if self._closed:
            return
        self._closed = True

        async def shutdown() -> None:
            current = asyncio.current_task()
            for task in asyncio.all_tasks():
                if task is not current:
                    task.cancel()
            await self.client.aclose()

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=10)
        except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError):
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._loop.is_running():
            self._loop.close()

    def __enter__(self) -> "BlockingKubeClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- verbs (see KubeClient) -------------------------------------------------------------------------------

    def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        return self._run(self.client.request(method, path, **kwargs))

    def get(self, kind: Kind, name: str, namespace: str | None = None, **kwargs: Any) -> dict[str, Any]:
        return self._run(self.client.get(kind, name, namespace, **kwargs))

    def get_or_none(self, kind: Kind, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        return self._run(self.client.get_or_none(kind, name, namespace))

    def list(self, kind: Kind, namespace: str | None = None, **kwargs: Any) -> dict[str, Any]:
        return self._run(self.client.list(kind, namespace, **kwargs))

    def create(self, manifest: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return self._run(self.client.create(manifest, **kwargs))

    def replace(self, manifest: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return self._run(self.client.replace(manifest, **kwargs))

    def apply(self, manifest: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return self._run(self.client.apply(manifest, **kwargs))

    def patch(self, kind: Kind, name: str, patch: Any, namespace: str | None = None,
              **kwargs: Any) -> dict[str, Any]:
        return self._run(self.client.patch(kind, name, patch, namespace, **kwargs))

    def merge_patch(self, kind: Kind, name: str, patch: dict[str, Any], namespace: str | None = None,
                    **kwargs: Any) -> dict[str, Any]:
        return self._run(self.client.merge_patch(kind, name, patch, namespace, **kwargs))

    def delete(self, kind: Kind, name: str, namespace: str | None = None, **kwargs: Any) -> dict[str, Any] | None:
        return self._run(self.client.delete(kind, name, namespace, **kwargs))

    def watch(self, kind: Kind | None = None, namespace: str | None = None, **kwargs: Any) -> Iterator[WatchEvent]:
        """KubeClient.watch as a blocking iterator; leaving the loop early closes the watch."""
        events = self.client.watch(kind, namespace, **kwargs)
        try:
            while True:
                try:
                    yield self._run(events.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            try:
                self._run(events.aclose())
            except (RuntimeError, concurrent.futures.CancelledError):
                pass  # closed meanwhile: the loop's shutdown closed the watch

"""One small HTTP server for the kubelet and Prometheus: /healthz (liveness), /readyz and /metrics."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from voxfleet.operator.metrics import OperatorMetrics


class HealthServer:
    def __init__(self, metrics: OperatorMetrics, *, live: Callable[[], str | None],
                 ready: Callable[[], str | None], host: str, port: int):
        """live/ready return None when fine, else the reason (shown in the 503 body)."""
        self.metrics, self.live, self.ready = metrics, live, ready
        self.host, self.port = host, port
        self._runner: web.AppRunner | None = None

    async def start(self) -> int:
        app = web.Application()
        app.router.add_get("/healthz", self._probe(self.live))
        app.router.add_get("/readyz", self._probe(self.ready))
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # the real port when 0 was asked for
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _probe(self, check: Callable[[], str | None]):
        async def handler(_: web.Request) -> web.Response:
            problem = check()
            if problem:
                return web.json_response({"ok": False, "reason": problem}, status=503)
            return web.json_response({"ok": True})
        return handler

    async def _metrics(self, _: web.Request) -> web.Response:
        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

"""A real HTTP proxy on 127.0.0.1 in front of the world's apiserver that answers the next requests of a verb
with a scripted error (a 5xx, with or without Retry-After) and forwards everything else, as an overloaded load
balancer or apiserver would: the client under test speaks plain HTTP to it, the proxy forwards as an admin."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from voxfleet.kube.client import KubeClient


@dataclass
class Failure:
    method: str
    status: int
    retry_after: str | None = None


@dataclass
class FailingProxy:
    upstream: KubeClient
    failures: list[Failure] = field(default_factory=list)
    seen: list[tuple[str, str, int]] = field(default_factory=list)  # (method, path, status answered)
    url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self) -> "FailingProxy":
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        failure = next((f for f in self.failures if f.method == request.method), None)
        if failure is not None:
            self.failures.remove(failure)
            self.seen.append((request.method, request.path, failure.status))
            headers = {"Retry-After": failure.retry_after} if failure.retry_after else {}
            return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": failure.status,
                                      "reason": "ServiceUnavailable", "message": "scripted by the test proxy"},
                                     status=failure.status, headers=headers)
        body = await request.read()
        headers, _ = await self.upstream._headers(request.headers.get("Content-Type") if body else None)
        async with self.upstream.session.request(request.method, request.path_qs, data=body or None,
                                                 headers=headers) as answer:
            payload = await answer.read()
            self.seen.append((request.method, request.path, answer.status))
            return web.Response(body=payload, status=answer.status,
                                content_type=answer.headers.get("Content-Type", "application/json").split(";")[0])

"""The gateway's worker client against a real uvicorn server configured like the worker's control API (uvicorn's
default keep-alive): a dispatch sent when a connection has been idle for the server's keep-alive must not land on
the connection the server is closing (aiohttp retries idempotent requests, never a POST). Every call carries the
token derived for the worker's namespace, never the root, and an address that is no known worker's gets nothing."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from voxfleet.api.wire import DispatchRequest, DispatchResponse, LoadReport, SessionState
from voxfleet.api.worker_credentials import token_for_namespace
from voxfleet.gateway.worker_client import WorkerClient
from voxfleet.world import processes


ROOT = "root-token-of-the-gateway-tests"
SEEN: list[str | None] = []  # the Authorization header of every request the server got


async def _dispatch(request: Request) -> JSONResponse:
    SEEN.append(request.headers.get("authorization"))
    body = DispatchRequest.model_validate_json(await request.body())
    state = SessionState(session_id=body.session_id, tenant=body.tenant, agent=body.agent, region=body.region,
                         room=body.room, phase="active", started_at=datetime.now(timezone.utc))
    load = LoadReport(worker="w", tenant=body.tenant, agent=body.agent, region=body.region, capacity=10, active=1,
                      free=9, ready=True, draining=False)
    return JSONResponse(DispatchResponse(session=state, load=load).to_wire(), status_code=201)


def _request(index: int) -> DispatchRequest:
    return DispatchRequest(session_id=f"session-{index:04d}", tenant="acme", agent="desk", region="us-east",
                           room=f"acme.desk.s{index}", livekit_url="ws://x", livekit_token="t",
                           agent_identity=f"vf-agent.{index}.pod")


async def _server() -> tuple[uvicorn.Config, uvicorn.Server, asyncio.Task]:
    config = uvicorn.Config(Starlette(routes=[Route("/v1/dispatch", _dispatch, methods=["POST"])]),
                            host="127.0.0.1", port=processes.free_port(), log_level="error", lifespan="off")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    return config, server, serving


async def test_each_call_carries_its_namespaces_token_and_unknown_addresses_get_nothing():
    config, server, serving = await _server()
    namespaces = {"127.0.0.1": "tenant-acme"}
    client = WorkerClient(ROOT, config.port, timeout=2.0, namespace_at=namespaces.get)
    SEEN.clear()
    try:
        assert (await client.dispatch("127.0.0.1", _request(1))).answer == "accepted"
        namespaces["127.0.0.1"] = "tenant-other"  # the address now belongs to another tenant's pod
        assert (await client.dispatch("127.0.0.1", _request(2))).answer == "accepted"
        del namespaces["127.0.0.1"]  # no known worker there any more
        unknown = await client.dispatch("127.0.0.1", _request(3))
    finally:
        await client.aclose()
        server.should_exit = True
        await serving
    print(f"requests the server got: {len(SEEN)}; the unknown address: {unknown.answer} ({unknown.detail})")
    assert SEEN == [f"Bearer {token_for_namespace(ROOT, 'tenant-acme')}",
                    f"Bearer {token_for_namespace(ROOT, 'tenant-other')}"]
    assert unknown.answer == "error" and "no known worker" in unknown.detail


async def test_a_dispatch_after_the_workers_keep_alive_idle_is_not_lost():
    config, server, serving = await _server()
    client = WorkerClient(ROOT, config.port, timeout=2.0, namespace_at=lambda ip: "tenant-acme")
    answers = []
    try:
        # With the client keeping idle connections longer than the server (it was 30 s), every other one of
        # these failed with ServerDisconnectedError: the POST went out on the connection being closed.
        for index in range(4):
            outcome = await client.dispatch("127.0.0.1", _request(index))
            answers.append(outcome.answer if outcome.answer == "accepted" else f"{outcome.answer}: {outcome.detail}")
            await asyncio.sleep(config.timeout_keep_alive)
    finally:
        await client.aclose()
        server.should_exit = True
        await serving
    assert answers == ["accepted"] * 4

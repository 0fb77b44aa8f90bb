"""The gateway's worker client against a real uvicorn server configured like the worker's control API (uvicorn's
default keep-alive): a dispatch sent when a connection has been idle for the server's keep-alive must not land on
the connection the server is closing (aiohttp retries idempotent requests, never a POST)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from voxfleet.api.wire import DispatchRequest, DispatchResponse, LoadReport, SessionState
from voxfleet.gateway.worker_client import WorkerClient
from voxfleet.world import processes


async def _dispatch(request: Request) -> JSONResponse:
    body = DispatchRequest.model_validate_json(await request.body())
    state = SessionState(session_id=body.session_id, tenant=body.tenant, agent=body.agent, region=body.region,
                         room=body.room, phase="active", started_at=datetime.now(timezone.utc))
    load = LoadReport(worker="w", tenant=body.tenant, agent=body.agent, region=body.region, capacity=10, active=1,
                      free=9, ready=True, draining=False)
    return JSONResponse(DispatchResponse(session=state, load=load).to_wire(), status_code=201)


async def test_a_dispatch_after_the_workers_keep_alive_idle_is_not_lost():
    port = processes.free_port()
    config = uvicorn.Config(Starlette(routes=[Route("/v1/dispatch", _dispatch, methods=["POST"])]),
                            host="127.0.0.1", port=port, log_level="error", lifespan="off")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    client = WorkerClient("token", port, timeout=2.0)
    answers = []
    try:
        # With the client keeping idle connections longer than the server (it was 30 s), every other one of
        # these failed with ServerDisconnectedError: the POST went out on the connection being closed.
        for index in range(4):
            request = DispatchRequest(session_id=f"session-{index:04d}", tenant="acme", agent="desk",
                                      region="us-east", room=f"acme.desk.s{index}", livekit_url="ws://x",
                                      livekit_token="t", agent_identity=f"vf-agent.{index}.pod")
            outcome = await client.dispatch("127.0.0.1", request)
            answers.append(outcome.answer if outcome.answer == "accepted" else f"{outcome.answer}: {outcome.detail}")
            await asyncio.sleep(config.timeout_keep_alive)
    finally:
        await client.aclose()
        server.should_exit = True
        await serving
    assert answers == ["accepted"] * 4

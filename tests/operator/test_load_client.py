"""The scaler's `GET /v1/load` client against real HTTP servers on 127.0.0.1: keep-alive reuse, chunked bodies,
refusals, slow and oversized answers, and the LoadPoller's staleness rules on top of it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import pytest
from aiohttp import web

from voxfleet.api.worker_credentials import token_for_namespace
from voxfleet.operator.cluster_view import PodView
from voxfleet.operator.load_client import MAX_BODY, LoadClient, LoadError
from voxfleet.operator.load_poller import LoadPoller
from voxfleet.operator.metrics import OperatorMetrics

TOKEN = "t0ken"
REPORT = {"worker": "w-1", "tenant": "acme", "agent": "support", "region": "us-east", "capacity": 4, "active": 3,
          "free": 1, "ready": True, "draining": False, "configHash": "abc", "idleSeconds": 0.0}


@contextlib.asynccontextmanager
async def load_server(token: str = TOKEN):
    """A real HTTP server on 127.0.0.1 whose answer the test picks (mode); it accepts only `token`."""
    state = {"mode": "ok", "transports": set(), "report": dict(REPORT), "seen": []}

    async def load(request: web.Request) -> web.StreamResponse:
        state["transports"].add(id(request.transport))  # one transport per TCP connection
        state["seen"].append(request.headers.get("Authorization"))
        if request.headers.get("Authorization") != f"Bearer {token}":
            return web.json_response({"code": "unauthorized"}, status=401)
        mode = state["mode"]
        if mode == "slow":
            await asyncio.sleep(2)
        if mode == "chunked":
            response = web.StreamResponse()
            response.enable_chunked_encoding()
            await response.prepare(request)
            body = json.dumps(state["report"]).encode()
            await response.write(body[:10])
            await response.write(body[10:])
            await response.write_eof()
            return response
        if mode == "huge":
            return web.Response(body=b"x" * (MAX_BODY + 1), content_type="application/json")
        if mode == "close":
            return web.json_response(state["report"], headers={"Connection": "close"})
        return web.json_response(state["report"])

    app = web.Application()
    app.router.add_get("/v1/load", load)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield site._server.sockets[0].getsockname()[1], state
    finally:
        await runner.cleanup()


async def test_keep_alive_and_answers():
    async with load_server() as (port, state):
        client = LoadClient(port)
        for _ in range(5):
            assert json.loads(await client.get("127.0.0.1", TOKEN, 2.0))["active"] == 3
        assert len(state["transports"]) == 1  # one connection, reused
        state["mode"] = "chunked"
        assert json.loads(await client.get("127.0.0.1", TOKEN, 2.0)) == REPORT
        state["mode"] = "close"
        await client.get("127.0.0.1", TOKEN, 2.0)
        state["mode"] = "ok"
        await client.get("127.0.0.1", TOKEN, 2.0)
        assert len(state["transports"]) == 2  # the server said close: a new connection afterwards
        await client.close()


@pytest.mark.parametrize(("mode", "token", "message"), [
    ("ok", "wrong", "HTTP 401"),
    ("slow", TOKEN, "TimeoutError"),
    ("huge", TOKEN, "too large"),
])
async def test_refusals_are_load_errors(mode, token, message):
    async with load_server() as (port, state):
        state["mode"] = mode
        client = LoadClient(port)
        with pytest.raises(LoadError, match=message):
            await client.get("127.0.0.1", token, 0.5)
        state["mode"] = "ok"
        assert json.loads(await client.get("127.0.0.1", TOKEN, 2.0))["free"] == 1  # and the next poll works
        await client.close()


async def test_nothing_listening_is_a_load_error():
    client = LoadClient(1)  # port 1: refused
    with pytest.raises(LoadError):
        await client.get("127.0.0.1", TOKEN, 1.0)


ROOT = "root-worker-token-of-the-platform"


async def test_poller_keeps_a_report_until_it_is_stale():
    async with load_server(token=token_for_namespace(ROOT, "ns")) as (port, state):
        poller = LoadPoller(lambda: ROOT, port=port, timeout=0.5, concurrency=8, stale_after=0.3,
                            metrics=OperatorMetrics())
        pod = PodView("ns", "w-1", "uid-1", "support", "us-east", "127.0.0.1", True, False, "abc", None)
        assert await poller.poll([pod]) == []
        assert poller.fresh("uid-1", time.monotonic()).active == 3
        state["report"] = {**REPORT, "free": -1}  # nonsense from a worker: refused by the contract model
        assert await poller.poll([pod]) == [pod]
        assert poller.fresh("uid-1", time.monotonic()).active == 3  # the last good one still counts...
        await asyncio.sleep(0.35)
        assert poller.fresh("uid-1", time.monotonic()) is None  # ...until it is stale
        assert "uid-1" in poller.ever_reported
        assert await poller.poll([]) == [] and poller.reports == {}  # gone pods are forgotten
        await poller.close()


async def test_poller_sends_each_pod_its_namespace_token_never_the_root():
    """The worker of namespace "ns" accepts only the token derived for "ns": a pod that claims another namespace
    (the same address, labelled elsewhere) is asked with that namespace's token and refused."""
    async with load_server(token=token_for_namespace(ROOT, "ns")) as (port, state):
        poller = LoadPoller(lambda: ROOT, port=port, timeout=0.5, concurrency=8, stale_after=5,
                            metrics=OperatorMetrics())
        mine = PodView("ns", "w-1", "uid-1", "support", "us-east", "127.0.0.1", True, False, "abc", None)
        other = PodView("other-ns", "w-2", "uid-2", "support", "us-east", "127.0.0.1", True, False, "abc", None)
        assert await poller.poll([mine]) == []
        assert await poller.poll([other]) == [other]
        sent = set(state["seen"])
        print(f"authorizations sent: {len(state['seen'])}, distinct: {len(sent)}")
        assert sent == {f"Bearer {token_for_namespace(ROOT, 'ns')}", f"Bearer {token_for_namespace(ROOT, 'other-ns')}"}
        assert f"Bearer {ROOT}" not in sent
        await poller.close()


async def test_sweep_listeners_hear_every_polled_pods_calls_and_a_failing_listener_harms_nothing():
    """What eviction safety reads: each worker pod's live calls after every sweep, unknown (None) once stale."""
    async with load_server(token=token_for_namespace(ROOT, "ns")) as (port, state):
        poller = LoadPoller(lambda: ROOT, port=port, timeout=0.3, concurrency=8, stale_after=3.0,
                            metrics=OperatorMetrics())
        heard: list[list] = []

        def broken(_calls: list) -> None:
            raise RuntimeError("a listener's bug")

        poller.add_listener(broken)
        poller.add_listener(heard.append)
        pod = PodView("ns", "w-1", "uid-1", "support", "us-east", "127.0.0.1", True, False, "abc", None)
        assert await poller.poll([pod]) == []
        [calls] = heard[-1]
        assert (calls.namespace, calls.pod, calls.uid, calls.active, calls.draining) == ("ns", "w-1", "uid-1", 3, False)
        state["report"] = {**REPORT, "active": 1, "free": 0, "draining": True}
        await poller.poll([pod])
        assert (heard[-1][0].active, heard[-1][0].draining) == (1, True)
        state["mode"] = "slow"  # silent from now on: the last report holds until stale, then unknown
        await poller.poll([pod])
        assert heard[-1][0].active == 1
        await asyncio.sleep(3.0)
        assert poller.calls(pod).active is None
        print(f"sweeps heard: {len(heard)}; last: {heard[-1]}")
        assert len(heard) == 3
        await poller.close()

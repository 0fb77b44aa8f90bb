"""A stand-in worker for gateway tests: a real HTTP server process that honours the worker control API contract
(voxfleet.api.wire) with N slots and nothing else: no models, no pipeline, so dozens start in a second.

    python standin_worker.py --host $(POD_IP) --port 8080 --slots 2 --tenant t --agent a --region us-east \
        [--pod NAME] [--join-rooms] [--call-seconds S]

- POST /v1/dispatch: DispatchRequest -> 201 DispatchResponse; 409 worker_full / draining; idempotent per
  session id (a repeat answers the same session); 401 without the worker token (VOXFLEET_WORKER_TOKEN).
- GET/DELETE /v1/sessions/{id}, GET /v1/load, /healthz, /readyz (503 while draining).
- SIGTERM: drain (409 draining, /readyz 503), exit when the last session ends (or after --drain-seconds).
- --join-rooms: join each session's LiveKit room with the dispatched token as the agent participant (publishing
  a silent microphone track), leave when the session ends (so tests see the agent in the region's room).
- --call-seconds S: every session ends by itself S seconds after its dispatch (a caller hanging up), so a load
  test's slots recycle without a DELETE per session.
- --hang: every control-API call (/v1/...) is accepted and never answered (a stuck worker): the gateway's
  call times out while holding its connection.
- GET /v1/sessions/{id}/report: an end-of-call report (voxfleet.api.call_report.WorkerCallReport) with no turns
  and no usage, complete once the session ended; POST /test/report/{id} sets the raw body served instead (a
  worker made to forge its report: another session's id, an oversized body, negative usage).
- GET /test/calls: how many control-API calls (/v1/...) arrived, with or without a valid token.
- GET /test/dispatches: what the gateway sent (without the LiveKit token): for trace-context assertions.
- POST /test/crash: exit at once (a crashed worker); POST /test/leave/{id}: the agent participant leaves its
  room while the session stays active (a worker that lost its room connection).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import hmac
import os
import signal
import time
from datetime import datetime, timezone

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from voxfleet.api.wire import DispatchRequest, DispatchResponse, ErrorBody, LoadReport, SessionState


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(ErrorBody(code=code, message=message).to_wire(), status_code=status)


class StandIn:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.token = os.environ["VOXFLEET_WORKER_TOKEN"].encode()
        self.sessions: dict[str, SessionState] = {}
        self.active_ids: set[str] = set()
        self.dispatches: collections.deque[dict] = collections.deque(maxlen=10000)
        self.control_calls = 0
        self.draining = False
        self.idle_since = time.monotonic()
        self.rooms: dict[str, asyncio.Task] = {}
        self.stop = asyncio.Event()
        self.forged_reports: dict[str, bytes] = {}

    def active(self) -> int:
        return len(self.active_ids)

    def load(self) -> LoadReport:
        active = self.active()
        free = 0 if self.draining else max(0, self.args.slots - active)
        return LoadReport(worker=self.args.pod, tenant=self.args.tenant, agent=self.args.agent, region=self.args.region,
                          capacity=self.args.slots, active=active, free=free, ready=not self.draining,
                          draining=self.draining, idle_seconds=0.0 if active else time.monotonic() - self.idle_since)

    def end(self, session_id: str, reason: str) -> SessionState | None:
        state = self.sessions.get(session_id)
        if state is None:
            return None
        if state.phase != "ended":
            state = state.model_copy(update={"phase": "ended", "ended_at": datetime.now(timezone.utc),
                                             "end_reason": reason})
            self.sessions[session_id] = state
            self.active_ids.discard(session_id)
            task = self.rooms.pop(session_id, None)
            if task is not None:
                task.cancel()
            if self.active() == 0:
                self.idle_since = time.monotonic()
                if self.draining:
                    self.stop.set()
        return state

    async def join(self, request: DispatchRequest) -> None:
        from livekit import rtc

        room = rtc.Room()
        try:
            await room.connect(request.livekit_url, request.livekit_token)
            # Publish a (silent) microphone like a real agent: LiveKit announces a participant that publishes
            # nothing only seconds later, which would hide the gateway's own timing.
            track = rtc.LocalAudioTrack.create_audio_track("agent", rtc.AudioSource(48000, 1))
            await room.local_participant.publish_track(
                track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))
            await asyncio.Event().wait()  # stay until the session ends
        finally:
            await room.disconnect()


def build_app(standin: StandIn) -> FastAPI:
    app = FastAPI()

    def authorised(request: Request) -> bool:
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(presented.encode(), standin.token)

    @app.middleware("http")
    async def auth(request: Request, call_next):
        if request.url.path.startswith("/v1/"):
            standin.control_calls += 1
        if request.url.path.startswith(("/v1/", "/test/")) and not authorised(request):
            return _error(401, "unauthorized", "missing or wrong worker token")
        if standin.args.hang and request.url.path.startswith("/v1/"):
            await asyncio.Event().wait()  # never answers; the caller's timeout ends it
        return await call_next(request)

    @app.post("/v1/dispatch")
    async def dispatch(request: Request):
        try:
            body = DispatchRequest.model_validate_json(await request.body())
        except ValidationError as error:
            return _error(422, "invalid_request", f"{error.error_count()} invalid field(s)")
        known = standin.sessions.get(body.session_id)
        if known is not None:
            return JSONResponse(DispatchResponse(session=known, load=standin.load()).to_wire(), status_code=201)
        if standin.draining:
            return _error(409, "draining", "the worker is draining")
        if standin.active() >= standin.args.slots:
            return _error(409, "worker_full", "all slots are taken")
        state = SessionState(session_id=body.session_id, tenant=body.tenant, agent=body.agent, region=body.region,
                             room=body.room, phase="active", started_at=datetime.now(timezone.utc),
                             recovery=body.recovery)
        standin.sessions[body.session_id] = state
        standin.active_ids.add(body.session_id)
        if standin.args.call_seconds > 0:  # the caller hangs up
            asyncio.get_running_loop().call_later(standin.args.call_seconds, standin.end, body.session_id,
                                                  "caller-left")
        record = body.model_dump(mode="json", by_alias=True, exclude={"livekit_token"})
        record["traceparentHeader"] = request.headers.get("traceparent")
        standin.dispatches.append(record)
        if standin.args.join_rooms:
            standin.rooms[body.session_id] = asyncio.create_task(standin.join(body))
        return JSONResponse(DispatchResponse(session=state, load=standin.load()).to_wire(), status_code=201)

    @app.get("/v1/sessions/{session_id}")
    async def get_session(session_id: str):
        state = standin.sessions.get(session_id)
        if state is None:
            return _error(404, "session_not_found", "no such session on this worker")
        return JSONResponse(state.to_wire())

    @app.delete("/v1/sessions/{session_id}")
    async def delete_session(session_id: str):
        state = standin.end(session_id, "deleted")
        if state is None:
            return _error(404, "session_not_found", "no such session on this worker")
        return JSONResponse(state.to_wire())

    @app.get("/v1/sessions/{session_id}/report")
    async def get_report(session_id: str):
        from fastapi import Response

        from voxfleet.api.call_report import WorkerCallReport

        if session_id in standin.forged_reports:
            return Response(standin.forged_reports[session_id], media_type="application/json")
        state = standin.sessions.get(session_id)
        if state is None:
            return _error(404, "session_not_found", "no such session on this worker")
        report = WorkerCallReport(session_id=session_id, worker=standin.args.pod, complete=state.phase == "ended",
                                  started_at=state.started_at, ended_at=state.ended_at, end_reason=state.end_reason,
                                  recovered=state.recovery)
        return JSONResponse(report.to_wire())

    @app.post("/test/report/{session_id}")
    async def forge_report(session_id: str, request: Request):
        standin.forged_reports[session_id] = await request.body()
        return {"status": "forged"}

    @app.get("/v1/load")
    async def load():
        return JSONResponse(standin.load().to_wire())

    @app.get("/test/calls")
    async def calls():
        return JSONResponse({"controlCalls": standin.control_calls})

    @app.get("/test/dispatches")
    async def dispatches():
        return JSONResponse(list(standin.dispatches))

    @app.post("/test/crash")
    async def crash():
        asyncio.get_running_loop().call_later(0.05, os._exit, 1)  # die like a crashed process: no drain, no leave
        return {"status": "crashing"}

    @app.post("/test/leave/{session_id}")
    async def leave(session_id: str):
        task = standin.rooms.pop(session_id, None)  # the agent drops out of the room; the session stays "active"
        if task is not None:
            task.cancel()
        return {"status": "left" if task else "not_in_room"}

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz():
        if standin.draining:
            return _error(503, "draining", "draining")
        return {"status": "ready"}

    return app


async def serve(args: argparse.Namespace) -> None:
    if args.join_rooms:  # load LiveKit's native library now: loading it on the first call stalls the server
        from livekit import rtc

        rtc.AudioSource(48000, 1)
    standin = StandIn(args)
    server = uvicorn.Server(uvicorn.Config(build_app(standin), host=args.host, port=args.port, log_level="warning",
                                           access_log=False))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  (we drain on SIGTERM)
    loop = asyncio.get_running_loop()

    def drain() -> None:
        standin.draining = True
        if standin.active() == 0:
            standin.stop.set()
        loop.call_later(args.drain_seconds, standin.stop.set)

    loop.add_signal_handler(signal.SIGTERM, drain)
    loop.add_signal_handler(signal.SIGINT, drain)
    serving = asyncio.create_task(server.serve())
    await standin.stop.wait()
    server.should_exit = True
    await serving


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--agent", required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--pod", default=os.environ.get("HOSTNAME", "standin"))
    parser.add_argument("--join-rooms", action="store_true")
    parser.add_argument("--drain-seconds", type=float, default=30.0)
    parser.add_argument("--call-seconds", type=float, default=0.0, help="end each session after this long (0: never)")
    parser.add_argument("--hang", action="store_true", help="accept control-API calls and never answer them")
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()

"""`POST /livekit/webhook[/{region}]`: LiveKit's room events, verified before anything reads them.

LiveKit signs each delivery with a JWT (issuer = its API key) carrying the SHA-256 of the body; livekit-api's
WebhookReceiver checks both. A tampered body, a wrong key or an expired token is 401. A replay is refused too:
an event id seen before is 409, and an event older than ``webhook_max_age_seconds`` is 400 (the token itself
is valid for 5 minutes). Each replica remembers the ids it saw for that window; the handlers are idempotent
besides (a repeated dispatch of one session id answers the same session), so a replay to another replica
cannot double a call either.

Point each LiveKit at ``/livekit/webhook/<region>`` (any region it serves) so an event says which LiveKit the
room lives on; plain ``/livekit/webhook`` works when the signing key identifies one LiveKit.
"""

from __future__ import annotations

import time

import jwt
import structlog
from fastapi import APIRouter, Path, Request
from livekit import api
from livekit.protocol import webhook as webhook_proto

from voxfleet.api.model_base import DNS_LABEL
from voxfleet.api import room_names
from voxfleet.gateway.api_errors import ApiError, documented
from voxfleet.gateway.call_reports import call_reports_of
from voxfleet.gateway.runtime import GatewayRuntime, runtime_of

log = structlog.get_logger(__name__)

router = APIRouter(tags=["livekit"])
_FUTURE_SKEW_SECONDS = 60


def _candidate_regions(runtime: GatewayRuntime, region: str | None, token: str) -> list[str]:
    regions = runtime.settings.regions
    if region is not None:
        if region not in regions:
            raise ApiError(404, "unknown_region", f"This gateway serves no region {region!r}.")
        return [region]
    try:
        issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
    except jwt.PyJWTError:
        raise _refused("the Authorization header is not a LiveKit webhook token") from None
    return [name for name, settings in regions.items() if settings.api_key == issuer]


def _refused(why: str) -> ApiError:
    return ApiError(401, "invalid_signature", f"Webhook refused: {why}.")


def verify(runtime: GatewayRuntime, body: bytes, authorization: str, region: str | None
           ) -> tuple[webhook_proto.WebhookEvent, list[str]]:
    """The verified event and the regions whose LiveKit may have sent it (401 when nothing verifies)."""
    token = authorization.removeprefix("Bearer ").strip()
    if not token:
        raise ApiError(401, "missing_signature", "Webhook refused: no Authorization token.")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_body", "Webhook body is not UTF-8.") from None
    candidates = _candidate_regions(runtime, region, token)
    tried: set[tuple[str, str]] = set()
    for name in candidates:
        settings = runtime.settings.regions[name]
        key = (settings.api_key, settings.api_secret.get_secret_value())
        if key in tried:
            continue
        tried.add(key)
        receiver = api.WebhookReceiver(api.TokenVerifier(*key))
        try:
            event = receiver.receive(text, token)
        except Exception:  # noqa: BLE001 - jwt errors, hash mismatch, bad JSON: all mean "not from LiveKit"
            continue
        return event, [n for n in candidates if (runtime.settings.regions[n].api_key,
                                                  runtime.settings.regions[n].api_secret.get_secret_value()) == key]
    raise _refused("the signature or the body hash does not verify with this region's LiveKit key")


def _livekit_region(runtime: GatewayRuntime, event: webhook_proto.WebhookEvent, regions: list[str]) -> str:
    """Which region's LiveKit sent the event (rooms are per LiveKit, not per region)."""
    urls = {runtime.settings.regions[r].url for r in regions}
    if len(urls) == 1:
        return regions[0]
    found = runtime.recovery.room_session(event.room) if event.HasField("room") else None
    if found is not None and found.ref is not None and found.ref.region in regions:
        return found.ref.region
    raise ApiError(400, "ambiguous_livekit", "Several LiveKits share this signing key; point each at"
                                             " /livekit/webhook/<region>.")


@router.post("/livekit/webhook", summary="LiveKit webhook (signed by LiveKit)", response_model=dict,
             responses=documented(400, 401, 409, 413))
async def livekit_webhook(request: Request) -> dict:
    return await _handle(request, None)


@router.post("/livekit/webhook/{region}", summary="LiveKit webhook of one region's LiveKit", response_model=dict,
             responses=documented(400, 401, 404, 409, 413, 422))
async def livekit_region_webhook(request: Request,
                                 region: str = Path(max_length=63, pattern=DNS_LABEL)) -> dict:
    return await _handle(request, region)


async def _handle(request: Request, region: str | None) -> dict:
    runtime = runtime_of(request)
    body = await request.body()
    try:
        event, regions = verify(runtime, body, request.headers.get("authorization", ""), region)
    except ApiError as refused:
        runtime.metrics.webhooks.labels("unverified", refused.code).inc()
        raise
    now = time.time()
    if event.created_at and not (now - runtime.settings.webhook_max_age_seconds <= event.created_at
                                 <= now + _FUTURE_SKEW_SECONDS):
        runtime.metrics.webhooks.labels(event.event, "stale").inc()
        raise ApiError(400, "stale_event", "Webhook refused: the event is too old (or from the future).")
    if not event.id or not runtime.webhook_replays.first_time(event.id):
        runtime.metrics.webhooks.labels(event.event, "replayed").inc()
        raise ApiError(409, "duplicate_event", "Webhook refused: this event id was delivered before.")
    livekit_region = _livekit_region(runtime, event, regions)
    events = runtime.room_events
    if event.event == "room_started":
        result = await events.room_started(livekit_region, event.room)
    elif event.event in ("participant_left", "participant_connection_aborted"):
        result = await events.participant_left(livekit_region, event.room, event.participant)
    elif event.event == "room_finished":
        result = await events.room_finished(event.room)
    else:
        result = "ignored"
    _look_for_call_report(request, event)
    runtime.metrics.webhooks.labels(event.event, result).inc()
    log.info("livekit event", livekit_event=event.event, room=event.room.name if event.HasField("room") else "",
             result=result, region=livekit_region)
    return {"event": event.event, "result": result}


def _look_for_call_report(request: Request, event: webhook_proto.WebhookEvent) -> None:
    """The room closed or its caller left: the call has ended or is ending; its report is pulled from its worker
    soon (gateway/call_reports.py; the sweeper catches what this misses)."""
    reports = call_reports_of(request.app)
    if reports is None or not event.HasField("room"):
        return
    if event.event == "room_finished":
        reports.room_ended(event.room)
    elif event.event in ("participant_left", "participant_connection_aborted") \
            and not room_names.is_agent_identity(event.participant.identity):
        reports.room_ended(event.room, event.participant)

"""The call history as the tenant reads it: what one page of `GET /v1/sessions` asks for (its query, judged as
hostile input: every problem is a 422 naming the parameter), and what each call looks like in it.

The SQL is in voxfleet.store.session_records; the cursor in voxfleet.gateway.history_cursors.
"""

from __future__ import annotations

import re
import statistics
from datetime import datetime
from typing import Any, Literal, get_args

from fastapi import Request
from pydantic import Field

from voxfleet.api.call_report import CallReport, ReportEndReason, TranscriptLine
from voxfleet.api.model_base import DNS_LABEL, ApiModel
from voxfleet.gateway import history_cursors
from voxfleet.gateway.api_errors import ApiError
from voxfleet.store.session_records import HistoryFilter, PagePosition

DEFAULT_PAGE = 50
MAX_PAGE = 200
LIST_PARAMETERS = ("limit", "cursor", "agent", "from", "to", "endReason", "status")
END_REASONS = get_args(ReportEndReason)
STATUSES = ("live", "ended")

SessionStatus = Literal["live", "ended"]


class SessionSummary(ApiModel):
    """One call in a history page (its report and transcript: GET /v1/sessions/{id})."""

    session_id: str
    agent: str
    region: str
    room: str
    channel: str
    status: SessionStatus = Field(description="live: the call is running (or its end is not yet recorded); ended.")
    started_at: datetime
    ended_at: datetime | None = None
    end_reason: str | None = Field(default=None, description="Why the call ended (ReportEndReason).")
    duration_ms: int | None = None
    cost_micros: int | None = Field(default=None, description="What the call cost, in millionths of the platform's"
                                                              " currency (once ended).")
    turns: int | None = Field(default=None, description="Caller turns in the report (once ended).")
    ttfa_median_ms: int | None = Field(default=None, description="Median time to first audio over the answered"
                                                                 " turns, as the worker measured it.")


class SessionPage(ApiModel):
    items: list[SessionSummary]
    next_cursor: str | None = Field(default=None, description="Pass as `cursor` for the next (older) page; null on"
                                                              " the last page.")


def _bad(field: str, message: str, reason: str = "invalid") -> ApiError:
    return ApiError(422, "invalid_request", f"The request is not valid; see details ({field}).",
                    details=[{"field": field, "message": message, "reason": reason}])


_OFFSET_WITHOUT_PLUS = re.compile(r" (\d\d:?\d\d)$")


def _instant(field: str, value: str) -> datetime:
    """RFC 3339 with a time zone (a bare date or a local time would mean different instants to different
    people)."""
    if len(value) > 40:
        raise _bad(field, "not an RFC 3339 timestamp")
    # "+01:00" sent unencoded in a query string arrives as " 01:00": the one space that cannot mean anything else.
    value = _OFFSET_WITHOUT_PLUS.sub(r"+\1", value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise _bad(field, "not an RFC 3339 timestamp (e.g. 2026-12-01T00:00:00Z)") from None
    if moment.tzinfo is None:
        raise _bad(field, "an RFC 3339 timestamp with a date, a time and a time zone (e.g. 2026-12-01T00:00:00Z)")
    return moment


def page_request(request: Request, *, tenant: str, keys: list[bytes]) -> tuple[HistoryFilter, PagePosition | None,
                                                                              int]:
    """The filter, the position after which the page starts, and its size; 422 naming the parameter otherwise."""
    query = request.query_params
    for name in query.keys():
        if name not in LIST_PARAMETERS:
            raise _bad(name, f"unknown parameter; known: {', '.join(LIST_PARAMETERS)}", "unknown")
        if len(query.getlist(name)) > 1:
            raise _bad(name, "given more than once", "duplicate")
    limit = DEFAULT_PAGE
    if "limit" in query:
        raw = query["limit"]
        if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
            raise _bad("limit", f"an integer from 1 to {MAX_PAGE}", "out_of_range")
        limit = int(raw)
    agent = query.get("agent")
    if agent is not None:
        if len(agent) > 63 or not re.match(DNS_LABEL, agent):
            raise _bad("agent", "an agent name (a DNS label)")
    started_from = _instant("from", query["from"]) if "from" in query else None
    started_to = _instant("to", query["to"]) if "to" in query else None
    if started_from is not None and started_to is not None and started_from > started_to:
        raise _bad("from", "must not be after `to`", "range")
    end_reason = query.get("endReason")
    if end_reason is not None and end_reason not in END_REASONS:
        raise _bad("endReason", f"one of {', '.join(END_REASONS)}")
    status = query.get("status")
    if status is not None and status not in STATUSES:
        raise _bad("status", f"one of {', '.join(STATUSES)}")
    where = HistoryFilter(tenant=tenant, agent=agent, started_from=started_from, started_to=started_to,
                          end_reason=end_reason, status=status)
    after = None
    if "cursor" in query:
        after = history_cursors.decode(query["cursor"], where, keys=keys)
        if after is None:
            raise _bad("cursor", "not a cursor of this listing (it must come from nextCursor of the same query)")
    return where, after, limit


def summary(row: dict[str, Any]) -> SessionSummary:
    turns = row.get("turns")
    ttfas = [t["ttfaMs"] for t in turns or [] if isinstance(t, dict) and isinstance(t.get("ttfaMs"), int)]
    return SessionSummary(
        session_id=row["session_id"], agent=row["agent"], region=row["region"], room=row["room"],
        channel=row["channel"], status=row["status"], started_at=row["started_at"], ended_at=row["ended_at"],
        end_reason=row["end_reason"], duration_ms=row["duration_ms"], cost_micros=row["cost_micros"],
        turns=len(turns) if isinstance(turns, list) else None,
        ttfa_median_ms=round(statistics.median(ttfas)) if ttfas else None)


def report_of(row: dict[str, Any]) -> CallReport | None:
    """The stored report (without its transcript), when the call has ended and has one."""
    if row.get("report") is None:
        return None
    return CallReport.model_validate({**row["report"], "transcript": None})


def transcript_of(row: dict[str, Any]) -> list[TranscriptLine] | None:
    lines = row.get("transcript")
    return None if lines is None else [TranscriptLine.model_validate(line) for line in lines]

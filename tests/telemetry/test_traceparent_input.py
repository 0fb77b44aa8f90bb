"""A caller's `traceparent` is tenant input: whatever it holds, it is at most a link to one well-formed remote
span, never the parent of the platform's spans, and reading it costs little even at the size of a whole header
block. Judged through the real OpenTelemetry W3C propagator the gateway uses (voxfleet.telemetry.tracing)."""

from __future__ import annotations

import time

import pytest
from opentelemetry import trace
from starlette.requests import Request

from voxfleet.gateway.api_errors import _caller_trace_id
from voxfleet.telemetry.tracing import context_from_traceparent, links_from_headers

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
VALID = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
HOSTILE = {
    "garbage": "not a traceparent",
    "version ff": f"ff-{TRACE_ID}-00f067aa0ba902b7-01",
    "zero trace id": "00-" + "0" * 32 + "-00f067aa0ba902b7-01",
    "zero span id": f"00-{TRACE_ID}-" + "0" * 16 + "-01",
    "short trace id": "00-4bf92f35-00f067aa0ba902b7-01",
    "non-hex": f"00-{'g' * 32}-00f067aa0ba902b7-01",
    "newline injection": f"00-{TRACE_ID}-00f067aa0ba902b7-01\ntrace_id=forged",
    "a 64 KiB header": "00-" + "a" * 65536,
    "many fields": "-".join(["00"] * 20000),
}


def _request(traceparent: str) -> Request:
    return Request({"type": "http", "method": "GET", "path": "/v1/agents",
                    "headers": [(b"traceparent", traceparent.encode("latin-1"))]})


def test_a_well_formed_traceparent_is_one_link_and_never_the_current_span():
    links = links_from_headers({"traceparent": VALID})
    assert [format(link.context.trace_id, "032x") for link in links] == [TRACE_ID]
    assert not trace.get_current_span().get_span_context().is_valid  # reading it changed nothing current
    assert _caller_trace_id(_request(VALID)) == TRACE_ID


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_traceparent_is_no_link_no_caller_trace_id_and_cheap(name):
    value = HOSTILE[name]
    started = time.perf_counter()
    links = links_from_headers({"traceparent": value})
    context_valid = trace.get_current_span(context_from_traceparent(value)).get_span_context().is_valid
    caller = _caller_trace_id(_request(value))
    elapsed_ms = (time.perf_counter() - started) * 1000
    print(f"traceparent {name!r} ({len(value)} chars): links {len(links)}, caller_trace_id {caller},"
          f" read in {elapsed_ms:.2f} ms")
    assert links == [] and not context_valid and caller is None
    assert elapsed_ms < 50

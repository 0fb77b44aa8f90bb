"""OTEL tracing through Pipecat's own spans, exported over OTLP when the standard env vars ask for it.

OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) turns it on; OTEL_EXPORTER_OTLP_PROTOCOL
picks grpc (default) or http/protobuf; OTEL_SERVICE_NAME defaults to voxfleet-worker. Each session's
PipelineWorker runs with conversation_id = the session id, so a call is one trace tree.
"""

from __future__ import annotations

import os

import structlog

log = structlog.get_logger("voxfleet.worker.tracing")


def configure_tracing() -> bool:
    """True when spans are exported. Never fails the worker: tracing is an aid, not a dependency."""
    if not (os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")):
        return False
    try:
        from pipecat.utils.tracing.setup import setup_tracing

        if os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc").startswith("http"):
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        else:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        # The exporter reads endpoint, headers, timeout and TLS settings from the standard env vars itself.
        return bool(setup_tracing(service_name=os.environ.get("OTEL_SERVICE_NAME", "voxfleet-worker"),
                                  exporter=OTLPSpanExporter()))
    except Exception as error:  # a bad exporter setting: say so, keep serving calls
        log.warning("tracing disabled", error=str(error))
        return False

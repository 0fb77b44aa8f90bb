"""One tracing setup for every voxfleet component, configured only by the standard OTEL_* environment.

What each variable does here (the OpenTelemetry SDK environment specification; nothing voxfleet-specific):

- ``OTEL_EXPORTER_OTLP_ENDPOINT`` is a BASE URL (``http://otel-collector.monitoring:4318``): over HTTP the
  exporter posts to ``<base>/v1/traces``. ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is the full URL and wins. With
  neither set, spans are made (trace context still flows to the workers and into every log line) but go nowhere:
  the spec's default of localhost would only fill the logs with failed exports.
- ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`` / ``OTEL_EXPORTER_OTLP_PROTOCOL``: ``http/protobuf`` (the spec's
  default) or ``grpc`` (then the endpoint is ``host:port``, as the collector's 4317).
- ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` name the process; each component only supplies a default
  service name, used when neither sets one.
- ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG`` (the SDK default is ``parentbased_always_on``),
  ``OTEL_TRACES_EXPORTER`` (``otlp``, ``console``, ``none``), ``OTEL_SDK_DISABLED``, the ``OTEL_BSP_*`` batch
  settings and the exporter's own headers, timeout, compression and TLS variables: read by the SDK itself.

Call content (transcripts, prompts, LLM messages, tool arguments and results, spoken text) is removed from every
span before it leaves the process unless the process was set up with ``record_content=True``: Pipecat has no
switch of its own for it, and its service spans carry all of it. The filter keeps a list of attributes known to
be free of content, so an attribute a later Pipecat adds stays in the process until someone lists it.

Trace context crosses the platform's own process boundaries as W3C ``traceparent`` (never baggage). What a tenant
sends is not trusted as a parent: each call is its own trace under the platform's sampler, and the tenant's
``traceparent`` becomes a link (``links_from_headers``). As a parent it would pick the call's trace id (one id for
all its calls, merging them into one trace) and, through its sampled flag, whether the platform traces the call.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Link, Status
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes

DEFAULT_PROTOCOL = "http/protobuf"
PROTOCOLS = ("http/protobuf", "grpc")

# Attributes that say how a call went without saying what was said. Everything else is call content (Pipecat:
# transcript, text, input, output, tools, gen_ai.system_instructions, text_output, tools.definitions, user_id, ...).
CONTENT_FREE_KEYS = frozenset({
    "conversation.id", "conversation.type", "is_final", "language", "vad_enabled", "stream", "tool_count",
    "voice_id", "tools.count", "tools.available", "function_calls.count", "audio.data_size_bytes",
    "transcript.is_input", "stt.incomplete", "tts.interrupted", "service.operation", "modalities",
    "exception.type", "exception.escaped", "gen_ai.tool.name", "gen_ai.tool.call.id",
})
CONTENT_FREE_PREFIXES = (
    "voxfleet.", "turn.", "metrics.", "gen_ai.provider.", "gen_ai.operation.", "gen_ai.output.", "gen_ai.request.",
    "gen_ai.usage.", "http.", "url.scheme", "url.path", "server.", "network.", "rpc.", "k8s.",
)
REDACTED_KEYS_ATTRIBUTE = "voxfleet.content_redacted"

_W3C = TraceContextTextMapPropagator()


def is_content_free(key: str) -> bool:
    return key in CONTENT_FREE_KEYS or key.startswith(CONTENT_FREE_PREFIXES)


class ContentFilter(SpanExporter):
    """Exports each span without its call content: the attributes not known to be content-free, the same in its
    events (an exception's message may quote what was said), and the status description (it is str(error)).
    The names of the attributes it removed stay on the span, so a reader sees why a transcript is missing."""

    def __init__(self, exporter: SpanExporter):
        self.exporter = exporter

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.exporter.export([without_content(span) for span in spans])

    def shutdown(self) -> None:
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.exporter.force_flush(timeout_millis)


def without_content(span: ReadableSpan) -> ReadableSpan:
    attributes, removed = _split(span.attributes)
    events = []
    for event in span.events:
        kept, dropped = _split(event.attributes)
        events.append(Event(event.name, kept, event.timestamp))
        removed |= {f"{event.name}:{key}" for key in dropped}
    if removed:
        attributes[REDACTED_KEYS_ATTRIBUTE] = sorted(removed)
    status = Status(span.status.status_code) if span.status.description else span.status
    if not removed and status is span.status:
        return span
    return ReadableSpan(name=span.name, context=span.get_span_context(), parent=span.parent, resource=span.resource,
                        attributes=attributes, events=events, links=span.links, kind=span.kind, status=status,
                        start_time=span.start_time, end_time=span.end_time,
                        instrumentation_scope=span.instrumentation_scope)


def _split(attributes: Attributes) -> tuple[dict, set[str]]:
    kept, removed = {}, set()
    for key, value in (attributes or {}).items():
        if is_content_free(key):
            kept[key] = value
        else:
            removed.add(key)
    return kept, removed


@dataclass
class Tracing:
    """A process's tracer provider and where its spans go (``target`` is for the start-up log line: the
    endpoint, never the exporter's headers, which may hold a collector's credentials)."""

    provider: TracerProvider
    exporting: bool
    target: str
    record_content: bool
    problem: str | None = None  # an OTEL_* value this process could not honour: it exports nothing, and says so

    def tracer(self, name: str) -> trace.Tracer:
        return self.provider.get_tracer(name)

    def shutdown(self) -> None:
        """Exports what is still batched (bounded by OTEL_BSP_EXPORT_TIMEOUT), then stops."""
        self.provider.shutdown()


class TracingConfigError(ValueError):
    """An OTEL_* value this process can't honour; the message names the variable and the accepted values."""


def set_up_tracing(default_service_name: str, *, record_content: bool = False,
                   environ: Mapping[str, str] | None = None) -> Tracing:
    """A tracer provider from the OTEL_* environment. Never fails the component (tracing is an aid, not a
    dependency): a value it can't honour means spans are made but not exported, and ``problem`` says why."""
    environ = os.environ if environ is None else environ
    provider = TracerProvider(resource=resource(default_service_name))  # sampler: OTEL_TRACES_SAMPLER, by the SDK
    try:
        exporters, targets = _exporters(environ)
    except Exception as error:  # noqa: BLE001 - a bad setting (or an exporter's own refusal): say so, keep serving
        return Tracing(provider=provider, exporting=False, target="none", record_content=record_content,
                       problem=f"{type(error).__name__}: {error}"[:300])
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter if record_content else ContentFilter(exporter)))
    return Tracing(provider=provider, exporting=bool(exporters), target=", ".join(targets) or "none",
                   record_content=record_content)


def install_globally(tracing: Tracing) -> None:
    """For processes whose libraries trace through the global provider (Pipecat in the worker). Once per process:
    the API refuses a second provider, and then this process's spans would go to the first one."""
    trace.set_tracer_provider(tracing.provider)


def resource(default_service_name: str) -> Resource:
    detected = Resource.create()  # OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME
    if str(detected.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        detected = detected.merge(Resource({SERVICE_NAME: default_service_name}))
    return detected


def _exporters(environ: Mapping[str, str]) -> tuple[list[SpanExporter], list[str]]:
    names = [name.strip().lower() for name in environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",") if name.strip()]
    exporters: list[SpanExporter] = []
    targets: list[str] = []
    for name in names:
        if name == "none":
            return [], []
        if name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            exporters.append(ConsoleSpanExporter())
            targets.append("console")
        elif name == "otlp":
            otlp = _otlp_exporter(environ)
            if otlp is not None:
                exporters.append(otlp[0])
                targets.append(otlp[1])
        else:
            raise TracingConfigError(f"OTEL_TRACES_EXPORTER={name!r} is not supported here: use otlp, console or none")
    return exporters, targets


def _otlp_exporter(environ: Mapping[str, str]) -> tuple[SpanExporter, str] | None:
    full = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    if not (full or base):
        return None
    variable = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL" if environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") \
        else "OTEL_EXPORTER_OTLP_PROTOCOL"
    protocol = environ.get(variable, DEFAULT_PROTOCOL).strip().lower() or DEFAULT_PROTOCOL
    if protocol not in PROTOCOLS:
        raise TracingConfigError(f"{variable}={protocol!r} is not supported here: use one of {', '.join(PROTOCOLS)}")
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        endpoint = full or base
        return GrpcExporter(endpoint=endpoint), f"grpc {_without_credentials(endpoint)}"
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    # The full URL as the SDK resolves it (a base URL gets /v1/traces); passed explicitly so `environ` decides.
    endpoint = full or f"{base.removesuffix('/')}/v1/traces"
    return HttpExporter(endpoint=endpoint), f"http/protobuf {_without_credentials(endpoint)}"


def _without_credentials(url: str) -> str:
    """The URL as it may be logged: a user:password@ in it (a collector behind basic auth) is left out."""
    parts = urlsplit(url)
    if not (parts.username or parts.password):
        return url
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    return urlunsplit(parts._replace(netloc=f"{netloc}:{parts.port}" if parts.port else netloc))


# --- W3C trace context across processes ----------------------------------------------------------------------

def traceparent_headers(context: Context | None = None) -> dict[str, str]:
    """``traceparent`` of the current span (or of ``context``) for a call to another voxfleet process: W3C
    whatever OTEL_PROPAGATORS says, since both ends are ours (and never baggage)."""
    carrier: dict[str, str] = {}
    _W3C.inject(carrier, context=context)
    return carrier


def links_from_headers(headers: Mapping[str, str]) -> list[Link]:
    """The caller's span as a link, from its W3C ``traceparent`` alone (no tracestate: nothing else the caller
    wrote rides on the platform's spans); none when absent or malformed."""
    span_context = trace.get_current_span(context_from_traceparent(headers.get("traceparent"))).get_span_context()
    return [Link(span_context)] if span_context.is_valid else []


def context_from_traceparent(traceparent: str | None) -> Context:
    """A context whose current span is the remote one a W3C ``traceparent`` names (empty when absent or
    malformed: spans started in it begin a new trace)."""
    return _W3C.extract({"traceparent": traceparent} if traceparent else {})

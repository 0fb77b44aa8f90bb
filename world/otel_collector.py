"""A real OpenTelemetry Collector on loopback: OTLP in (gRPC and HTTP), each signal written to its own file.

The binary is our wrapper module world/otelcol (OTLP receiver, batch processor, contrib file exporter, debug
exporter, all at one collector release), built by build-servers.sh. ``start()`` gives it ephemeral ports under a
state dir and waits until both receivers answer; ``Collector.spans()`` reads back what it wrote, as the OTLP/JSON
lines of the file exporter (one ExportTraceServiceRequest per line), so a test judges what really left a process.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from . import processes
from .binaries import Binary
from .processes import Server

SIGNALS = ("traces", "metrics", "logs")

# Short enough that a test reads its spans within a second of the export; the collector drains both on stop.
BATCH_TIMEOUT = "200ms"
FILE_FLUSH_INTERVAL = "100ms"


def config(*, grpc_port: int, http_port: int, out_dir: Path) -> dict:
    exporters: dict = {"debug": {"verbosity": "basic"}}  # one line per batch in the collector's log: what arrived
    pipelines: dict = {}
    for signal in SIGNALS:
        exporters[f"file/{signal}"] = {"path": str(out_dir / f"{signal}.jsonl"), "format": "json",
                                       "flush_interval": FILE_FLUSH_INTERVAL}
        pipelines[signal] = {"receivers": ["otlp"], "processors": ["batch"], "exporters": [f"file/{signal}", "debug"]}
    return {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{grpc_port}"},
                                             "http": {"endpoint": f"127.0.0.1:{http_port}"}}}},
        "processors": {"batch": {"timeout": BATCH_TIMEOUT}},
        "exporters": exporters,
        "service": {
            "pipelines": pipelines,
            # No self-metrics server: its default port 8888 would collide between two collectors on one machine.
            "telemetry": {"metrics": {"level": "none"}, "logs": {"level": "info"}},
        },
    }


@dataclass(frozen=True)
class Span:
    """One span as the collector received it (ids in lower-case hex, as OTLP/JSON writes them)."""
    trace_id: str
    span_id: str
    parent_span_id: str  # "" for a root span
    name: str
    kind: int  # OTLP SpanKind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer
    service_name: str
    attributes: dict
    resource: dict
    scope: str
    start_ns: int
    end_ns: int
    status_code: int  # 0 unset, 1 ok, 2 error
    events: list[dict] = field(default_factory=list)  # {"name": ..., "attributes": {...}}

    @property
    def is_root(self) -> bool:
        return not self.parent_span_id


def attribute_values(attributes: list[dict]) -> dict:
    """OTLP/JSON ``[{"key": k, "value": {"stringValue": v}}]`` -> ``{k: v}`` (arrays and maps unwrapped)."""
    return {a["key"]: _any_value(a.get("value", {})) for a in attributes or []}


def _any_value(value: dict):
    if "stringValue" in value:
        return value["stringValue"]
    if "intValue" in value:
        return int(value["intValue"])  # OTLP/JSON writes 64-bit integers as strings
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "arrayValue" in value:
        return [_any_value(v) for v in value["arrayValue"].get("values", [])]
    if "kvlistValue" in value:
        return attribute_values(value["kvlistValue"].get("values", []))
    if "bytesValue" in value:
        return value["bytesValue"]
    return None


def spans_from_export(request: dict) -> list[Span]:
    """The spans of one OTLP/JSON ExportTraceServiceRequest."""
    spans = []
    for resource_spans in request.get("resourceSpans", []):
        resource = attribute_values(resource_spans.get("resource", {}).get("attributes", []))
        for scope_spans in resource_spans.get("scopeSpans", []):
            scope = scope_spans.get("scope", {}).get("name", "")
            for s in scope_spans.get("spans", []):
                spans.append(Span(
                    trace_id=s.get("traceId", ""), span_id=s.get("spanId", ""),
                    parent_span_id=s.get("parentSpanId", ""), name=s.get("name", ""), kind=int(s.get("kind", 0)),
                    service_name=str(resource.get("service.name", "")),
                    attributes=attribute_values(s.get("attributes", [])), resource=resource, scope=scope,
                    start_ns=int(s.get("startTimeUnixNano", 0)), end_ns=int(s.get("endTimeUnixNano", 0)),
                    status_code=int(s.get("status", {}).get("code", 0)),
                    events=[{"name": e.get("name", ""), "attributes": attribute_values(e.get("attributes", []))}
                            for e in s.get("events", [])]))
    return spans


@dataclass
class Collector:
    grpc_port: int
    http_port: int
    out_dir: Path
    config_file: Path
    server: Server

    @property
    def otlp_http_endpoint(self) -> str:
        """The BASE URL for OTLP/HTTP (``OTEL_EXPORTER_OTLP_ENDPOINT``); signals go to <base>/v1/traces etc."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def otlp_grpc_endpoint(self) -> str:
        """The endpoint for OTLP/gRPC (``OTEL_EXPORTER_OTLP_ENDPOINT`` with protocol grpc), plaintext."""
        return f"http://127.0.0.1:{self.grpc_port}"

    def env(self, protocol: str = "http/protobuf") -> dict[str, str]:
        """The standard OTEL_* variables that point an SDK at this collector."""
        endpoint = self.otlp_grpc_endpoint if protocol == "grpc" else self.otlp_http_endpoint
        return {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": protocol}

    def file(self, signal: str) -> Path:
        return self.out_dir / f"{signal}.jsonl"

    def exports(self, signal: str = "traces") -> list[dict]:
        """Every export request written so far for ``signal``, as parsed OTLP/JSON."""
        path = self.file(signal)
        if not path.exists():
            return []
        lines = path.read_text(errors="replace").splitlines()
        result = []
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                result.append(json.loads(line))
            except ValueError:
                if i == len(lines) - 1:
                    break  # the exporter is writing this line right now; the next read has it whole
                raise
        return result

    def raw_text(self, signal: str = "traces") -> str:
        """Everything written for ``signal``, as text: for "this string never left the process" checks."""
        path = self.file(signal)
        return path.read_text(errors="replace") if path.exists() else ""

    def spans(self) -> list[Span]:
        return [span for request in self.exports("traces") for span in spans_from_export(request)]

    def traces(self) -> dict[str, list[Span]]:
        """trace id -> its spans, in the order they arrived."""
        by_trace: dict[str, list[Span]] = {}
        for span in self.spans():
            by_trace.setdefault(span.trace_id, []).append(span)
        return by_trace

    def wait_for_spans(self, predicate: Callable[[list[Span]], bool] = bool, *, timeout: float = 15.0) -> list[Span]:
        """Poll the written spans until ``predicate(spans)`` holds; returns them (fails with what arrived)."""
        deadline = time.monotonic() + timeout
        while True:
            self.server.check()
            spans = self.spans()
            if predicate(spans):
                return spans
            if time.monotonic() > deadline:
                names = sorted({f"{s.service_name}:{s.name}" for s in spans})
                raise TimeoutError(f"collector: after {timeout:.0f} s, {len(spans)} spans did not satisfy the "
                                   f"condition; span names so far: {names[:40]}; collector log "
                                   f"{self.server.log}:\n{processes.log_tail(self.server.log, 15)}")
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop the collector; it drains its batch and flushes its files first, so a final read sees everything."""
        processes.stop_group(self.server.pid, timeout=10)


def start(*, binary: Binary, state_dir: Path, world_id: str | None = None, timeout: float = 20.0) -> Collector:
    """Start a collector under ``state_dir`` (config, output files, log) and wait until both receivers answer."""
    state_dir.mkdir(parents=True, exist_ok=True)
    out_dir = state_dir / "out"
    out_dir.mkdir(exist_ok=True)
    grpc_port, http_port = processes.free_ports(2)
    config_file = state_dir / "otelcol.yaml"
    config_file.write_text(yaml.safe_dump(config(grpc_port=grpc_port, http_port=http_port, out_dir=out_dir),
                                          sort_keys=False))
    server = processes.start("otelcol", [str(binary.path), f"--config={config_file}"], log_dir=state_dir,
                             world_id=world_id or f"telemetry-{uuid.uuid4().hex[:8]}")
    collector = Collector(grpc_port, http_port, out_dir, config_file, server)
    try:
        processes.wait_until(f"the OTLP receivers of {binary.path.name} on {http_port} (http), {grpc_port} (grpc)",
                             lambda: _http_receiver_up(collector) and _tcp_open(grpc_port),
                             timeout=timeout, servers=[server], interval=0.1)
    except BaseException:
        collector.stop()
        raise
    return collector


def _http_receiver_up(collector: Collector) -> bool:
    # GET on the traces path: 405 means the OTLP/HTTP handler is mounted (a POST would inject an empty export).
    return httpx.get(f"{collector.otlp_http_endpoint}/v1/traces", timeout=1).status_code == 405


def _tcp_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0

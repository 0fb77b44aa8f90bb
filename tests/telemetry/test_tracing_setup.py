"""voxfleet.telemetry.tracing honours the standard OTEL_* environment, proven against the real OpenTelemetry
Collector: a process is started with only the OTEL_* variables a chart or the operator would set, makes a span
through the one setup every component uses, and the collector's output says what arrived."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from voxfleet.world.otel_collector import Collector

# A component in miniature: the setup, one span with call content in it, a clean shutdown (which flushes).
PROBE = """
import sys
from voxfleet.telemetry.tracing import set_up_tracing
tracing = set_up_tracing("voxfleet-probe", record_content=sys.argv[2] == "content")
print(tracing.target, "|", tracing.problem or "", flush=True)
with tracing.tracer("probe").start_as_current_span("probe", attributes={
        "voxfleet.probe": sys.argv[1], "transcript": "the caller said pineapple"}) as span:
    span.add_event("exception", {"exception.type": "ToolError", "exception.message": "order pineapple failed"})
tracing.shutdown()
"""


def run_probe(name: str, env: dict[str, str], content: bool = False) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run([sys.executable, "-c", PROBE, name, "content" if content else "none"],
                          env={**clean, "OTEL_BSP_SCHEDULE_DELAY": "50", **env}, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def probe_spans(collector: Collector, name: str, timeout: float = 10.0):
    return collector.wait_for_spans(lambda spans: any(s.attributes.get("voxfleet.probe") == name for s in spans),
                                    timeout=timeout)


@pytest.fixture
def collector(module_otel_collector: Collector) -> Collector:
    return module_otel_collector


def test_a_base_url_exports_to_its_v1_traces_with_the_envs_service_and_resource(collector: Collector):
    started = time.monotonic()
    # A collector behind basic auth takes user:password@ in the URL: never in the line the component logs.
    with_credentials = collector.otlp_http_endpoint.replace("http://", "http://probe:pw-4417@") + "/"
    said = run_probe("base", {"OTEL_EXPORTER_OTLP_ENDPOINT": with_credentials,
                              "OTEL_SERVICE_NAME": "voxfleet-worker",
                              "OTEL_RESOURCE_ATTRIBUTES": "voxfleet.tenant=acme,k8s.pod.name=w-0"})
    assert said == f"http/protobuf {collector.otlp_http_endpoint}/v1/traces |"
    (span,) = [s for s in probe_spans(collector, "base") if s.attributes.get("voxfleet.probe") == "base"]
    print(f"base URL: span in the collector {time.monotonic() - started:.2f} s after the process started")
    assert span.service_name == "voxfleet-worker"  # OTEL_SERVICE_NAME wins over the component's default
    assert span.resource["voxfleet.tenant"] == "acme" and span.resource["k8s.pod.name"] == "w-0"
    # No content by default: the transcript and the exception's message stay in the process; the names stay.
    assert "transcript" not in span.attributes and "pineapple" not in str(span.events)
    assert span.attributes["voxfleet.content_redacted"] == ["exception:exception.message", "transcript"]
    assert span.events == [{"name": "exception", "attributes": {"exception.type": "ToolError"}}]


def test_the_traces_endpoint_is_a_full_url_and_the_default_service_name_applies(collector: Collector):
    said = run_probe("full", {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{collector.otlp_http_endpoint}/v1/traces",
                              "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9/unused"}, content=True)
    assert said == f"http/protobuf {collector.otlp_http_endpoint}/v1/traces |"
    (span,) = [s for s in probe_spans(collector, "full") if s.attributes.get("voxfleet.probe") == "full"]
    assert span.service_name == "voxfleet-probe"
    assert span.attributes["transcript"] == "the caller said pineapple"  # recorded: the content goes too


def test_grpc_is_the_protocol_when_asked(collector: Collector):
    said = run_probe("grpc", {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.otlp_grpc_endpoint,
                              "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    assert said == f"grpc {collector.otlp_grpc_endpoint} |"
    assert [s.name for s in probe_spans(collector, "grpc") if s.attributes.get("voxfleet.probe") == "grpc"] \
        == ["probe"]


def test_the_sampler_and_unusable_settings_are_honoured_without_failing_the_process(collector: Collector):
    run_probe("sampled-out", {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.otlp_http_endpoint,
                              "OTEL_TRACES_SAMPLER": "always_off"})
    said = run_probe("json", {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.otlp_http_endpoint,
                              "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})
    assert said.startswith("none | TracingConfigError: OTEL_EXPORTER_OTLP_PROTOCOL='http/json' is not supported")
    assert run_probe("nowhere", {}) == "none |"  # no endpoint: spans are made (for logs) but go nowhere
    run_probe("marker", {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.otlp_http_endpoint})
    probes = {s.attributes.get("voxfleet.probe") for s in probe_spans(collector, "marker")}  # later than the rest
    assert not probes & {"sampled-out", "json", "nowhere"}

"""Real telemetry servers for tests: an OpenTelemetry Collector and Prometheus (built by world/build-servers.sh).

Usage
-----
``otel_collector`` (a fresh collector per test; ``module_otel_collector`` shares one across a module)::

    def test_spans_arrive(otel_collector):
        env = otel_collector.env()            # {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:<p>",
                                              #  "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}  (a BASE URL)
        ...                                   # start a real gateway/worker with that env, place a call
        spans = otel_collector.wait_for_spans(lambda spans: any(s.name == "x" for s in spans), timeout=20)
        traces = otel_collector.traces()      # trace id -> [Span(trace_id, span_id, parent_span_id, name,
                                              #   service_name, attributes, resource, scope, events, ...)]
        otel_collector.stop()                 # drains the batch and flushes the files: a final read is complete
        assert "secret words" not in otel_collector.raw_text("traces")

    ``otlp_grpc_endpoint`` / ``env("grpc")`` for OTLP/gRPC; ``exports("metrics"|"logs")`` for the other signals.
    Output files: ``otel_collector.file("traces")`` (OTLP/JSON, one export request per line); log: ``.server.log``.

``prometheus`` (a factory: each call starts one Prometheus; all are stopped after the test;
``module_prometheus`` is the module-scoped twin)::

    from voxfleet.world.prometheus import kubernetes_sd, static_scrape_config
    from tests.telemetry.monitor_scrape_configs import scrape_configs_for_monitors

    def test_scraped(prometheus, world, namespace):
        prom = prometheus([static_scrape_config("gateway", ["127.0.0.1:9464"])],
                          rule_files=[path_to_rules_yaml])        # scrape and evaluation every 1 s
        # pods, the way the chart's PodMonitor/ServiceMonitor would have the Prometheus Operator scrape them
        # (objects as the API serves them, camelCase: `helm template` output or a REST GET; interval= for speed):
        prom = prometheus(scrape_configs_for_monitors(rendered_objects, kubeconfig=world.kubeconfig, interval="1s"))
        prom.wait_for_targets_up("<job>", count=1)
        series = prom.wait_for_series('voxfleet_build_info{component="gateway"}')
        prom.query("sum(rate(x[1m]))"), prom.value("count(up)"), prom.reload(new_scrape_configs)
        prom.alerts(), prom.rule_groups()     # what the rule_files made of the samples (state, health, lastError)

``promtool``: ``binaries.find("promtool").path`` (``promtool test rules <file>``; see tests/chart).
Both servers bind 127.0.0.1 ephemeral ports and keep config, data, output and log under the test's tmp dir
(part of the run folder that `make test` scans for leaked secrets). They carry the world's process marker,
so a killed run's servers end with its world.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from voxfleet.world import binaries, otel_collector as otel_collector_server, prometheus as prometheus_server
from voxfleet.world.otel_collector import Collector
from voxfleet.world.prometheus import Prometheus
from voxfleet.world.world import WorldInfo

StartPrometheus = Callable[..., Prometheus]


def _start_collector(world: WorldInfo, state_dir: Path) -> Collector:
    started = time.monotonic()
    collector = otel_collector_server.start(binary=binaries.find("otelcol"), state_dir=state_dir,
                                            world_id=world.world_id)
    print(f"[telemetry] otelcol ready in {time.monotonic() - started:.2f} s: http {collector.otlp_http_endpoint}, "
          f"grpc {collector.otlp_grpc_endpoint}, output {collector.out_dir}", file=sys.stderr, flush=True)
    return collector


@pytest.fixture
def otel_collector(world: WorldInfo, tmp_path: Path) -> Iterator[Collector]:
    collector = _start_collector(world, tmp_path / "otelcol")
    yield collector
    collector.stop()


@pytest.fixture(scope="module")
def module_otel_collector(world: WorldInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    collector = _start_collector(world, tmp_path_factory.mktemp("otelcol"))
    yield collector
    collector.stop()


class _PrometheusFactory:
    def __init__(self, world: WorldInfo, make_dir: Callable[[], Path]):
        self.world = world
        self.make_dir = make_dir
        self.started: list[Prometheus] = []

    def __call__(self, scrape_configs: Sequence[dict] = (), *, rule_files: Sequence[Path] = (),
                 scrape_interval: str = prometheus_server.FAST_INTERVAL,
                 evaluation_interval: str = prometheus_server.FAST_INTERVAL) -> Prometheus:
        started = time.monotonic()
        prom = prometheus_server.start(binary=binaries.find("prometheus"), state_dir=self.make_dir(),
                                       scrape_configs=scrape_configs, rule_files=rule_files,
                                       scrape_interval=scrape_interval, evaluation_interval=evaluation_interval,
                                       world_id=self.world.world_id)
        self.started.append(prom)
        print(f"[telemetry] prometheus ready in {time.monotonic() - started:.2f} s at {prom.url} "
              f"({len(scrape_configs)} scrape config(s), {len(rule_files)} rule file(s))", file=sys.stderr, flush=True)
        return prom

    def stop_all(self) -> None:
        for prom in self.started:
            prom.stop()


@pytest.fixture
def prometheus(world: WorldInfo, tmp_path: Path) -> Iterator[StartPrometheus]:
    counter = iter(range(1000))
    factory = _PrometheusFactory(world, lambda: tmp_path / f"prometheus-{next(counter)}")
    yield factory
    factory.stop_all()


@pytest.fixture(scope="module")
def module_prometheus(world: WorldInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartPrometheus]:
    factory = _PrometheusFactory(world, lambda: tmp_path_factory.mktemp("prometheus"))
    yield factory
    factory.stop_all()

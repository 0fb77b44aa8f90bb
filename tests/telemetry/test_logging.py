"""One logging setup (voxfleet.telemetry.logging_setup), judged from what real processes write to stderr: a real
`voxfleet gateway` (against the world's apiserver, through a relay the test can cut) with a stand-in worker pod,
and a real `voxfleet worker` in a real LiveKit room.

- every line is one JSON object with the same fields, uvicorn's lines included;
- "session started" names the session and carries the call's trace id, the one its worker joins (the caller's
  W3C traceparent is only linked); a 500 names the caller's trace id as caller_trace_id;
- a gateway 500 (its apiserver gone) is logged with its traceback;
- every line a worker session logs carries its session id and the call's trace id;
- no API key or worker token in either log.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.gateway import worker_pods
from tests.gateway.gateway_process import GatewayProcess
from tests.gateway.tenant_setup import create_tenant, delete_tenant
from tests.telemetry.tcp_relay import TcpRelay
from tests.worker.worker_harness import TOKEN as WORKER_HARNESS_TOKEN
from tests.worker.worker_harness import WorkerUnderTest, offline_spec

pytestmark = pytest.mark.world

AGENT = "logged"
SPEC = {"greeting": "Hello!", "regions": [{"name": "us-east", "minWorkers": 0}]}
FIELDS_OF_EVERY_LINE = {"timestamp", "level", "logger", "event", "component"}


def new_traceparent() -> tuple[str, str]:
    trace_id = secrets.token_hex(16)
    return trace_id, f"00-{trace_id}-{secrets.token_hex(8)}-01"


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every non-empty line as JSON; a line that is not one JSON object fails the test, naming it."""
    records, not_json = [], []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            not_json.append(line)
            continue
        (records if isinstance(record, dict) else not_json).append(record)
    assert not not_json, f"{len(not_json)} lines are not JSON objects, e.g. {not_json[:3]}"
    return records


def assert_one_format(records: list[dict[str, Any]], component: str) -> None:
    incomplete = [r for r in records if not FIELDS_OF_EVERY_LINE <= r.keys() or r["component"] != component]
    assert not incomplete, f"lines without {sorted(FIELDS_OF_EVERY_LINE)}: {incomplete[:3]}"


def kubeconfig_through(kubeconfig: Path, relay: TcpRelay, path: Path) -> Path:
    """The world's kubeconfig with its server reached through the relay (the serving cert names 127.0.0.1)."""
    config = yaml.safe_load(kubeconfig.read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = f"https://127.0.0.1:{relay.port}"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def platform_namespace(kube, installed_crds):
    name = kube.new_namespace("vflog")
    yield name
    kube.delete_namespace(name)


@pytest.fixture(scope="module")
def apiserver_relay(world):
    server = yaml.safe_load(Path(world.kubeconfig).read_text())["clusters"][0]["cluster"]["server"]
    host, port = re.fullmatch(r"https://([^:/]+):(\d+)/?", server).groups()
    relay = TcpRelay(host, int(port)).start()
    yield relay
    relay.cut()


@pytest.fixture(scope="module")
def gateway(kube, platform_namespace, apiserver_relay, livekit, tmp_path_factory):
    from tests.gateway.conftest import livekit_regions, session_gateway_env

    folder = tmp_path_factory.mktemp("logging-gateway")
    process = GatewayProcess(kubeconfig=kubeconfig_through(Path(kube.kubeconfig), apiserver_relay,
                                                           folder / "kubeconfig"),
                             platform_namespace=platform_namespace, log_path=folder / "gateway.log",
                             regions=livekit_regions(livekit), extra_env=session_gateway_env()).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def tenant(kube, platform_namespace):
    created = create_tenant(kube, platform_namespace, allowed_regions=["us-east"], prefix="lg")
    yield created
    delete_tenant(kube, created)


def test_gateway_lines_are_one_json_format_name_the_session_and_trace_and_a_500_has_its_traceback(
        kube, pods, gateway, tenant, apiserver_relay):
    with httpx.Client(base_url=gateway.url, headers=tenant.headers(), timeout=15) as api:
        assert api.put(f"/v1/agents/{AGENT}", json=SPEC).status_code in (200, 201)
        names = worker_pods.create(kube, tenant.namespace, [worker_pods.standin_pod(
            pods, tenant=tenant.name, agent=AGENT, region="us-east", slots=1)])
        worker_ip = worker_pods.wait_ready(kube, tenant.namespace, names, pods=pods)[names[0]]
        trace_id, traceparent = new_traceparent()
        deadline = time.monotonic() + 20
        while True:  # the gateway's Pod watch needs a moment to see the pod Ready
            created = api.post(f"/v1/agents/{AGENT}/sessions", json={}, headers={"traceparent": traceparent})
            if created.status_code != 503 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert created.status_code == 201, created.text
        session_id = created.json()["sessionId"]
        dispatches = httpx.get(f"http://{worker_ip}:8080/test/dispatches",
                               headers=worker_pods.worker_headers(tenant.namespace), timeout=5).json()
        call_trace_id = next(d["traceparent"] for d in dispatches if d["sessionId"] == session_id).split("-")[1]

        apiserver_relay.cut()  # the apiserver is gone for this gateway: reading agents fails unexpectedly
        started = time.monotonic()
        failed_trace_id, failed_traceparent = new_traceparent()
        failed = api.get("/v1/agents", headers={"traceparent": failed_traceparent})
        print(f"gateway answer without its apiserver: {failed.status_code} in {time.monotonic() - started:.2f} s")
        assert failed.status_code == 500 and failed.json()["code"] == "internal_error"

    records = json_lines(gateway.log())
    assert_one_format(records, "gateway")
    third_party = {r["logger"] for r in records if not r["logger"].startswith("voxfleet")}
    print(f"gateway: {len(records)} JSON lines, third-party loggers among them: {sorted(third_party)}")
    # uvicorn's lines are the third-party lines a gateway always writes (its Kubernetes and worker clients are
    # aiohttp now, quiet at INFO); tests/telemetry/test_logging_setup.py routes httpx and the rest.
    assert any(name.startswith("uvicorn") for name in third_party), third_party

    session_lines = [r for r in records if r["event"] == "session started"]
    assert [r["session_id"] for r in session_lines] == [session_id]
    # The call's own trace, the one its worker joins (the caller's traceparent is only a link of its first span).
    assert call_trace_id != trace_id
    assert session_lines[0]["trace_id"] == call_trace_id and re.fullmatch(r"[0-9a-f]{16}", session_lines[0]["span_id"])

    unhandled = [r for r in records if r["event"] == "unhandled error" and r.get("path") == "/v1/agents"]
    assert len(unhandled) == 1, unhandled
    assert unhandled[0]["level"] == "error" and unhandled[0]["caller_trace_id"] == failed_trace_id
    traceback = unhandled[0].get("exception", "")
    print(f"the 500's traceback: {len(traceback.splitlines())} lines, last: {traceback.splitlines()[-1:]}")
    # Its cause, the cut connection to the apiserver, is the traceback's last line (aiohttp's ClientConnectorError).
    assert traceback.startswith("Traceback (most recent call last):") and "Connect" in traceback.splitlines()[-1]

    log = gateway.log()
    assert tenant.key not in log and worker_pods.worker_token(tenant.namespace) not in log


def test_worker_lines_of_a_session_carry_its_id_and_the_calls_trace(livekit, tmp_path):
    worker = WorkerUnderTest.start(tmp_path, offline_spec(), livekit=livekit["us-east"])
    try:
        trace_id, traceparent = new_traceparent()
        body = worker.dispatch_body(room=f"log-{secrets.token_hex(4)}")
        dispatched = httpx.post(f"{worker.url}/v1/dispatch", json=body, timeout=10,
                                headers={**worker.headers, "traceparent": traceparent})
        assert dispatched.status_code == 201, dispatched.text
        session_id = body["sessionId"]
        deadline = time.monotonic() + 30
        while '"joined room"' not in worker.log_tail(400) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert worker.delete(f"/v1/sessions/{session_id}").status_code in (200, 204)
        worker.terminate()
        assert worker.wait(30) == 0
    finally:
        worker.stop()

    log = worker.log_path.read_text()
    records = json_lines(log)
    assert_one_format(records, "worker")
    of_session = [r for r in records if r.get("session_id") == session_id]
    session_logger = [r for r in records if r["logger"] == "voxfleet.worker.session"]
    events = [r["event"] for r in of_session]
    print(f"worker: {len(records)} JSON lines, {len(of_session)} of the session: {events}")
    assert {"joined room", "session usage"} <= set(events)
    assert all(r.get("session_id") == session_id for r in session_logger), session_logger
    untraced = [r for r in of_session if r.get("trace_id") != trace_id]
    assert not untraced, f"session lines without the call's trace id: {untraced[:3]}"
    assert WORKER_HARNESS_TOKEN not in log and body["livekitToken"] not in log

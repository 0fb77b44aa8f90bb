"""`GET /v1/sessions/{id}/eval` on the real gateway and real workers: a session started with evalMode gets its
record back (and only its own tenant can read it); a session started without it, or of an agent whose spec keeps
no transcripts, gets a clear 404/403 saying why; the worker's own endpoint needs the platform's worker token; and
the runner uses the live record to wait out a slow tool after its filler."""

from __future__ import annotations

import httpx
import pytest

from tests.eval.eval_platform import offline_demo_spec, read_report, write_suite
from tests.gateway import worker_pods
from tests.gateway.tenant_setup import create_tenant, delete_tenant

pytestmark = pytest.mark.world


@pytest.fixture(scope="module")
def agents(eval_platform):
    spec = offline_demo_spec(eval_platform.tool.url, scaling={"sessionsPerWorker": 3, "bufferSessions": 0})
    eval_platform.deploy("recorded", spec, workers=1)
    eval_platform.deploy("unrecorded", {**spec, "observability": {"recordTranscripts": False}}, workers=1)
    return eval_platform


@pytest.fixture
def api(agents):
    with httpx.Client(base_url=agents.gateway.url, headers=agents.tenant.headers(), timeout=20) as http:
        yield http


def _start(api: httpx.Client, agent: str, **body) -> str:
    response = api.post(f"/v1/agents/{agent}/sessions", json=body)
    assert response.status_code == 201, response.text
    return response.json()["sessionId"]


def test_an_eval_session_returns_its_record(api):
    session = _start(api, "recorded", evalMode=True)
    try:
        response = api.get(f"/v1/sessions/{session}/eval")
        assert response.status_code == 200, response.text
        record = response.json()
        assert record["sessionId"] == session and record["complete"] is False
        assert set(record) >= {"transcript", "toolCalls", "interruptions", "agentTtfa"}
    finally:
        assert api.delete(f"/v1/sessions/{session}").status_code == 204
    ended = api.get(f"/v1/sessions/{session}/eval").json()
    assert ended["complete"] is True  # the worker keeps the record after the session ends


def test_a_session_without_eval_mode_has_no_record(api):
    session = _start(api, "recorded")
    try:
        response = api.get(f"/v1/sessions/{session}/eval")
        assert response.status_code == 404
        assert response.json()["code"] == "not_an_eval_session"
        assert "evalMode: true" in response.json()["message"]
    finally:
        api.delete(f"/v1/sessions/{session}")


def test_an_agent_that_keeps_no_transcripts_returns_none(api):
    session = _start(api, "unrecorded", evalMode=True)
    try:
        response = api.get(f"/v1/sessions/{session}/eval")
        assert response.status_code == 403
        body = response.json()
        assert body["code"] == "transcripts_disabled" and "recordTranscripts" in body["message"]
    finally:
        api.delete(f"/v1/sessions/{session}")


def test_the_worker_refuses_too_and_wants_its_token(agents, api, eval_platform):
    session = _start(api, "unrecorded", evalMode=True)
    try:
        [ip] = agents.workers["unrecorded"]
        url = f"http://{ip}:8080/v1/sessions/{session}/eval"
        assert httpx.get(url, timeout=10).status_code == 401
        response = httpx.get(url, headers=worker_pods.worker_headers(eval_platform.tenant.namespace), timeout=10)
        assert response.status_code == 403 and response.json()["code"] == "transcripts_disabled"
    finally:
        api.delete(f"/v1/sessions/{session}")


def test_another_tenant_cannot_read_the_record(agents, api):
    session = _start(api, "recorded", evalMode=True)
    other = create_tenant(agents.kube, agents.platform_namespace, allowed_regions=["us-east"], prefix="ev-other")
    try:
        with httpx.Client(base_url=agents.gateway.url, headers=other.headers(), timeout=20) as stranger:
            response = stranger.get(f"/v1/sessions/{session}/eval")
            assert response.status_code == 404 and response.json()["code"] == "session_not_found"
        assert httpx.get(f"{agents.gateway.url}/v1/sessions/{session}/eval").status_code == 401
    finally:
        api.delete(f"/v1/sessions/{session}")
        delete_tenant(agents.kube, other)


@pytest.mark.parametrize("session_id", ["AAAAAAAAAAAAAAAAAAAA.BBBBBBBBBBBBBBBBBBBB", "../../etc/passwd", "x" * 300])
def test_forged_or_malformed_ids_are_4xx(api, session_id):
    response = api.get(f"/v1/sessions/{session_id}/eval")
    assert response.status_code in (404, 422) and response.json()["code"]


def test_a_filler_before_a_slow_tool_does_not_end_the_turn(agents, tmp_path):
    """The agent says its filler, then is quiet for seconds while the tool works: the runner sees the running
    call in the eval results and keeps listening, so the tool's answer lands in the turn that asked for it."""
    suite = write_suite(tmp_path / "suite.yaml", {"agent": "recorded", "scenarios": [{"name": "slow-lookup", "turns": [
        {"say": "where is my order one two three four", "expect": {"mentions": ["being packed"]}},
        {"say": "thank you goodbye", "expect": {"mentions": ["goodbye"], "noToolCalls": True}}]}]})
    agents.tool.delay_s = 2.0  # the demo tool times out after 3 s; its filler comes after 0.8 s
    try:
        result = agents.eval(suite, "--report", str(tmp_path / "report.json"), "--retries", "1")
    finally:
        agents.tool.delay_s = 0.0
    assert result.returncode == 0, result.stdout + result.stderr
    first = read_report(tmp_path / "report.json")["scenarios"][0]["turns"][0]
    assert first["agentText"].startswith("One moment while I check."), first["agentText"]  # the filler came first
    assert first["toolCalls"][0]["outcome"] == "ok" and "being packed" in first["agentText"]

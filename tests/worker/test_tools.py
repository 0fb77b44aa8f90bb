"""The HTTP tool runner against a real tool server on 127.0.0.1 (allowed by the test's outbound policy) and a
victim server on 127.0.0.2 (not allowed)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
import pytest_asyncio
import structlog
from prometheus_client import CollectorRegistry

from tests.fakes.http_server import LocalHTTPServer, Reply, Request
from voxfleet.api.common import SecretKeyRef
from voxfleet.api.outbound import OutboundPolicy
from voxfleet.api.voiceagent import Tool
from voxfleet.api.worker_config import secret_env_name
from voxfleet.worker.tools import APOLOGY, ToolLabels, ToolRunner, speakable

POLICY = OutboundPolicy(["127.0.0.1/32"])
SECRET = "sk-live-7f3a9c-do-not-log"
SECRET_REF = SecretKeyRef(name="tool-keys", key="weather")


class ToolServer:
    """Routes by path; counts calls per path; some routes fail on purpose."""

    def __init__(self, victim_url: str) -> None:
        self.victim_url = victim_url
        self.dropped: set[str] = set()

    def __call__(self, request: Request) -> Reply:
        path = request.path
        if path == "/weather":
            city = request.query.get("city", ["?"])[0]
            return Reply(200, {"city": city, "forecast": "sunny", "temperatureC": 21.5,
                               "details": f"https://weather.example/{city}", "alerts": []})
        if path == "/book":
            return Reply(201, {"message": f"Booked a table for {request.json()['people']} at 7 pm.",
                               "bookingId": "B-1"})
        if path == "/slow":
            return Reply(200, {"say": "done"}, delay_s=3.0)
        if path == "/fail":
            return Reply(500, {"error": "database down"})
        if path == "/huge":
            return Reply(200, "x" * 70_000)
        if path == "/redirect-to-victim":
            return Reply(302, b"", {"Location": f"{self.victim_url}/internal"})
        if path.startswith("/flaky-"):
            if path not in self.dropped:
                self.dropped.add(path)
                return Reply(drop=True)
            return Reply(200, {"result": "second time lucky"})
        if path == "/headers":
            return Reply(200, {"sawKey": request.headers.get("x-api-key") == SECRET,
                               "idempotencyKey": request.headers.get("idempotency-key")})
        return Reply(404, {"error": "no such route"})


@pytest.fixture(scope="module")
def servers():
    victim = LocalHTTPServer(lambda request: Reply(200, "internal"), host="127.0.0.2").start()
    server = LocalHTTPServer(ToolServer(victim.url)).start()
    yield server, victim
    server.stop()
    victim.stop()


def make_tool(name: str, url: str, **fields: Any) -> Tool:
    http = {"url": url, **fields.pop("http", {})}
    return Tool.model_validate({"name": name, "http": http, **fields})


@pytest_asyncio.fixture(loop_scope="function")
async def runner_for(servers, monkeypatch):
    server, _ = servers
    monkeypatch.setenv(secret_env_name(SECRET_REF), SECRET)
    runners: list[ToolRunner] = []

    def build(*tools: Tool, registry: CollectorRegistry | None = None) -> ToolRunner:
        runner = ToolRunner(tools, policy=POLICY, labels=ToolLabels("acme", "support", "us-east"),
                            registry=registry or CollectorRegistry())
        runners.append(runner)
        return runner

    yield build
    for runner in runners:
        await runner.aclose()


WEATHER_SCHEMA = {"type": "object", "required": ["city"], "additionalProperties": False,
                  "properties": {"city": {"type": "string", "pattern": "^[A-Za-z ]{1,40}$"},
                                 "days": {"type": "integer", "minimum": 1, "maximum": 7}}}


async def test_a_tool_call_returns_its_result_and_speakable_words(servers, runner_for) -> None:
    server, _ = servers
    weather = make_tool("get_weather", f"{server.url}/weather", parameters=WEATHER_SCHEMA,
                        http={"method": "GET"}, idempotent=True)
    book = make_tool("book_table", f"{server.url}/book",
                     parameters={"type": "object", "properties": {"people": {"type": "integer"}}})
    runner = runner_for(weather, book)

    outcome = await runner.run("get_weather", {"city": "Paris", "days": 2}, call_id="c1")
    assert outcome.ok and outcome.status == 200 and outcome.error is None
    assert outcome.result["city"] == "Paris" and outcome.result["temperatureC"] == 21.5
    assert outcome.speakable == "city is Paris, forecast is sunny and temperature c is 21.5"
    assert server.calls("/weather")[-1].query == {"city": ["Paris"], "days": ["2"]}

    booked = await runner.run(book, '{"people": 4}', call_id="c2")
    assert booked.ok and booked.status == 201
    assert booked.speakable == "Booked a table for 4 at 7 pm."
    assert server.calls("/book")[-1].json() == {"people": 4}
    assert server.calls("/book")[-1].headers["content-type"] == "application/json"


async def test_a_get_tool_carries_large_arguments_in_its_query_string(servers, runner_for) -> None:
    server, _ = servers
    search = make_tool("search", f"{server.url}/weather", http={"method": "GET"},
                       parameters={"type": "object", "properties": {"city": {"type": "string"}}})
    outcome = await runner_for(search).run("search", {"city": "x" * 3000}, call_id="long")
    assert outcome.ok and server.calls("/weather")[-1].query["city"] == ["x" * 3000]


async def test_arguments_that_break_the_schema_never_reach_the_tool(servers, runner_for) -> None:
    server, _ = servers
    runner = runner_for(make_tool("get_weather", f"{server.url}/weather", parameters=WEATHER_SCHEMA))
    before = len(server.calls("/weather"))
    for index, (arguments, where) in enumerate((({}, "city"), ({"city": "Paris", "days": 30}, "days"),
                             ({"city": "Paris", "extra": 1}, "extra"), ({"city": "<script>"}, "city"),
                             ("not json", "not valid JSON"), ('["a list"]', "object"),
                             ({"city": "a" * 5000}, "larger than"))):
        outcome = await runner.run("get_weather", arguments, call_id=f"bad-{index}")
        assert not outcome.ok and outcome.error == "invalid_arguments", arguments
        assert where in outcome.result["message"], outcome.result
        assert outcome.speakable.startswith("Sorry")
    assert len(server.calls("/weather")) == before


async def test_tenant_regexes_run_in_linear_time(servers, runner_for) -> None:
    server, _ = servers
    evil = {"type": "object", "properties": {"q": {"type": "string", "pattern": "^(a+)+$"}},
            "patternProperties": {"^(x+x+)+y$": {"type": "string"}}, "additionalProperties": False}
    runner = runner_for(make_tool("search", f"{server.url}/weather", parameters=evil))
    started = time.monotonic()
    outcome = await runner.run("search", {"q": "a" * 2000 + "!", "x" * 3000: "v"}, call_id="redos")
    assert outcome.error == "invalid_arguments"
    assert time.monotonic() - started < 1.0


async def test_a_schema_that_refers_to_itself_without_end_is_an_apology_not_a_crash(servers, runner_for) -> None:
    server, _ = servers
    runner = runner_for(make_tool("loop", f"{server.url}/weather", parameters={"type": "object", "$ref": "#"}))
    before = len(server.calls("/weather"))
    outcome = await runner.run("loop", {"city": "Paris"}, call_id="loop")
    assert outcome.error == "invalid_arguments" and "refers to itself" in outcome.result["message"]
    assert len(server.calls("/weather")) == before


def test_unusable_schemas_are_refused_when_the_runner_is_built() -> None:
    for schema, reason in (({"type": "object", "properties": {"a": {"type": 5}}}, "not a valid JSON Schema"),
                           ({"type": "object", "properties": {"a": {"type": "string", "pattern": "(?<=x)y"}}},
                            "not valid RE2")):
        with pytest.raises(ValueError, match=reason):
            ToolRunner([make_tool("t", "http://127.0.0.1:9/", parameters=schema)], policy=POLICY,
                       registry=CollectorRegistry())


async def test_a_slow_tool_times_out_with_an_apology_and_says_the_filler_once(servers, runner_for) -> None:
    server, _ = servers
    slow = make_tool("slow", f"{server.url}/slow", http={"timeoutMs": 1000}, filler={"afterMs": 150, "say": "Hmm."})
    runner = runner_for(slow)
    fillers: list[float] = []
    started = time.monotonic()

    async def on_slow() -> None:
        fillers.append(time.monotonic() - started)

    outcome = await runner.run("slow", {}, call_id="t1", on_slow=on_slow)
    elapsed = time.monotonic() - started
    assert not outcome.ok and outcome.error == "timeout"
    assert "too long" in outcome.speakable
    assert 0.95 < elapsed < 2.5, elapsed  # the tool would take 3 s
    assert len(fillers) == 1 and 0.14 < fillers[0] < 0.9, fillers


async def test_a_fast_tool_needs_no_filler(servers, runner_for) -> None:
    server, _ = servers
    runner = runner_for(make_tool("book", f"{server.url}/book", filler={"afterMs": 300}))
    fillers: list[str] = []

    async def on_slow() -> None:
        fillers.append("said")

    assert (await runner.run("book", {"people": 2}, call_id="f1", on_slow=on_slow)).ok
    await asyncio.sleep(0.4)
    assert fillers == []


async def test_server_errors_and_oversized_answers_are_apologised_for(servers, runner_for) -> None:
    server, _ = servers
    runner = runner_for(make_tool("fail", f"{server.url}/fail"), make_tool("huge", f"{server.url}/huge"),
                        make_tool("missing", f"http://127.0.0.1:{_free_port()}/x"))
    failed = await runner.run("fail", {}, call_id="e1")
    assert (failed.ok, failed.error, failed.status, failed.speakable) == (False, "http_status", 500, APOLOGY)
    huge = await runner.run("huge", {}, call_id="e2")
    assert huge.error == "too_large"
    unreachable = await runner.run("missing", {}, call_id="e3")
    assert unreachable.error == "unreachable" and unreachable.speakable == APOLOGY
    unknown = await runner.run("nope", {}, call_id="e4")
    assert unknown.error == "unknown_tool"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_secret_headers_are_sent_and_never_logged(servers, runner_for, caplog) -> None:
    server, _ = servers
    tool = make_tool("authed", f"{server.url}/headers",
                     http={"headers": [{"name": "X-Api-Key", "secretKeyRef": SECRET_REF.model_dump()},
                                       {"name": "X-Tenant", "value": "acme"}]})
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as logs:
        runner = runner_for(tool)
        outcome = await runner.run("authed", {"note": "hello"}, call_id="s1")
        failed = await runner.run("authed", "{bad json", call_id="s2")
    assert outcome.ok and outcome.result == {"sawKey": True, "idempotencyKey": "s1"}
    assert server.calls("/headers")[-1].headers["x-tenant"] == "acme"
    assert not failed.ok
    assert any(entry["event"] == "tool call finished" for entry in logs)
    everything = repr(logs) + caplog.text + repr(outcome) + repr(failed)
    assert SECRET not in everything
    assert "hello" not in repr(logs), "arguments must not be logged"


async def test_a_non_idempotent_tool_never_runs_twice_for_one_call(servers, runner_for) -> None:
    server, _ = servers
    runner = runner_for(make_tool("book", f"{server.url}/book"))
    before = len(server.calls("/book"))
    first, second = await asyncio.gather(runner.run("book", {"people": 3}, call_id="same"),
                                         runner.run("book", {"people": 3}, call_id="same"))
    third = await runner.run("book", {"people": 3}, call_id="same")
    assert first == second == third and first.ok
    assert len(server.calls("/book")) - before == 1
    await runner.run("book", {"people": 3}, call_id="another")
    assert len(server.calls("/book")) - before == 2
    # A reused call id (some OpenAI-compatible servers number their calls) is not the same call: another
    # session, or other arguments, still run.
    await runner.run("book", {"people": 3}, call_id="same", scope="another-session")
    await runner.run("book", {"people": 5}, call_id="same")
    assert len(server.calls("/book")) - before == 4


async def test_only_idempotent_tools_retry_after_a_dropped_connection(servers, runner_for) -> None:
    server, _ = servers
    retried = make_tool("lookup", f"{server.url}/flaky-idempotent", idempotent=True)
    once = make_tool("charge", f"{server.url}/flaky-once")
    runner = runner_for(retried, once)
    outcome = await runner.run("lookup", {}, call_id="r1")
    assert outcome.ok and outcome.speakable == "second time lucky"
    assert len(server.calls("/flaky-idempotent")) == 2
    charged = await runner.run("charge", {}, call_id="r2")
    assert charged.error == "unreachable"
    assert len(server.calls("/flaky-once")) == 1


async def test_a_cancelled_call_is_not_sent_again(servers, runner_for) -> None:
    server, _ = servers
    runner = runner_for(make_tool("slow", f"{server.url}/slow", interruptible=True))
    before = len(server.calls("/slow"))
    task = asyncio.create_task(runner.run("slow", {}, call_id="barge"))
    # Cancel once the request is at the tool server (a fixed sleep can cancel before it is sent on a busy machine).
    for _ in range(200):
        if len(server.calls("/slow")) > before:
            break
        await asyncio.sleep(0.025)
    assert len(server.calls("/slow")) == before + 1, "the slow tool was never called"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    again = await runner.run("slow", {}, call_id="barge")
    assert again.error == "cancelled"
    assert len(server.calls("/slow")) - before == 1


async def test_tool_urls_aimed_at_private_or_metadata_addresses_are_refused(servers, runner_for) -> None:
    server, victim = servers
    runner = runner_for(make_tool("meta", "http://169.254.169.254/latest/meta-data/iam"),
                        make_tool("internal", f"{victim.url}/admin"),
                        make_tool("hop", f"{server.url}/redirect-to-victim"))
    for name, reason in (("meta", "metadata"), ("internal", "127.0.0.2 is a loopback address"),
                         ("hop", "127.0.0.2 is a loopback address")):
        outcome = await runner.run(name, {}, call_id=f"x-{name}")
        assert outcome.error == "refused" and reason in outcome.result["message"], outcome
        assert outcome.speakable == APOLOGY
    assert victim.calls() == []


async def test_metrics_count_calls_by_tool_and_result(servers, runner_for) -> None:
    server, _ = servers
    registry = CollectorRegistry()
    runner = runner_for(make_tool("book", f"{server.url}/book"), make_tool("fail", f"{server.url}/fail"),
                        registry=registry)
    await runner.run("book", {"people": 1}, call_id="m1")
    await runner.run("fail", {}, call_id="m2")
    labels = {"tenant": "acme", "agent": "support", "region": "us-east"}
    assert registry.get_sample_value("voxfleet_worker_tool_calls_total",
                                     {**labels, "tool": "book", "result": "ok"}) == 1
    assert registry.get_sample_value("voxfleet_worker_tool_calls_total",
                                     {**labels, "tool": "fail", "result": "http_status"}) == 1
    assert registry.get_sample_value("voxfleet_worker_tool_call_seconds_count", {**labels, "tool": "book"}) == 1


@pytest.mark.parametrize(("result", "spoken"), [
    ({"speech": "Your order ships tomorrow."}, "Your order ships tomorrow."),
    ({"status": "shipped", "items": ["a lamp", "two chairs", "a desk"]},
     "status is shipped and items a lamp, two chairs and a desk"),
    ({"open": True, "price": 12.50, "count": 3.0}, "open is yes, price is 12.5 and count is 3"),
    ({"when": "2026-11-25T18:30:00Z"}, "when is 2026-11-25 at 18:30"),
    ("See https://example.com/x?token=1 for {details}", "See for details"),
    (list(range(1, 10)), "1, 2, 3, 4, 5 and 4 more"),
    ({"nothing": None}, ""),
    ("Line one.\n\n   Line two.", "Line one. Line two."),
])
def test_results_are_made_speakable(result: Any, spoken: str) -> None:
    assert speakable(result) == spoken


def test_long_results_are_cut_at_a_sentence_or_word() -> None:
    text = "This is a sentence. " * 40
    spoken = speakable(text)
    assert len(spoken) <= 300 and spoken.endswith("sentence.")
    words = speakable("word " * 200)
    assert len(words) <= 300 and words.endswith("word.")

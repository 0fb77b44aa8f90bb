"""voxfleet.telemetry.logging_setup in a real Python process, judged by its stderr: redaction (the union of the
old gateway, operator and worker redactors, plus bearer credentials and JWTs, in tracebacks and third-party
lines too), structlog, stdlib and loguru lines in one format, the trace and session ids, and tracebacks without
local variables on a terminal. The gateway and worker processes themselves are in test_logging.py."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import textwrap

API_KEY = f"vfk_{'abcdefghijkm'}_{secrets.token_urlsafe(32)[:43]}"
WORKER_TOKEN = secrets.token_urlsafe(32)
BEARER = secrets.token_urlsafe(24)
JWT = f"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ{secrets.token_hex(8)}.{secrets.token_urlsafe(16)}"
LOCAL_SECRET = secrets.token_urlsafe(20)

PROBE = textwrap.dedent("""
    import logging, sys, threading
    import structlog
    from loguru import logger as loguru_logger
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from voxfleet.telemetry.logging_setup import bind_call, configure_logging

    api_key, worker_token, bearer, jwt, local_secret, log_format = sys.argv[1:]
    configure_logging("probe", log_format=log_format, level="debug", pod="probe-0", region=None)
    trace.set_tracer_provider(TracerProvider())
    log = structlog.get_logger("voxfleet.probe")

    def fail(password):
        raise RuntimeError(f"refused key {api_key} with token {jwt}")

    with trace.get_tracer("probe").start_as_current_span("call") as span:
        bind_call(session_id="sess-1")
        log.info("structlog line", api_key=api_key, worker_token=worker_token, prompt_tokens=12,
                 headers={"Authorization": f"Bearer {bearer}", "Accept": "json"}, url=f"/v1/agents?key={api_key}")
        logging.getLogger("httpx").info("HTTP Request: GET %s", f"https://x/?access_token={jwt}")
        logging.getLogger("httpcore.http11").debug("raw request headers: Authorization: Bearer %s", bearer)
        loguru_logger.debug("pipecat debug: the caller said something private")
        loguru_logger.warning("pipecat warning")
        try:
            fail(local_secret)
        except RuntimeError:
            log.exception("structlog error")
            logging.getLogger("uvicorn.error").exception("stdlib error")
    thread = threading.Thread(target=lambda: logging.getLogger("kopf.objects").warning("from a thread"))
    thread.start(); thread.join()
    print("ids", format(span.get_span_context().trace_id, "032x"), file=sys.stdout)
""")


def run_probe(log_format: str) -> tuple[str, str]:
    result = subprocess.run([sys.executable, "-c", PROBE, API_KEY, WORKER_TOKEN, BEARER, JWT, LOCAL_SECRET,
                             log_format], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.split()[-1], result.stderr


def assert_no_secret(stderr: str) -> None:
    for what, value in (("API key", API_KEY), ("worker token", WORKER_TOKEN), ("bearer credential", BEARER),
                        ("JWT", JWT), ("local variable", LOCAL_SECRET)):
        assert value not in stderr, f"the {what} is in the log"


def test_json_lines_one_format_with_ids_and_redacted():
    trace_id, stderr = run_probe("json")
    records = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    by_event = {r["event"].split(":")[0]: r for r in records}
    print(f"{len(records)} lines from structlog, stdlib and loguru: {sorted(by_event)}")
    assert_no_secret(stderr)
    assert all({"timestamp", "level", "logger", "event"} <= r.keys() and r["component"] == "probe"
               and r["pod"] == "probe-0" and "region" not in r for r in records)

    line = by_event["structlog line"]
    assert line["api_key"] == line["worker_token"] == "[redacted]" and line["prompt_tokens"] == 12
    assert line["headers"] == {"Authorization": "[redacted]", "Accept": "json"}
    assert line["url"] == "/v1/agents?key=vfk_[redacted]"
    in_call = [by_event[name] for name in ("structlog line", "HTTP Request", "pipecat warning", "structlog error",
                                           "stdlib error")]
    assert all(r["trace_id"] == trace_id and r["session_id"] == "sess-1" and len(r["span_id"]) == 16
               for r in in_call), in_call
    assert by_event["HTTP Request"]["logger"] == "httpx" and "[redacted jwt]" in by_event["HTTP Request"]["event"]
    assert "raw request headers" not in by_event and "pipecat debug" not in by_event  # below their floors
    for name in ("structlog error", "stdlib error"):
        assert by_event[name]["exception"].startswith("Traceback (most recent call last):")
        assert "RuntimeError: refused key vfk_[redacted] with token [redacted jwt]" in by_event[name]["exception"]
    threaded = by_event["from a thread"]
    assert threaded["component"] == "probe" and "session_id" not in threaded  # context is the task's, not global


def test_console_lines_are_readable_and_tracebacks_show_no_local_variables():
    _, stderr = run_probe("console")
    print(f"console output: {len(stderr.splitlines())} lines")
    assert_no_secret(stderr)
    assert not stderr.lstrip().startswith("{")
    assert "structlog line" in stderr and "api_key=[redacted]" in stderr and "session_id=sess-1" in stderr
    assert stderr.count("Traceback (most recent call last):") == 2
    assert "password" not in stderr  # the failing frame's argument name: rich's locals view would show it

"""The demo tool server the offline agent's lookup_order calls, as a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import pytest

from voxfleet.devplatform.demo_tools import MAX_BODY_BYTES
from voxfleet.world.processes import free_port


@pytest.fixture(scope="module")
def tool_server():
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "voxfleet.devplatform.demo_tools", "--port", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "the demo tool server did not answer within 30 s"
        time.sleep(0.1)
    yield url
    process.terminate()
    process.wait(10)


def test_an_order_lookup_answers_with_a_sentence_the_agent_can_say(tool_server):
    answer = httpx.post(f"{tool_server}/orders/lookup", json={"order_id": "1234"})
    assert answer.status_code == 200
    body = answer.json()
    assert body["orderId"] == "1234" and body["found"] is True
    assert body["speech"] == "Order 1 2 3 4 is being packed today and ships tomorrow."
    # deterministic: the same number always answers the same; another number another status
    assert httpx.post(f"{tool_server}/orders/lookup", json={"order_id": "1234"}).json() == body
    assert httpx.post(f"{tool_server}/orders/lookup", json={"order_id": 1237}).json()["status"] == "shipped"


@pytest.mark.parametrize("body, status, code", [
    ({"order_id": "12a"}, 422, "invalid_order_id"),
    ({"order_id": "12345678901"}, 422, "invalid_order_id"),
    ({"order_id": True}, 422, "invalid_order_id"),
    ({"order_id": "١٢٣"}, 422, "invalid_order_id"),  # Arabic-Indic digits are digits to str.isdigit
    ([1, 2], 422, "invalid_order_id"),
    (None, 400, "invalid_json"),
])
def test_bad_input_gets_a_clear_json_error(tool_server, body, status, code):
    kwargs = {"content": b"{not json"} if body is None else {"json": body}
    answer = httpx.post(f"{tool_server}/orders/lookup", **kwargs)
    assert answer.status_code == status
    assert answer.json()["code"] == code and answer.json()["message"]


def test_an_oversized_body_is_refused(tool_server):
    answer = httpx.post(f"{tool_server}/orders/lookup", content=b"x" * (MAX_BODY_BYTES + 1))
    assert answer.status_code == 413
    assert httpx.get(f"{tool_server}/healthz").status_code == 200  # and the server goes on

"""The worker control API checks the token before it reads a body, and bounds a body as it arrives.

Against a real `voxfleet worker` process, over raw HTTP/1.1 (httpx would not send a never-ending chunked body):
a client without the token gets 401 while its chunked body is still unfinished (so nothing waited for, buffered
or parsed it); with the token, a chunked body past the limit gets 413 before it ends, as does a Content-Length
past it.
"""

from __future__ import annotations

import json
import socket
import time
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest

from tests.worker.worker_harness import TOKEN, WorkerUnderTest, offline_spec
from voxfleet.worker.control_api import MAX_BODY_BYTES

pytestmark = pytest.mark.timeout(180)

# The worker needs no LiveKit until a session is dispatched, and none is here.
NO_LIVEKIT = SimpleNamespace(url="ws://127.0.0.1:9", api_key="unused", api_secret="unused" * 6)


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    started = WorkerUnderTest.start(tmp_path_factory.mktemp("control-api"), offline_spec(), livekit=NO_LIVEKIT)
    yield started
    started.stop()


def _connect(worker: WorkerUnderTest) -> socket.socket:
    address = urlsplit(worker.url)
    sock = socket.create_connection((address.hostname, address.port), timeout=10)
    sock.settimeout(10)
    return sock


def _request_head(extra: str = "") -> bytes:
    return (f"POST /v1/dispatch HTTP/1.1\r\nHost: worker\r\nContent-Type: application/json\r\n{extra}\r\n").encode()


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def _read_response(sock: socket.socket) -> tuple[int, dict]:
    data = b""
    while b"\r\n\r\n" not in data:
        part = sock.recv(65536)
        if not part:
            break
        data += part
    head, _, rest = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(rest) < length:
        part = sock.recv(65536)
        if not part:
            break
        rest += part
    return status, json.loads(rest[:length] or b"{}")


def _send_until_answered(sock: socket.socket, head: bytes, total: int) -> tuple[int, dict, int]:
    """Send the head, then chunks (never the final zero chunk) until the server answers or `total` bytes went;
    returns the status, the body and how many body bytes were sent before the answer came."""
    sock.sendall(head)
    sent = 0
    piece = b"x" * 4096
    sock.setblocking(False)
    try:
        while sent < total:
            try:
                if sock.recv(1, socket.MSG_PEEK):
                    break  # the answer has started
            except BlockingIOError:
                pass
            try:
                sock.sendall(_chunk(piece))
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                time.sleep(0.01)
                continue
            sent += len(piece)
    finally:
        sock.setblocking(True)
        sock.settimeout(10)
    status, body = _read_response(sock)
    return status, body, sent


def test_a_chunked_body_without_the_token_is_refused_before_it_is_read(worker):
    with _connect(worker) as sock:
        sock.sendall(_request_head("Transfer-Encoding: chunked\r\n") + _chunk(b"{" + b" " * 1000))
        started = time.monotonic()
        status, body = _read_response(sock)  # the body never ends: only an answer before reading it returns
        waited = time.monotonic() - started
    print(f"401 after {waited * 1000:.1f} ms with the chunked body unfinished (1 KiB sent)")
    assert status == 401, body
    assert body["code"] == "unauthorized"


def test_a_huge_chunked_body_without_the_token_gets_401_not_a_read(worker):
    with _connect(worker) as sock:
        status, body, sent = _send_until_answered(sock, _request_head("Transfer-Encoding: chunked\r\n"),
                                                  64 * 1024 * 1024)
    print(f"401 with {sent} body bytes sent of a 64 MiB chunked body")
    assert status == 401, body
    assert body["code"] == "unauthorized"
    assert sent < 64 * 1024 * 1024  # answered long before the body's end


def test_a_chunked_body_past_the_limit_with_the_token_gets_413(worker):
    head = _request_head(f"Authorization: Bearer {TOKEN}\r\nTransfer-Encoding: chunked\r\n")
    with _connect(worker) as sock:
        status, body, sent = _send_until_answered(sock, head, 64 * 1024 * 1024)
    print(f"413 after {sent} body bytes (limit {MAX_BODY_BYTES})")
    assert status == 413, body
    assert body["code"] == "too_large"
    # Answered long before the body's end: what was sent past the limit sits in the kernel's socket buffers.
    assert sent < 64 * 1024 * 1024


def test_a_declared_length_past_the_limit_with_the_token_gets_413_at_once(worker):
    head = _request_head(f"Authorization: Bearer {TOKEN}\r\nContent-Length: {MAX_BODY_BYTES + 1}\r\n")
    with _connect(worker) as sock:
        sock.sendall(head)
        status, body = _read_response(sock)
    assert status == 413, body


def test_with_the_token_a_small_body_still_reaches_the_contract(worker):
    body = b'{"sessionId": 1}'
    head = _request_head(f"Authorization: Bearer {TOKEN}\r\nContent-Length: {len(body)}\r\n")
    with _connect(worker) as sock:
        sock.sendall(head + body)
        status, answer = _read_response(sock)
    assert status == 422, answer
    assert answer["code"] == "invalid_request"

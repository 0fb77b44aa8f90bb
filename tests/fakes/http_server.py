"""A real HTTP/1.1 server on a loopback address, in a thread, with a handler function per test.

It records every request (method, path, headers, body) so tests can assert what reached it and how often.
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Reply:
    status: int = 200
    body: bytes | str | Any = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # sleep before answering (a slow tool)
    drop: bool = False  # close the connection without answering (a crashed or restarting server)


Handler = Callable[[Request], Reply]


class LocalHTTPServer:
    """`with LocalHTTPServer(handler) as server: server.url` — serves until the block ends."""

    def __init__(self, handler: Handler, host: str = "127.0.0.1", ssl_context: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        owner = self

        class _RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                request = Request(self.command, parts.path, parse_qs(parts.query),
                                  {k.lower(): v for k, v in self.headers.items()}, body)
                with owner._lock:
                    owner.requests.append(request)
                reply = owner.handler(request)
                if reply.delay_s:
                    owner._stopping.wait(reply.delay_s)
                if reply.drop:
                    self.close_connection = True
                    return
                payload = reply.body
                headers = dict(reply.headers)
                if not isinstance(payload, (bytes, str)):
                    payload = json.dumps(payload)
                    headers.setdefault("Content-Type", "application/json")
                if isinstance(payload, str):
                    payload = payload.encode()
                    headers.setdefault("Content-Type", "text/plain; charset=utf-8")
                try:
                    self.send_response(reply.status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer((host, 0), _RequestHandler)
        self._server.daemon_threads = True
        if ssl_context is not None:
            self._server.socket = ssl_context.wrap_socket(self._server.socket, server_side=True)
        self.host = host
        self.port = self._server.server_address[1]
        self.url = f"{'https' if ssl_context else 'http'}://{host}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"http-{self.port}", daemon=True)

    def start(self) -> "LocalHTTPServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "LocalHTTPServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def calls(self, path: str | None = None) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

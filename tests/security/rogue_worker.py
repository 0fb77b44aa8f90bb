"""A pod that only looks like a worker (the worker labels, a Ready probe, port 8080) placed where no Tenant
lives: it answers every request like a willing worker and writes one JSON line per request to its log (method,
path, and a SHA-256 of the Authorization header, never the header itself), so a test can tell whether the
gateway or operator sent it a dispatch or a credential. Standard library only.

    python rogue_worker.py            # VOXFLEET_BIND_HOST (the pod IP), port 8080
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOST = os.environ.get("VOXFLEET_BIND_HOST", "127.0.0.1")
PORT = int(os.environ.get("VOXFLEET_WORKER_PORT", "8080"))
LOAD = {"capacity": 100, "active": 0, "free": 100, "draining": False}


def authorization_digest(header: str) -> str:
    return hashlib.sha256(header.encode()).hexdigest() if header else ""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_: object) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path not in ("/healthz", "/readyz"):
            print(json.dumps({"method": self.command, "path": self.path, "bodyBytes": len(body),
                              "authorization": authorization_digest(self.headers.get("Authorization", ""))}),
                  flush=True)
        data = json.dumps(LOAD if self.path == "/v1/load" else {"ok": True}).encode()
        self.send_response(201 if self.command == "POST" else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = _answer


if __name__ == "__main__":
    print(f"rogue worker on {HOST}:{PORT}", flush=True)
    ThreadingHTTPServer((HOST, PORT), Handler).serve_forever()
    sys.exit(0)

"""A stand-in worker process for the operator's tests: it speaks the worker's contract and nothing more.

Reads the env the operator gives every worker pod (VOXFLEET_BIND_HOST, VOXFLEET_WORKER_PORT, VOXFLEET_POD_NAME,
VOXFLEET_REGION, VOXFLEET_WORKER_TOKEN, VOXFLEET_AGENT_CONFIG) and serves /healthz, /readyz and the token-guarded
`GET /v1/load` (a voxfleet.api.wire.LoadReport). A test sets its number of live calls with
`PUT /standin/active {"active": n}` (same token). On SIGTERM it drains like the real worker: /readyz turns 503,
it takes no calls, and it exits 0 once its calls are over. Standard library only, so a pod starts in ~50 ms.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOST = os.environ["VOXFLEET_BIND_HOST"]
PORT = int(os.environ["VOXFLEET_WORKER_PORT"])
TOKEN = os.environ["VOXFLEET_WORKER_TOKEN"]
with open(os.environ["VOXFLEET_AGENT_CONFIG"], "rb") as config_file:
    RAW_CONFIG = config_file.read()
CONFIG = json.loads(RAW_CONFIG)
CAPACITY = int(CONFIG["spec"].get("scaling", {}).get("sessionsPerWorker", 4))
CONFIG_HASH = hashlib.sha256(RAW_CONFIG).hexdigest()[:16]  # WorkerConfig.config_hash() of the rendered bytes

state = {"active": 0, "draining": False, "last_call_end": time.monotonic()}
lock = threading.Lock()


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *_: object) -> None:  # quiet: polls come every second
        pass

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorised(self) -> bool:
        given = self.headers.get("Authorization", "")
        if hmac.compare_digest(given.encode(), f"Bearer {TOKEN}".encode()):
            return True
        self._send(401, {"code": "unauthorized", "message": "worker token required"})
        return False

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path == "/healthz":
            self._send(200, {"ok": True})
        elif self.path == "/readyz":
            self._send(503 if state["draining"] else 200, {"ready": not state["draining"]})
        elif self.path == "/v1/load":
            if self._authorised():
                with lock:
                    active, draining = state["active"], state["draining"]
                    idle = 0.0 if active else time.monotonic() - state["last_call_end"]
                self._send(200, {
                    "worker": os.environ.get("VOXFLEET_POD_NAME", ""), "tenant": CONFIG["tenant"],
                    "agent": CONFIG["agent"], "region": os.environ.get("VOXFLEET_REGION", ""),
                    "capacity": CAPACITY, "active": active,
                    "free": 0 if draining else max(0, CAPACITY - active), "ready": not draining,
                    "draining": draining, "configHash": CONFIG_HASH, "idleSeconds": round(idle, 3)})
        else:
            self._send(404, {"code": "not_found", "message": self.path})

    def do_PUT(self) -> None:  # noqa: N802
        if self.path != "/standin/active" or not self._authorised():
            if self.path != "/standin/active":
                self._send(404, {"code": "not_found", "message": self.path})
            return
        length = int(self.headers.get("Content-Length", "0"))
        active = int(json.loads(self.rfile.read(length) or b"{}").get("active", 0))
        with lock:
            if active == 0 and state["active"]:
                state["last_call_end"] = time.monotonic()
            state["active"] = max(0, active)
        log(f"active calls: {active}")
        self._send(200, {"active": active})


def main() -> int:
    server = ThreadingHTTPServer((HOST, PORT), Handler)
    server.daemon_threads = True

    def on_term(*_: object) -> None:
        with lock:
            state["draining"] = True
        log(f"got SIGTERM with {state['active']} live call(s): draining")

    signal.signal(signal.SIGTERM, on_term)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    log(f"serving {CONFIG['agent']} ({CONFIG_HASH}) on {HOST}:{PORT}")
    while True:
        time.sleep(0.1)
        with lock:
            if state["draining"] and state["active"] == 0:
                break
    log("drained: exiting")
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

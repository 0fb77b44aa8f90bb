"""The demo tool server the offline example agent calls: `POST /orders/lookup {"order_id": "1234"}`.

It stands in for a tenant's own backend (an order system) so the offline demo's tool call goes over real HTTP,
through the worker's outbound policy, to a real server. Orders are made up but deterministic (the status
follows from the number), so a caller hears the same answer every time. Run by `voxfleet dev`, or alone:
`python -m voxfleet.devplatform.demo_tools --port 8765`.
"""

from __future__ import annotations

import argparse
import json
import sys

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

DEFAULT_PORT = 8765  # examples/offline-demo.yaml names http://127.0.0.1:8765/orders/lookup
MAX_BODY_BYTES = 4096
MAX_ORDER_DIGITS = 10

# (status, when) by order number modulo 4: enough variety to hear that the tool's answer is used.
_ORDER_STATES = (
    ("delivered", "on Monday"),
    ("shipped", "yesterday and arrives tomorrow"),
    ("being packed", "today and ships tomorrow"),
    ("waiting for payment", "since last week"),
)


def lookup(order_id: str) -> dict:
    """The made-up order for a number: what the tenant's backend would answer."""
    status, when = _ORDER_STATES[int(order_id) % len(_ORDER_STATES)]
    spoken_id = " ".join(order_id)  # digit by digit, as people read order numbers out
    verb = "was" if status in ("delivered", "shipped") else "is"
    return {"orderId": order_id, "found": True, "status": status,
            "speech": f"Order {spoken_id} {verb} {status} {when}."}


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message, "details": []}, status_code=status)


async def orders_lookup(request: Request) -> JSONResponse:
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        return _error(413, "too_large", f"the request body is larger than {MAX_BODY_BYTES} bytes")
    try:
        payload = json.loads(body or b"{}")
    except ValueError:
        return _error(400, "invalid_json", 'send a JSON object like {"order_id": "1234"}')
    order_id = payload.get("order_id") if isinstance(payload, dict) else None
    if isinstance(order_id, int) and not isinstance(order_id, bool):
        order_id = str(order_id)
    if not isinstance(order_id, str) or not order_id.isascii() or not order_id.isdigit() \
            or len(order_id) > MAX_ORDER_DIGITS:
        return _error(422, "invalid_order_id", f"order_id must be a string of 1 to {MAX_ORDER_DIGITS} digits")
    return JSONResponse(lookup(order_id))


async def healthz(_request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def create_app() -> Starlette:
    return Starlette(routes=[Route("/orders/lookup", orders_lookup, methods=["POST"]),
                             Route("/healthz", healthz, methods=["GET"])])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m voxfleet.devplatform.demo_tools",
                                     description="The demo order-lookup tool server of the offline example agent.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args(argv)
    import uvicorn

    uvicorn.run(create_app(), host=args.host, port=args.port, log_level="warning", server_header=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())

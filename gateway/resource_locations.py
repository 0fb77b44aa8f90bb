"""`Location` on every 201 Created: where the new resource is read from (RFC 9110 section 10.2.2).

A path, not an absolute URL: the Host header is the client's, and behind an Ingress the scheme and host the
gateway sees are not the ones the client used; a relative reference resolves against the URL the client sent
the request to, which is right by construction. The app's root_path (a path prefix the proxy strips) is kept.
Each path segment is percent-encoded, so no name can add a segment or a query.

    set_location(request, response, "v1", "agents", name)   # routes that answer a model
    created(request, body, "v1", "webhooks", hook_id)        # routes that build their own JSONResponse
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.responses import JSONResponse


def location(request: Request, *segments: str) -> str:
    root = (request.scope.get("root_path") or "").rstrip("/")
    return root + "".join("/" + quote(str(segment), safe="") for segment in segments)


def set_location(request: Request, response: Response, *segments: str) -> None:
    """Mark `response` (FastAPI's injected Response, or one the route returns) as 201 Created at the path."""
    response.status_code = 201
    response.headers["Location"] = location(request, *segments)


def created(request: Request, body: Any, *segments: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """A 201 JSON answer with its Location."""
    return JSONResponse(body, status_code=201, headers={**(headers or {}), "Location": location(request, *segments)})

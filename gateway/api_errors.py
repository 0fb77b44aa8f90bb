"""Every error the gateway answers is an ErrorBody (code + message + details), whatever raised it.

Validation errors list the field path and the problem, never the rejected input: a request body may hold a
secret the caller pasted in the wrong place, and an error body must not echo it back into someone's logs.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from opentelemetry import trace
from starlette.exceptions import HTTPException as StarletteHTTPException

from voxfleet.api.wire import ErrorBody
from voxfleet.telemetry.tracing import context_from_traceparent

log = structlog.get_logger(__name__)


_DESCRIPTIONS = {
    400: "Malformed request.", 401: "No valid API key (or webhook signature).",
    403: "Not allowed for this tenant (region, quota, or the tenant is unavailable).",
    404: "Not found for this tenant.",
    409: "Conflict (a concurrent change, or a repeated webhook delivery).", 413: "Request body too large.",
    422: "Invalid request; details name each field.", 429: "Rate or session quota exceeded; see Retry-After.",
    502: "The cluster answered unexpectedly; retry.", 503: "No capacity or not ready yet; see Retry-After.",
}


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries: these statuses answer an ErrorBody (replacing FastAPI's default 422)."""
    return {status: {"model": ErrorBody, "description": _DESCRIPTIONS[status]} for status in statuses}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, *, details: list[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []
        self.headers = headers or {}


def error_response(status: int, code: str, message: str, *, details: list[dict[str, Any]] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorBody(code=code, message=message, details=details or [])
    return JSONResponse(body.to_wire(), status_code=status, headers=headers)


def field_path(location: tuple[Any, ...] | list[Any]) -> str:
    """pydantic's loc ('body', 'spec', 'regions', 0, 'name') as a Kubernetes-style path spec.regions[0].name."""
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += ("." if path else "") + str(part)
    return path


def validation_details(errors: list[dict[str, Any]], *, drop_prefix: int = 0, prefix: str = "") -> list[dict]:
    """pydantic errors as {field, message, reason}, without the offending input."""
    details = []
    for error in errors:
        location = list(error.get("loc", ()))[drop_prefix:]
        if location[:1] == ["body"]:  # paths are relative to the JSON body the client sent
            location = location[1:]
        # pydantic appends the function name for model validators; a "[...]" union branch name is noise too.
        location = [part for part in location if not (isinstance(part, str) and part.startswith("function-"))]
        message = str(error.get("msg", "invalid"))[:500]
        if "[key]" in location:  # a refused dict key: the key itself is input (a value pasted as a key), not a path
            location = location[:max(location.index("[key]") - 1, 0)]
            message = f"a key name is not valid: {message}"
        path = field_path(location)
        if prefix:
            path = f"{prefix}.{path}" if path else prefix
        details.append({"field": path, "message": message,
                        "reason": str(error.get("type", "invalid"))})
    return details


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, error: ApiError) -> JSONResponse:
        return error_response(error.status, error.code, error.message, details=error.details,
                              headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        details = validation_details(list(error.errors()))
        where = ", ".join(d["field"] for d in details[:5]) or "the request"
        return error_response(422, "invalid_request", f"The request is not valid; see details ({where}).",
                              details=details)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        codes = {404: ("not_found", "No such endpoint; see /docs for the API."),
                 405: ("method_not_allowed", "This endpoint does not take that method; see /docs."),
                 413: ("request_too_large", "The request body is too large.")}
        code, message = codes.get(error.status_code, ("http_error", str(error.detail)))
        return error_response(error.status_code, code, message, headers=getattr(error, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        # With its traceback (redacted like every line): a 500 is a bug, and the traceback is where it is. The
        # caller's trace id (a well-formed W3C traceparent, else none) is what the caller will report; it is a
        # field of its own, never the line's trace_id: traces are the platform's, a caller only links to them.
        log.error("unhandled error", path=request.url.path, method=request.method,
                  error_type=type(error).__name__, caller_trace_id=_caller_trace_id(request), exc_info=error)
        return error_response(500, "internal_error", "The gateway failed to handle this request; it was logged."
                                                     " Try again, and report it if it persists.")


def _caller_trace_id(request: Request) -> str | None:
    context = trace.get_current_span(context_from_traceparent(request.headers.get("traceparent"))).get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None

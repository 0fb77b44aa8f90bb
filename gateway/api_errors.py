"""Every error the gateway answers is an RFC 9457 problem (`application/problem+json`), whatever raised it.

The standard members (type, title, status, detail, instance) come first; the gateway's own members stay as
extension members, unchanged since before problems: `code` (stable, machine-readable), `message` (what to do;
the same text as `detail`) and `details` (one entry per field: `field` as a dotted path, and `pointer`, an
RFC 6901 JSON pointer, when the field is one of the request body). So a client that read `code` and `message` before
reads them still, and a generic problem+json client gets what it expects.

The problem type is `urn:voxfleet:problem:<code>`: one type per code, stable as the codes are. `instance` is a
fresh `urn:uuid:` per occurrence, logged with every 5xx, so a tenant can quote it and the platform team can find
the log line; it is never the request path (paths are tenant input and are not echoed into anyone's logs).

Validation errors list the field path and the problem, never the rejected input: a request body may hold a
secret the caller pasted in the wrong place, and an error body must not echo it back into someone's logs.
429 and 503 always carry Retry-After (the raiser's figure, else the gateway's setting).
"""

from __future__ import annotations

import json
import uuid
from http import HTTPStatus
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from opentelemetry import trace
from pydantic import ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from voxfleet.api.model_base import ApiModel
from voxfleet.telemetry.tracing import context_from_traceparent

log = structlog.get_logger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_PREFIX = "urn:voxfleet:problem:"
DEFAULT_RETRY_AFTER_SECONDS = 1  # only when neither the raiser nor the gateway's settings name one
STANDARD_MEMBERS = ("type", "title", "status", "detail", "instance")


class ProblemDetails(ApiModel):
    """RFC 9457 problem details, with the gateway's own members (code, message, details) as extensions. Other
    extension members may follow (a refusal names what it needs to: a limit, its use, when it resets)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="The problem type: urn:voxfleet:problem:<code>.",
                      examples=["urn:voxfleet:problem:agent_not_found"])
    title: str = Field(description="A short summary of the problem type (the same for every occurrence).")
    status: int = Field(description="The HTTP status code of this answer.")
    detail: str = Field(description="What went wrong in this occurrence and what to do about it.")
    instance: str = Field(description="This occurrence (urn:uuid:...); quote it when reporting a problem.")
    code: str = Field(description="Stable machine-readable error code, e.g. agent_not_found.")
    message: str = Field(description="The same as detail (kept for clients of the earlier error body).")
    details: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Per-field problems: {field (dotted path), pointer (RFC 6901, when the field is in the request"
                    " body), message, reason}.")


_DESCRIPTIONS = {
    400: "Malformed request.", 401: "No valid API key (or webhook signature).",
    403: "Not allowed for this tenant (region, quota, or the tenant is unavailable).",
    404: "Not found for this tenant.",
    409: "Conflict (a concurrent change, or a repeated webhook delivery).", 412: "The If-Match or If-None-Match"
    " precondition does not hold: the resource changed since it was read (or exists already).",
    413: "Request body too large.", 422: "Invalid request; details name each field.",
    429: "Rate, session or spend limit exceeded; see Retry-After.",
    502: "The cluster answered unexpectedly; retry.", 503: "No capacity or not ready yet; see Retry-After.",
}


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries: these statuses answer a problem (replacing FastAPI's default 422). The media
    type becomes application/problem+json in the published document (voxfleet.gateway.openapi_document)."""
    return {status: {"model": ProblemDetails, "description": _DESCRIPTIONS[status]} for status in statuses}


class ApiError(Exception):
    """Raise it anywhere in a request: the handler answers it as a problem. `extensions` are further members
    of the problem body (JSON values; never a secret, never the tenant's rejected input)."""

    def __init__(self, status: int, code: str, message: str, *, details: list[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None, extensions: dict[str, Any] | None = None):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []
        self.headers = headers or {}
        self.extensions = extensions or {}


def problem_title(code: str) -> str:
    """The problem type's title, derived from its code: agent_not_found -> 'Agent not found'."""
    words = code.replace("_", " ").replace("-", " ").strip()
    return (words[:1].upper() + words[1:]) or "Error"


def problem_body(status: int, code: str, message: str, *, details: list[dict[str, Any]] | None = None,
                 extensions: dict[str, Any] | None = None, instance: str | None = None) -> dict[str, Any]:
    """The JSON body of a problem: the RFC 9457 members, then code/message/details, then the extensions (which
    never replace a member above)."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_PREFIX + code, "title": problem_title(code), "status": status, "detail": message,
        "instance": instance or f"urn:uuid:{uuid.uuid4()}",
        "code": code, "message": message, "details": list(details or []),
    }
    for name, value in (extensions or {}).items():
        body.setdefault(name, value)
    return body


def problem_headers(status: int, headers: dict[str, str] | None, *, retry_after_seconds: int | None = None
                    ) -> dict[str, str]:
    """The answer's headers: the raiser's, plus Retry-After on every 429 and 503 that lacks one."""
    merged = dict(headers or {})
    if status in (429, 503) and not any(name.lower() == "retry-after" for name in merged):
        merged["Retry-After"] = str(retry_after_seconds or DEFAULT_RETRY_AFTER_SECONDS)
    return merged


def problem_response(status: int, code: str, message: str, *, details: list[dict[str, Any]] | None = None,
                     headers: dict[str, str] | None = None, extensions: dict[str, Any] | None = None,
                     retry_after_seconds: int | None = None, instance: str | None = None) -> JSONResponse:
    body = problem_body(status, code, message, details=details, extensions=extensions, instance=instance)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE,
                        headers=problem_headers(status, headers, retry_after_seconds=retry_after_seconds))


error_response = problem_response  # the name before problems, for code written against it


def problem_bytes(status: int, code: str, message: str) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """A problem as raw body and headers, for ASGI middleware that answers before any route runs."""
    body = json.dumps(problem_body(status, code, message)).encode()
    headers = [(b"content-type", PROBLEM_MEDIA_TYPE.encode()), (b"content-length", str(len(body)).encode())]
    headers += [(name.lower().encode(), value.encode()) for name, value in problem_headers(status, None).items()]
    return body, headers


def field_path(location: tuple[Any, ...] | list[Any]) -> str:
    """pydantic's loc ('body', 'spec', 'regions', 0, 'name') as a Kubernetes-style path spec.regions[0].name."""
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += ("." if path else "") + str(part)
    return path


_NOT_IN_BODY = ("query", "path", "header", "cookie")


def json_pointer(location: list[Any]) -> str:
    """A location in the request body as an RFC 6901 JSON pointer: ['regions', 0, 'name'] -> /regions/0/name."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in location)


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
        detail = {"field": path, "message": message, "reason": str(error.get("type", "invalid"))}
        if not prefix and location and location[0] not in _NOT_IN_BODY:  # where in the body, as a pointer
            detail["pointer"] = json_pointer(location)
        details.append(detail)
    return details


def _retry_after_setting(request: Request) -> int | None:
    runtime = getattr(request.app.state, "runtime", None)
    settings = getattr(runtime, "settings", None)
    return getattr(settings, "retry_after_seconds", None)


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, error: ApiError) -> JSONResponse:
        return problem_response(error.status, error.code, error.message, details=error.details,
                                headers=error.headers, extensions=error.extensions,
                                retry_after_seconds=_retry_after_setting(request))

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        details = validation_details(list(error.errors()))
        where = ", ".join(d["field"] for d in details[:5]) or "the request"
        return problem_response(422, "invalid_request", f"The request is not valid; see details ({where}).",
                                details=details)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        codes = {404: ("not_found", "No such endpoint; see /docs for the API."),
                 405: ("method_not_allowed", "This endpoint does not take that method; see /docs."),
                 413: ("request_too_large", "The request body is too large.")}
        fallback = HTTPStatus(error.status_code).phrase if error.status_code in HTTPStatus._value2member_map_ \
            else "HTTP error"
        code, message = codes.get(error.status_code, ("http_error", str(error.detail or fallback)))
        return problem_response(error.status_code, code, message, headers=getattr(error, "headers", None),
                                retry_after_seconds=_retry_after_setting(request))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        # With its traceback (redacted like every line): a 500 is a bug, and the traceback is where it is. The
        # caller's trace id (a well-formed W3C traceparent, else none) is what the caller will report; it is a
        # field of its own, never the line's trace_id: traces are the platform's, a caller only links to them.
        # The problem's instance is in the line too: it is what a tenant quotes from the answer.
        instance = f"urn:uuid:{uuid.uuid4()}"
        log.error("unhandled error", path=request.url.path, method=request.method, instance=instance,
                  error_type=type(error).__name__, caller_trace_id=_caller_trace_id(request), exc_info=error)
        return problem_response(500, "internal_error", "The gateway failed to handle this request; it was logged."
                                                       " Try again, and report it (with this problem's instance) if"
                                                       " it persists.", instance=instance)


def _caller_trace_id(request: Request) -> str | None:
    context = trace.get_current_span(context_from_traceparent(request.headers.get("traceparent"))).get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None

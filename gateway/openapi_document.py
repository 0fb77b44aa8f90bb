"""The tenant API's OpenAPI document, as published (docs/openapi.json) and served (/openapi.json).

FastAPI writes the document from the routes; this module settles what FastAPI leaves to chance:
- operationIds: stable and readable, from each route function's name in camelCase (`list_agents` ->
  `listAgents`, `create_session` -> `createSession`), unless a route sets its own. Route functions are named
  verb_noun for that reason; a duplicate fails the document (and the test that compares it) instead of
  FastAPI's path-derived ids (`list_agents_v1_agents_get`) that change when a path does.
- errors: every 4xx/5xx answer is `application/problem+json` (voxfleet.gateway.api_errors.ProblemDetails),
  FastAPI's default 422 schema included.
- headers: the RateLimit-* headers on every answer of a route that takes the tenant's key, Retry-After on 429
  and 503, Location on 201.

Regenerate the published copy after changing a route (tests/gateway/test_api_conventions.py compares it with
what a running gateway serves):

    .venv/bin/voxfleet gateway openapi > docs/openapi.json
"""

from __future__ import annotations

import copy
import json
import sys
from types import SimpleNamespace
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from voxfleet.gateway.api_errors import PROBLEM_MEDIA_TYPE

PUBLISHED_PATH = "docs/openapi.json"
REGENERATE = ".venv/bin/voxfleet gateway openapi > docs/openapi.json"
PROBLEM_REF = "#/components/schemas/ProblemDetails"
_FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")

_RATE_LIMIT_HEADERS = {
    "RateLimit-Limit": "Requests the tenant may send at once (the bucket of this gateway replica).",
    "RateLimit-Remaining": "Requests left in the bucket now.",
    "RateLimit-Reset": "Seconds until the bucket is full again.",
    "RateLimit-Policy": "The limit and its window: `<limit>;w=<seconds>`.",
}


def operation_id(route: Any) -> str:
    """camelCase of the route function's name: list_agents -> listAgents (FastAPI's generate_unique_id_function)."""
    first, *rest = route.name.split("_")
    return first + "".join(word[:1].upper() + word[1:] for word in rest)


def install(app: FastAPI) -> None:
    """Before any route is added: operationIds from route names. Then serve the settled document at the app's
    openapi_url (built once, on first use: every route is in by then)."""
    app.router.generate_unique_id_function = operation_id

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def document(app: FastAPI) -> dict[str, Any]:
    doc = get_openapi(title=app.title, version=app.version, openapi_version=app.openapi_version,
                      summary=app.summary, description=app.description, routes=app.routes, tags=app.openapi_tags,
                      servers=app.servers, separate_input_output_schemas=app.separate_input_output_schemas)
    seen: dict[str, str] = {}
    for path, path_item in doc.get("paths", {}).items():
        for method, operation in path_item.items():
            name, where = operation.get("operationId"), f"{method.upper()} {path}"
            if name in seen:
                raise RuntimeError(f"operationId {name!r} of {where} is also that of {seen[name]}: rename one route"
                                   " function (operationIds are their names in camelCase)")
            seen[name] = where
    return settle(doc)


def settle(doc: dict[str, Any]) -> dict[str, Any]:
    """Problems as application/problem+json (FastAPI's own 422 schema replaced), rate-limit headers documented."""
    doc = copy.deepcopy(doc)
    for path_item in doc.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            takes_key = bool(operation.get("security"))
            for status, answer in operation["responses"].items():
                _settle_answer(status, answer, takes_key)
    schemas = doc.get("components", {}).get("schemas", {})
    if not _refers_to(doc, _FASTAPI_VALIDATION_SCHEMAS):
        for name in _FASTAPI_VALIDATION_SCHEMAS:
            schemas.pop(name, None)
    return doc


def _settle_answer(status: str, answer: dict[str, Any], takes_key: bool) -> None:
    is_error = status[:1] in ("4", "5")
    content = answer.get("content") or {}
    if is_error:
        json_schema = (content.pop("application/json", None) or {}).get("schema")
        if json_schema is None or json_schema.get("$ref", "").endswith("/HTTPValidationError"):
            json_schema = {"$ref": PROBLEM_REF}
        content[PROBLEM_MEDIA_TYPE] = {"schema": json_schema}
        answer["content"] = content
    headers = answer.setdefault("headers", {})
    if takes_key:
        for name, description in _RATE_LIMIT_HEADERS.items():
            kind = "string" if name == "RateLimit-Policy" else "integer"
            headers.setdefault(name, {"description": description, "schema": {"type": kind}})
    if status == "201":
        headers.setdefault("Location", {"description": "Where the new resource is read from.",
                                        "schema": {"type": "string"}})
    if status in ("429", "503"):
        headers.setdefault("Retry-After", {"description": "Seconds to wait before retrying.",
                                           "schema": {"type": "integer"}})
    if not headers:
        answer.pop("headers")


def _refers_to(doc: dict[str, Any], names: tuple[str, ...]) -> bool:
    text = json.dumps({key: value for key, value in doc.items() if key != "components"})
    text += json.dumps({name: schema for name, schema in doc.get("components", {}).get("schemas", {}).items()
                        if name not in names})
    return any(f'"#/components/schemas/{name}"' in text for name in names)


def render(doc: dict[str, Any]) -> str:
    """The published form: indented, keys in FastAPI's order, one trailing newline."""
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def offline_app() -> FastAPI:
    """The tenant API's app without a cluster, for writing the document: create_app with default settings and a
    runtime that is never started (no lifespan runs, no request is served)."""
    from voxfleet.gateway.app import create_app
    from voxfleet.gateway.settings import GatewaySettings

    settings = GatewaySettings.model_construct()  # the defaults; the document does not depend on settings
    return create_app(settings, runtime=SimpleNamespace(settings=settings, metrics=None, database=None))  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    """`voxfleet gateway openapi`: print the document (the published copy is this output)."""
    if argv:
        print(f"usage: voxfleet gateway openapi > {PUBLISHED_PATH}", file=sys.stderr)
        return 2
    sys.stdout.write(render(offline_app().openapi()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""OpenAPI links between the tenant API's operations: what a response lets a client do next (an agent just
written -> start a session with it; a session just started -> read it, read its eval record, end it; a secret
just written -> read its keys, delete it).
Generated clients and stateful API fuzzers (schemathesis, tests/security/test_stateful_fuzzing.py) follow them.
"""

from __future__ import annotations

from typing import Any


def _operation(path: str, method: str) -> str:
    """A JSON pointer to an operation of this document (RFC 6901: '/' is written '~1')."""
    return "#/paths/" + path.replace("~", "~0").replace("/", "~1") + "/" + method


AFTER_AGENT_WRITE: dict[str, Any] = {
    "CreateSession": {"operationRef": _operation("/v1/agents/{agent}/sessions", "post"),
                      "parameters": {"agent": "$request.path.agent"},
                      "description": "Start a session with the agent just written."},
}

AFTER_SESSION_CREATE: dict[str, Any] = {
    "ReadSession": {"operationRef": _operation("/v1/sessions/{session_id}", "get"),
                    "parameters": {"session_id": "$response.body#/sessionId"}},
    "ReadSessionEval": {"operationRef": _operation("/v1/sessions/{session_id}/eval", "get"),
                        "parameters": {"session_id": "$response.body#/sessionId"}},
    "EndSession": {"operationRef": _operation("/v1/sessions/{session_id}", "delete"),
                   "parameters": {"session_id": "$response.body#/sessionId"}},
}

AFTER_SECRET_WRITE: dict[str, Any] = {
    "ReadSecret": {"operationRef": _operation("/v1/secrets/{name}", "get"), "parameters": {"name": "$request.path.name"},
                   "description": "Read the keys of the secret just written (never its values)."},
    "DeleteSecret": {"operationRef": _operation("/v1/secrets/{name}", "delete"),
                     "parameters": {"name": "$request.path.name"}},
}

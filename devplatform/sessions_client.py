"""The gateway's tenant API as a caller uses it: list agents, start a session (`POST /v1/agents/{agent}/sessions`).

Refusals become a `GatewayRefused` whose message says what to do: a wrong key, an unknown agent, no free
capacity (503, with the gateway's Retry-After), a rate limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

TIMEOUT_S = 15.0

_HINTS = {
    401: "the API key was refused: create one with `voxfleet keys create --tenant <tenant>` (voxfleet dev prints one)",
    403: "this tenant may not do that (a region or quota limit)",
    404: "the gateway has no such agent for this tenant: list them with `voxfleet call --list`",
    429: "rate limited by the gateway",
    503: "no capacity: no warm worker of this agent has a free slot right now",
}


class GatewayUnreachable(RuntimeError):
    """No answer at all (nothing listens, a timeout): say where we looked."""


class GatewayRefused(RuntimeError):
    def __init__(self, status: int, code: str, message: str, retry_after: str | None = None):
        self.status, self.code, self.retry_after = status, code, retry_after
        hint = _HINTS.get(status)
        text = f"the gateway answered {status} {code}: {message}"
        if hint:
            text += f" ({hint})"
        if retry_after:
            text += f"; retry after {retry_after} s"
        super().__init__(text)


@dataclass(frozen=True)
class SessionGrant:
    """What the sessions API answers: where to join and with which token."""
    session_id: str
    room: str
    url: str
    token: str
    region: str
    raw: dict[str, Any]

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> "SessionGrant":
        try:
            return cls(session_id=str(body.get("sessionId") or body.get("id") or ""), room=str(body["room"]),
                       url=str(body.get("livekitUrl") or body["url"]), token=str(body["token"]),
                       region=str(body.get("region") or ""), raw=body)
        except KeyError as missing:
            raise ValueError(f"the sessions API answer has no {missing} field: {sorted(body)}") from None


class GatewayClient:
    def __init__(self, base_url: str, api_key: str, *, timeout: float = TIMEOUT_S):
        self.base_url = base_url
        self._http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout,
                                  headers={"Authorization": f"Bearer {api_key}"})

    def __enter__(self) -> "GatewayClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def agents(self) -> list[dict[str, Any]]:
        return self._json(self._send("GET", "/v1/agents")).get("items", [])

    def start_session(self, agent: str, *, metadata: dict[str, Any] | None = None) -> SessionGrant:
        body: dict[str, Any] = {"metadata": metadata} if metadata else {}
        return SessionGrant.from_body(self._json(self._send("POST", f"/v1/agents/{agent}/sessions", json=body)))

    def _send(self, method: str, path: str, **kwargs) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise GatewayUnreachable(f"cannot reach the gateway at {self.base_url}: {error} (is voxfleet dev "
                                     f"running? pass --gateway)") from None

    @staticmethod
    def _json(response: httpx.Response) -> dict[str, Any]:
        if response.status_code >= 400:
            try:
                error = response.json()
            except ValueError:
                error = {}
            if not isinstance(error, dict):
                error = {}
            raise GatewayRefused(response.status_code, str(error.get("code") or "error"),
                                 str(error.get("message") or response.text[:200]),
                                 response.headers.get("Retry-After"))
        return response.json()

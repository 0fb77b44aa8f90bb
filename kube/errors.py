"""What a failed call to the apiserver raises: one exception family for every component.

`status` is the HTTP code, `body` the apiserver's Status object as it sent it (reason, message, details.causes),
so a caller can answer a tenant with the field the apiserver named without parsing a message string.
"""

from __future__ import annotations

import json
from typing import Any


class KubeApiError(RuntimeError):
    """A non-2xx answer (or a watch ERROR event). `status`: HTTP code; `body`: the Status object."""

    def __init__(self, status: int, body: dict[str, Any] | None = None):
        self.status = status
        self.body: dict[str, Any] = body or {}
        self.reason: str = str(self.body.get("reason") or "")
        self.message: str = str(self.body.get("message") or "")
        super().__init__(f"{status} {self.reason}: {self.message}".strip())

    @property
    def causes(self) -> list[dict[str, Any]]:
        """details.causes of the Status (field, reason, message per invalid field), empty when there are none."""
        return list((self.body.get("details") or {}).get("causes") or [])


class NotFound(KubeApiError):
    """404: the object (or its namespace, or its resource type) does not exist."""


class Conflict(KubeApiError):
    """409: already exists, a resourceVersion/uid precondition failed, or a server-side apply field conflict."""


class Gone(KubeApiError):
    """410: a watch's or list's resourceVersion is older than the apiserver keeps; list again."""


class Unauthorized(KubeApiError):
    """401 even after the credentials were refreshed once."""


class Forbidden(KubeApiError):
    """403: RBAC or an admission policy refused it."""


class Invalid(KubeApiError):
    """422: the object failed validation (schema, CEL rules); `causes` names the fields."""


_BY_STATUS: dict[int, type[KubeApiError]] = {401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict,
                                             410: Gone, 422: Invalid}


def error_for(status: int, body: dict[str, Any] | None) -> KubeApiError:
    return _BY_STATUS.get(status, KubeApiError)(status, body)


def error_from_text(status: int, text: str) -> KubeApiError:
    """The error for an HTTP answer whose body may be a Status object, or anything else a proxy sent."""
    try:
        body = json.loads(text) if text else {}
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {"message": text[:500]}
    return error_for(status, body)

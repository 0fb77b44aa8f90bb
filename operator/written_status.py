"""The status the operator last wrote to each object, until the informer delivers the object's next version.

Reconcilers compare the status they compute with the object's current one and write only a difference. Between
our status write and its echo on the watch (milliseconds, longer on a busy apiserver) the informer still holds the
version we computed from: compared with that, the same status would be written again, and conditions would get a
second lastTransitionTime. So until the informer's copy moves past the version a write was based on, the status we
wrote stands in as the current one. (The informer's store stays the apiserver's: nothing is written into it.)
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any


class WrittenStatus:
    def __init__(self) -> None:
        self._written: dict[Hashable, tuple[str, dict[str, Any]]] = {}  # key -> (based-on version, status)

    def current(self, key: Hashable, body: dict[str, Any]) -> dict[str, Any]:
        """The object's status as it is once our last write is in: ours while the informer has not caught up."""
        written = self._written.get(key)
        version = (body.get("metadata") or {}).get("resourceVersion")
        if written is not None and written[0] == version:
            return written[1]
        self._written.pop(key, None)  # the informer has a newer version: it carries our write (or a later one)
        return body.get("status") or {}

    def wrote(self, key: Hashable, body: dict[str, Any], status: dict[str, Any]) -> None:
        """We merge-patched `status` onto the object while the informer held `body`."""
        self._written[key] = ((body.get("metadata") or {}).get("resourceVersion") or "", status)

    def forget(self, key: Hashable) -> None:
        self._written.pop(key, None)

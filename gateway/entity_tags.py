"""ETags and conditional requests (RFC 9110 section 13) for resources the gateway keeps in Kubernetes.

An agent's ETag names the version of its spec: the object's uid and its metadata.generation, which the apiserver
raises on every change of the spec and never on a status update (VoiceAgent has a status subresource). So the
tag stays put while the operator reports workers and free slots, and moves on every edit, by anyone: a client
that sends it back in If-Match writes only onto the spec it read, and a concurrent edit makes its write a 412
instead of a silent lost update. The uid makes a deleted and re-created agent a different resource (its
generation starts at 1 again). The tag is strong (If-Match compares strongly): it stands for the spec, which is
what a write replaces.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_ENTITY_TAG = re.compile(r'\s*(W/)?"([\x21\x23-\x7e\x80-\xff]*)"\s*')
MAX_TAGS = 50  # a header listing more is refused as malformed: each is compared, the list is tenant input


def spec_etag(obj: dict[str, Any]) -> str:
    """The strong ETag of a Kubernetes object's spec: "<uid>.<generation>"."""
    meta = obj.get("metadata") or {}
    return f'"{meta.get("uid", "")}.{int(meta.get("generation") or 0)}"'


@dataclass(frozen=True)
class Condition:
    """A parsed If-Match or If-None-Match header: `*`, or a list of entity tags (weak ones flagged)."""

    any: bool
    tags: tuple[tuple[bool, str], ...]  # (weak, opaque tag with its quotes)

    def matches_strongly(self, current: str | None) -> bool:
        """If-Match: true when the resource exists and (for a list) one strong tag equals its current tag."""
        if current is None:
            return False
        return self.any or any(not weak and tag == current for weak, tag in self.tags)

    def matches_weakly(self, current: str | None) -> bool:
        """If-None-Match: true when the resource exists and (for a list) one tag equals its tag, weak or not."""
        if current is None:
            return False
        return self.any or any(tag == current for _, tag in self.tags)


class MalformedCondition(ValueError):
    pass


def parse_condition(header: str | None) -> Condition | None:
    """None when the header is absent; MalformedCondition when it is neither `*` nor a list of entity tags."""
    if header is None:
        return None
    if header.strip() == "*":
        return Condition(any=True, tags=())
    tags = []
    for part in _split(header):
        match = _ENTITY_TAG.fullmatch(part)
        if match is None:
            raise MalformedCondition("not an entity tag: send the ETag exactly as received, quotes included")
        tags.append((match.group(1) is not None, f'"{match.group(2)}"'))
        if len(tags) > MAX_TAGS:
            raise MalformedCondition(f"more than {MAX_TAGS} entity tags")
    if not tags:
        raise MalformedCondition("no entity tag")
    return Condition(any=False, tags=tuple(tags))


def _split(header: str) -> list[str]:
    """Commas separate tags, but a tag's opaque part may hold none (RFC 9110 etagc excludes only DQUOTE, so a
    comma can be inside quotes): split outside quotes only."""
    parts, current, quoted = [], "", False
    for char in header:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [part for part in parts if part.strip()]

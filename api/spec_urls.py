"""Every outbound URL a VoiceAgent spec names, with the field that names it, and the check made when the spec
is written.

A host name is checked where the connection is made (its DNS answer may change until then). An IP-literal host
never changes, so the outbound policy judges it at admission: the tenant hears at once which field is refused
and why, instead of a tool or provider that fails on every call. Every spelling of an address counts (decimal,
octal and hex IPv4 numbers, short forms, IPv4-mapped, NAT64 and 6to4 IPv6): `OutboundPolicy.check_url` reads
them all as the address they are.
"""

from __future__ import annotations

from dataclasses import dataclass

from voxfleet.api.outbound import OutboundPolicy, OutboundURLRefused
from voxfleet.api.voiceagent import VoiceAgentSpec


@dataclass(frozen=True)
class SpecUrl:
    field: str  # path inside the spec, e.g. tools[0].http.url
    url: str
    what: str  # for messages: "tool 'lookup_order'", "the llm provider"


@dataclass(frozen=True)
class UrlRefusal:
    field: str
    message: str


def spec_urls(spec: VoiceAgentSpec) -> list[SpecUrl]:
    found = []
    for stage in ("stt", "llm", "tts"):
        base_url = getattr(spec.pipeline, stage).base_url
        if base_url:
            found.append(SpecUrl(f"pipeline.{stage}.baseUrl", base_url, f"the {stage} provider"))
    for index, tool in enumerate(spec.tools):
        found.append(SpecUrl(f"tools[{index}].http.url", tool.http.url, f"tool {tool.name!r}"))
    return found


def url_refusals(spec: VoiceAgentSpec, policy: OutboundPolicy) -> list[UrlRefusal]:
    """The URLs the outbound policy refuses without resolving anything (IP literals, metadata hosts, schemes,
    credentials in the URL), each with its field and what to change."""
    refusals = []
    for item in spec_urls(spec):
        try:
            policy.check_url(item.url)
        except OutboundURLRefused as refused:
            refusals.append(UrlRefusal(item.field, f"{item.what}: {refused}. Use a public host name or address;"
                                                   " the platform team can allow a private network."))
    return refusals

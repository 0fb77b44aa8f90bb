"""The outbound policy at admission: every URL a spec names is found with its field, and IP-literal hosts in
denied ranges are refused in every spelling before anything connects (no DNS is consulted)."""

from __future__ import annotations

import copy

import pytest

from tests.api.invalid_resources import VALID_AGENT_SPEC
from voxfleet.api.outbound import OutboundPolicy
from voxfleet.api.spec_urls import spec_urls, url_refusals
from voxfleet.api.voiceagent import VoiceAgentSpec

STRICT = OutboundPolicy()
TESTS_ALLOW_LOOPBACK = OutboundPolicy(["127.0.0.1/32"])  # what the test world's platform settings allow

# 169.254.169.254 (cloud metadata) and other denied targets, spelled every way a resolver or browser reads them.
DENIED_HOSTS = [
    "169.254.169.254", "2852039166", "0xa9fea9fe", "0251.0376.0251.0376", "169.254.43518", "0xa9.0xfe.0xa9.0xfe",
    "[::ffff:169.254.169.254]", "[::ffff:a9fe:a9fe]", "[64:ff9b::a9fe:a9fe]", "[2002:a9fe:a9fe::]",
    "127.1", "0.0.0.0", "0", "[::1]", "[::]", "10.1.2.3", "192.168.0.10", "172.16.5.4", "100.64.0.1",
    "[fd12::1]", "[fe80::1]", "[64:ff9b:1::1]", "metadata.google.internal",
]


def _spec_with(tool_url: str, llm_base_url: str | None = None) -> VoiceAgentSpec:
    spec = copy.deepcopy(VALID_AGENT_SPEC)
    spec["tools"] = [{**spec["tools"][0], "http": {"url": tool_url}}]
    if llm_base_url:
        spec["pipeline"] = {"llm": {"provider": "openai", "baseUrl": llm_base_url}}
    return VoiceAgentSpec.model_validate(spec)


def test_every_url_is_found_with_its_field():
    spec = _spec_with("https://tools.example.com/lookup", "https://llm.example.com/v1")
    assert [(u.field, u.url) for u in spec_urls(spec)] == [
        ("pipeline.llm.baseUrl", "https://llm.example.com/v1"), ("tools[0].http.url", "https://tools.example.com/lookup")]


@pytest.mark.parametrize("host", DENIED_HOSTS)
def test_denied_ip_literals_are_refused_at_admission_in_every_spelling(host):
    refusals = url_refusals(_spec_with(f"http://{host}/x", f"http://{host}:8080/v1"), STRICT)
    assert [r.field for r in refusals] == ["pipeline.llm.baseUrl", "tools[0].http.url"]
    assert all("refused" in r.message and "tool 'lookup_order'" in refusals[1].message for r in refusals)


@pytest.mark.parametrize("host", ["169.254.169.254", "2852039166", "[::ffff:169.254.169.254]", "[fd00:ec2::254]"])
def test_metadata_addresses_stay_refused_even_where_the_platform_allows_private_networks(host):
    everything = OutboundPolicy(["0.0.0.0/0", "::/0"])
    refusals = url_refusals(_spec_with(f"http://{host}/x"), everything)
    assert refusals and "metadata" in refusals[0].message


@pytest.mark.parametrize("url", ["https://tools.example.com/x", "http://93.184.215.14/x", "https://[2606:4700::1111]/",
                                 "http://internal.corp.example/x"])  # host names are judged at connect time
def test_public_addresses_and_host_names_pass_admission(url):
    assert url_refusals(_spec_with(url), STRICT) == []


def test_the_platforms_allowed_networks_pass(url="http://127.0.0.1:8765/tool"):
    assert url_refusals(_spec_with(url), TESTS_ALLOW_LOOPBACK) == []
    assert url_refusals(_spec_with("http://127.1:8765/tool"), TESTS_ALLOW_LOOPBACK) == []  # the same address
    assert url_refusals(_spec_with("http://127.0.0.2/tool"), TESTS_ALLOW_LOOPBACK) != []

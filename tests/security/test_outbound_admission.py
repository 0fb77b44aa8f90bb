"""Attacks on the outbound policy, tried through the REST API as a tenant would:

- tool and provider URLs whose host is an IP literal in a denied range, in every spelling (decimal, hex and
  octal IPv4 numbers, short forms, IPv4-mapped, NAT64 and 6to4 IPv6): 422 at PUT naming the field, instead of a
  tool that silently fails at call time; the platform's test allow-list (127.0.0.1/32) stays allowed, and
  metadata addresses never are, whatever the allow-list;
- a tool's JSON Schema `$ref` to the listener's URL (jsonschema's remote resolver fetched such URLs from the
  worker, outside the outbound policy): refused at PUT naming the field, and the listener receives nothing.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.gateway.gateway_process import GatewayProcess
from tests.security.hostile_platform import names_field, offline_spec, tool

pytestmark = [pytest.mark.world, pytest.mark.timeout(300)]

DENIED_HOSTS = {
    "169.254.169.254": "metadata, dotted",
    "2852039166": "metadata, one decimal number",
    "0xa9fea9fe": "metadata, one hex number",
    "0251.0376.0251.0376": "metadata, octal parts",
    "169.254.43518": "metadata, three parts",
    "[::ffff:169.254.169.254]": "metadata, IPv4-mapped IPv6",
    "[::ffff:a9fe:a9fe]": "metadata, IPv4-mapped IPv6 in hex",
    "[64:ff9b::a9fe:a9fe]": "metadata, NAT64",
    "[2002:a9fe:a9fe::]": "metadata, 6to4",
    "127.2": "loopback, short form (127.0.0.2: outside the allowed 127.0.0.1/32)",
    "0177.0.0.9": "loopback, octal first part",
    "0.0.0.0": "unspecified",
    "[::1]": "IPv6 loopback",
    "10.0.0.7": "private 10/8",
    "10.1": "private 10/8, short form",
    "192.168.1.10": "private 192.168/16",
    "172.16.0.1": "private 172.16/12",
    "100.64.0.1": "CGNAT",
    "[fd00::1]": "unique local IPv6",
    "[fe80::1]": "link-local IPv6",
    "169.254.170.2": "ECS task metadata",
}
METADATA_SPELLINGS = [host for host, what in DENIED_HOSTS.items() if what.startswith("metadata")] + ["169.254.170.2"]


@pytest.fixture(scope="module")
def tenant(platform):
    return platform.add_tenant("egress")


@pytest.mark.parametrize("host", list(DENIED_HOSTS), ids=list(DENIED_HOSTS.values()))
def test_a_tool_url_with_a_denied_ip_literal_is_refused_at_put_naming_the_field(platform, tenant, host):
    agent = f"egress-tool-{list(DENIED_HOSTS).index(host)}"
    with platform.api(tenant) as http:
        response = http.put(f"/v1/agents/{agent}", json=offline_spec(tools=[
            tool("https://tools.example.com/a"),  # a host name: judged at connect time, fine at admission
            tool(f"http://{host}/latest/meta-data/", name="second")]))
        assert response.status_code == 422, (host, response.text)
        assert names_field(response, "tools[1]", "url"), response.text
        assert not names_field(response, "tools[0]"), response.text
        assert http.get(f"/v1/agents/{agent}").status_code == 404


@pytest.mark.parametrize("host", ["169.254.169.254", "2852039166", "[::ffff:a9fe:a9fe]", "10.0.0.7", "[::1]"])
@pytest.mark.parametrize("stage", ["llm", "stt", "tts"])
def test_a_provider_base_url_with_a_denied_ip_literal_is_refused_at_put_naming_the_field(platform, tenant, host,
                                                                                        stage):
    providers = {"llm": {"provider": "openai", "model": "m"}, "stt": {"provider": "deepgram"},
                 "tts": {"provider": "cartesia", "voice": "v"}}
    pipeline = {"stt": {"provider": "pocketsphinx"}, "llm": {"provider": "scripted"},
                "tts": {"provider": "espeak"}}
    pipeline[stage] = {**providers[stage], "baseUrl": f"http://{host}:8080/v1"}
    if stage != "llm":
        pipeline[stage]["secretRef"] = {"name": "provider-keys", "key": stage}
    with platform.api(tenant) as http:
        response = http.put("/v1/agents/egress-provider", json=offline_spec(pipeline=pipeline))
    assert response.status_code == 422, (stage, host, response.text)
    assert names_field(response, stage, "baseUrl"), response.text


def test_the_platforms_allow_list_stays_allowed(platform, tenant):
    with platform.api(tenant) as http:
        allowed = http.put("/v1/agents/egress-allowed", json=offline_spec(tools=[tool(f"{platform.listener.url}/a")]))
        assert allowed.status_code == 201, allowed.text  # 127.0.0.1/32 is the test platform's allow-list
        assert http.delete("/v1/agents/egress-allowed").status_code == 204


def _gateway_allowing(platform, name: str, cidrs: list[str]) -> GatewayProcess:
    """Another gateway of the same platform (same keys, same cluster) with another outbound allow-list."""
    return GatewayProcess(kubeconfig=platform.kube.kubeconfig, platform_namespace=platform.platform_namespace,
                          log_path=platform.logs / f"gateway-{name}.log",
                          extra_env={**{k: v for k, v in platform.gateway.env.items() if k.startswith("VOXFLEET_")},
                                     "VOXFLEET_OUTBOUND_ALLOWED_CIDRS": json.dumps(cidrs)})


def test_loopback_in_every_spelling_is_refused_when_the_platform_allows_none(platform, tenant):
    strict = _gateway_allowing(platform, "strict", [])
    with strict, httpx.Client(base_url=strict.url, headers=tenant.headers, timeout=30) as http:
        for host in ("127.0.0.1", "127.1", "2130706433", "0x7f000001", "0177.0.0.1", "[::1]", "[::ffff:127.0.0.1]",
                     "[::ffff:7f00:1]", "[64:ff9b::7f00:1]", "[2002:7f00:1::]", "0.0.0.0", "0"):
            response = http.put("/v1/agents/strict", json=offline_spec(tools=[tool(f"http://{host}:8080/a")]))
            assert response.status_code == 422, (host, response.text)
            assert names_field(response, "tools[0]", "url"), response.text


def test_metadata_addresses_stay_refused_even_when_the_platform_allows_every_network(platform, tenant):
    """A gateway of the same platform whose allow-list is everything (0.0.0.0/0 and ::/0)."""
    wide = _gateway_allowing(platform, "wide", ["0.0.0.0/0", "::/0"])
    with wide, httpx.Client(base_url=wide.url, headers=tenant.headers, timeout=30) as http:
        private = http.put("/v1/agents/wide", json=offline_spec(tools=[tool("http://10.0.0.7/a")]))
        assert private.status_code == 201, private.text  # allowed by this platform's choice
        for host in METADATA_SPELLINGS:
            response = http.put("/v1/agents/wide", json=offline_spec(tools=[tool(f"http://{host}/a")]))
            assert response.status_code == 422, (host, response.text)
            assert names_field(response, "tools[0]", "url"), response.text
        assert http.delete("/v1/agents/wide").status_code == 204


def test_a_schema_ref_to_the_listener_is_refused_naming_the_field_and_nothing_is_fetched(platform, tenant):
    before = len(platform.listener.requests())
    schemas = {
        "remote $ref": {"type": "object", "properties": {"q": {"$ref": f"{platform.listener.url}/schema.json"}}},
        "remote $id base": {"$id": f"{platform.listener.url}/base/", "type": "object",
                            "properties": {"q": {"$ref": "other.json"}}},
        "remote $dynamicRef": {"type": "object", "properties": {"q": {"$dynamicRef": f"{platform.listener.url}/d"}}},
    }
    with platform.api(tenant) as http:
        for what, schema in schemas.items():
            response = http.put("/v1/agents/schema-ref", json=offline_spec(
                tools=[tool(f"{platform.listener.url}/t", parameters=schema)]))
            print(f"{what}: {response.status_code} {response.text[:200]}")
            assert response.status_code == 422, (what, response.text)
            assert names_field(response, "tools[0]", "parameters"), (what, response.text)
        local = http.put("/v1/agents/schema-ref", json=offline_spec(tools=[tool(f"{platform.listener.url}/t", parameters={
            "type": "object", "$defs": {"id": {"type": "string", "pattern": "^[0-9]+$"}},
            "properties": {"q": {"$ref": "#/$defs/id"}}})]))
        assert local.status_code == 201, local.text  # a $ref inside the schema itself is fine
    time.sleep(1.0)
    assert platform.listener.requests()[before:] == []

"""The settings `voxfleet dev` gives the operator and gateway parse into their own settings classes, with the
world's LiveKit servers, runner-node placement and the loopback allowance for the demo tool server."""

from __future__ import annotations

import ipaddress

import pytest

from voxfleet.api.settings import PlatformSettings
from voxfleet.devplatform import component_env
from voxfleet.devplatform.component_env import DevSecrets
from voxfleet.world import topology
from voxfleet.world.world import WorldInfo

WORLD = WorldInfo(
    world_id="w1", state_dir="/tmp/w", kubeconfig="/tmp/w/kubeconfig", apiserver_url="https://127.0.0.1:6443",
    livekit=[{"region": r, "url": f"ws://127.0.0.1:{p}", "http_url": f"http://127.0.0.1:{p}", "api_key": "k",
              "api_secret": "s" * 40, "port": p, "rtc_tcp_port": p + 1, "rtc_udp_port": p + 2}
             for r, p in (("us-east", 7880), ("eu-west", 7890))],
    runner_nodes={}, simulated_nodes={}, pods_dir="/tmp/w/pods", pids={}, logs_dir="/tmp/w/logs", slot=0)


def _apply(monkeypatch, env: dict[str, str]) -> None:
    for name in list(__import__("os").environ):
        if name.startswith("VOXFLEET_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def test_gateway_settings_carry_every_world_livekit_and_fresh_secrets(monkeypatch):
    from voxfleet.gateway.settings import GatewaySettings

    dev_secrets = DevSecrets.generate()
    _apply(monkeypatch, component_env.gateway_env(WORLD, dev_secrets, port=8123, operational_port=8124))
    settings = GatewaySettings()
    assert (settings.host, settings.port, settings.operational_port) == ("127.0.0.1", 8123, 8124)
    assert {name: region.url for name, region in settings.regions.items()} == {
        "us-east": "ws://127.0.0.1:7880", "eu-west": "ws://127.0.0.1:7890"}
    assert settings.regions["eu-west"].api_secret.get_secret_value() == "s" * 40
    assert settings.default_caller_region == "us-east"
    assert settings.load_worker_token() == dev_secrets.worker_token
    assert settings.load_session_keys()[0] == dev_secrets.session_signing_key.encode()
    assert DevSecrets.generate() != dev_secrets  # every run has its own


def test_workers_are_placed_on_the_runner_nodes_and_may_call_the_loopback_tool_server(monkeypatch):
    _apply(monkeypatch, component_env.operator_env(WORLD, DevSecrets.generate(), http_port=9000))
    platform = PlatformSettings()
    assert platform.worker_node_selector == topology.RUNNER_NODE_SELECTOR
    assert platform.worker_tolerations == topology.RUNNER_TOLERATIONS
    assert any(ipaddress.ip_address("127.0.0.1") in ipaddress.ip_network(c) for c in platform.outbound_allowed_cidrs)
    assert not any(ipaddress.ip_address("10.0.0.1") in ipaddress.ip_network(c)
                   for c in platform.outbound_allowed_cidrs)
    from voxfleet.operator.settings import OperatorSettings

    operator = OperatorSettings()
    assert (operator.http_host, operator.http_port) == ("127.0.0.1", 9000)


def test_the_worker_token_secret_is_the_one_the_operator_reads(monkeypatch):
    dev_secrets = DevSecrets.generate()
    secret = component_env.worker_token_secret(dev_secrets)
    _apply(monkeypatch, {})
    platform = PlatformSettings()
    assert secret["metadata"] == {"name": platform.worker_token_secret, "namespace": component_env.PLATFORM_NAMESPACE}
    assert secret["stringData"] == {"token": dev_secrets.worker_token}


@pytest.mark.parametrize("regions", [["eu-west"], []])
def test_the_default_caller_region_is_one_the_gateway_serves(monkeypatch, regions):
    world = WorldInfo(**{**WORLD.__dict__, "livekit": [r for r in WORLD.livekit if r["region"] in regions]})
    env = component_env.gateway_env(world, DevSecrets.generate(), port=8000, operational_port=8001)
    assert env["VOXFLEET_DEFAULT_CALLER_REGION"] == (regions[0] if regions else "us-east")


def test_the_gateway_gets_the_store_s_url_when_the_world_has_one(monkeypatch):
    from voxfleet.gateway.settings import GatewaySettings

    url = "postgresql+asyncpg://voxfleet:dev-password-0123456789@127.0.0.1:5544/voxfleet"
    _apply(monkeypatch, component_env.gateway_env(WORLD, DevSecrets.generate(), port=8123, operational_port=8124,
                                                  database_url=url))
    with_store = GatewaySettings()
    assert with_store.load_database_url() == url
    assert "dev-password" not in repr(with_store)  # a SecretStr: settings printed never show it
    _apply(monkeypatch, component_env.gateway_env(WORLD, DevSecrets.generate(), port=8123, operational_port=8124))
    assert GatewaySettings().load_database_url() is None

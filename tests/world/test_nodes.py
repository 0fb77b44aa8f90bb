"""The world's nodes: Ready in three regions, each with its own pod CIDR in 127/8, runner nodes tainted."""

import ipaddress

from kubernetes import client

from voxfleet.world import topology


def _ready(node) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])


def test_nodes_are_ready_in_every_region_and_zone(kube, pods):
    with kube.api_client() as api:
        nodes = client.CoreV1Api(api).list_node().items
    by_region: dict[str, set[str]] = {}
    for node in nodes:
        assert _ready(node), f"{node.metadata.name} is not Ready: {node.status.conditions}"
        by_region.setdefault(node.metadata.labels[topology.REGION_LABEL], set()).add(
            node.metadata.labels[topology.ZONE_LABEL])
    assert by_region == {region: set(zones) for region, zones in topology.REGIONS.items()}
    # One runner node per zone, the rest simulated.
    assert sorted(n for names in pods.nodes.values() for n in names) == sorted(
        f"runner-{zone}" for zones in topology.REGIONS.values() for zone in zones)


def test_pod_cidrs_are_distinct_loopback_blocks(kube):
    with kube.api_client() as api:
        nodes = client.CoreV1Api(api).list_node().items
    loopback = ipaddress.ip_network("127.0.0.0/8")
    reserved = ipaddress.ip_network("127.0.0.0/24")
    cidrs = [ipaddress.ip_network(n.spec.pod_cidr) for n in nodes]
    for cidr in cidrs:
        assert cidr.subnet_of(loopback) and not cidr.overlaps(reserved), cidr
        assert cidr.num_addresses >= 500  # room for the 500 pods a node allows
    assert all(not a.overlaps(b) for i, a in enumerate(cidrs) for b in cidrs[i + 1:])


def test_runner_nodes_are_the_tainted_voice_pool(kube, pods):
    with kube.api_client() as api:
        core = client.CoreV1Api(api)
        for names in pods.nodes.values():
            for name in names:
                node = core.read_node(name)
                assert node.metadata.labels[topology.POOL_LABEL] == topology.VOICE_POOL
                assert [(t.key, t.value, t.effect) for t in node.spec.taints] == [
                    (topology.POOL_LABEL, topology.VOICE_POOL, "NoSchedule")]
                assert {k: node.status.allocatable[k] for k in ("cpu", "memory", "pods")} == {
                    "cpu": "64", "memory": "256Gi", "pods": "500"}


def test_kubectl_and_helm_of_the_world_talk_to_it(kube):
    assert "runner-us-east-a" in kube.kubectl("get", "nodes", "-o", "name").stdout
    assert kube.helm("list", "-A").returncode == 0

"""Simulated nodes: the real scheduler places pods by region affinity, kwok fakes them Running."""

import ipaddress

from kubernetes import client

from voxfleet.world import topology

from .waiting import wait_for


def _deployment(name: str, region: str, replicas: int) -> dict:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [{"matchExpressions": [
                            {"key": topology.REGION_LABEL, "operator": "In", "values": [region]}]}]}}},
                    "containers": [{"name": "worker", "image": "voxfleet/worker:test"}],
                },
            },
        },
    }


def test_region_affinity_puts_pods_only_on_that_regions_simulated_nodes(kube, namespace, pods):
    replicas = 8
    with kube.api_client() as api:
        client.AppsV1Api(api).create_namespaced_deployment(namespace, _deployment("pool", "eu-west", replicas))
        core = client.CoreV1Api(api)

        def running_pods():
            items = core.list_namespaced_pod(namespace, label_selector="app=pool").items
            ready = [p for p in items if p.status.phase == "Running" and p.status.pod_ip]
            return ready if len(ready) == replicas else None

        placed = wait_for(f"{replicas} pods Running", running_pods, timeout=60)
        nodes = {n.metadata.name: n for n in core.list_node().items}
    for pod in placed:
        node = nodes[pod.spec.node_name]
        assert node.metadata.labels[topology.REGION_LABEL] == "eu-west"
        # The taint keeps them off the runner nodes: simulated nodes only.
        assert pod.spec.node_name in pods.simulated_nodes["eu-west"]
        assert ipaddress.ip_address(pod.status.pod_ip) in ipaddress.ip_network(node.spec.pod_cidr)
    # Spread over both zones by the scheduler's default topology spreading.
    assert {nodes[p.spec.node_name].metadata.labels[topology.ZONE_LABEL] for p in placed} == {
        "eu-west-a", "eu-west-b"}

"""The world's nodes: three regions, two zones each, simulated nodes (kwok fakes their pods) and one runner node
per zone (the pod runner runs their pods as real processes).

Every node gets its own ``spec.podCIDR`` inside 127.0.0.0/8, because Linux routes all of 127/8 to ``lo``: a
process bound to a pod IP on its container port answers at podIP:port as in a cluster. The CIDR is
``127.<region><zone>.<slot*32 + 2n>.0/23`` (region and zone numbered from 1, n = 0 for the runner node,
1.. for simulated nodes): a /23 holds the 500 pods a node allows, it never touches 127.0.0.0/24, and two worlds
on one machine (different ``slot``) never hand out the same pod IP. The node's own address (InternalIP, the
pods' hostIP) is the CIDR's last usable address, clear of pod IPs, which are handed out from the bottom.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

REGIONS: dict[str, list[str]] = {
    "us-east": ["us-east-a", "us-east-b"],
    "eu-west": ["eu-west-a", "eu-west-b"],
    "ap-south": ["ap-south-a", "ap-south-b"],
}

REGION_LABEL = "topology.kubernetes.io/region"
ZONE_LABEL = "topology.kubernetes.io/zone"
NODE_KIND_LABEL = "voxfleet.dev/node-kind"  # "simulated" or "runner": how the two kwoks split the nodes
POOL_LABEL = "voxfleet.dev/pool"
VOICE_POOL = "voice"
SIMULATED, RUNNER = "simulated", "runner"
MAX_SLOTS = 8
MAX_SIMULATED_PER_ZONE = 15

# What a pod needs to land on a runner node (the platform's worker placement settings carry the same).
RUNNER_NODE_SELECTOR = {POOL_LABEL: VOICE_POOL}
RUNNER_TOLERATIONS = [{"key": POOL_LABEL, "operator": "Equal", "value": VOICE_POOL, "effect": "NoSchedule"}]

CAPACITY = {"cpu": "64", "memory": "256Gi", "pods": "500", "ephemeral-storage": "1Ti"}


@dataclass(frozen=True)
class NodeSpec:
    name: str
    kind: str  # SIMULATED or RUNNER
    region: str
    zone: str
    pod_cidr: str

    @property
    def node_ip(self) -> str:
        """The node's InternalIP (pods' hostIP): the last usable address of its pod CIDR (answers on lo too)."""
        return str(ipaddress.ip_network(self.pod_cidr)[-2])

    def manifest(self) -> dict:
        labels = {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            REGION_LABEL: self.region,
            ZONE_LABEL: self.zone,
            NODE_KIND_LABEL: self.kind,
            "type": "kwok",  # kwok's convention for its nodes
        }
        taints = []
        if self.kind == RUNNER:
            labels[POOL_LABEL] = VOICE_POOL
            taints = [{"key": POOL_LABEL, "value": VOICE_POOL, "effect": "NoSchedule"}]
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": labels,
                "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            },
            "spec": {"podCIDR": self.pod_cidr, "podCIDRs": [self.pod_cidr], "taints": taints},
            # Status is kept on create (as a kubelet registers itself); kwok's stages only add conditions.
            "status": {
                "capacity": CAPACITY,
                "allocatable": CAPACITY,
                "addresses": [{"type": "InternalIP", "address": self.node_ip},
                              {"type": "Hostname", "address": self.name}],
            },
        }


def nodes(*, simulated_per_zone: int = 2, slot: int = 0) -> list[NodeSpec]:
    if not 0 <= slot < MAX_SLOTS:
        raise ValueError(f"slot must be in 0..{MAX_SLOTS - 1}, got {slot}")
    if not 0 <= simulated_per_zone <= MAX_SIMULATED_PER_ZONE:
        raise ValueError(f"simulated_per_zone must be in 0..{MAX_SIMULATED_PER_ZONE}, got {simulated_per_zone}")
    result = []
    for r, (region, zones) in enumerate(REGIONS.items(), start=1):
        for z, zone in enumerate(zones, start=1):
            def cidr(n: int) -> str:
                return f"127.{r}{z}.{slot * 32 + 2 * n}.0/23"
            result.append(NodeSpec(f"runner-{zone}", RUNNER, region, zone, cidr(0)))
            for n in range(1, simulated_per_zone + 1):
                result.append(NodeSpec(f"sim-{zone}-{n}", SIMULATED, region, zone, cidr(n)))
    return result

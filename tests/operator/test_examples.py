"""Applying examples/ (Tenants, their Secrets and VoiceAgents, with kubectl, as the README says) gives pools whose
pods run only on nodes of their region, with status and printer columns to show it. Names get a per-run suffix
so the shared cluster's other tests may apply the same files. Workers are kwok-simulated pods here."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.operator.conftest import operator_process
from tests.operator.fleet import Fleet, wait_for
from tests.operator.operator_process import SHARD_LABEL, OperatorProcess
from voxfleet.api import labels
from voxfleet.world.access import Cluster, RunnerPool

pytestmark = pytest.mark.world
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def simulated_operator(kube: Cluster, platform_namespace: str, shard: str, operator_logs: Path,
                       fleet: Fleet) -> Iterator[OperatorProcess]:
    process = operator_process(kube, platform_namespace, shard, operator_logs, real_workers=False)
    process.start()
    yield process
    fleet.delete_everything()
    process.stop()


def renamed_examples(shard: str) -> tuple[list[dict], dict[str, str]]:
    """examples/*.yaml with every Tenant (and so its namespace) suffixed, Tenants labelled with our shard."""
    tenants_doc = list(yaml.safe_load_all((EXAMPLES / "tenants.yaml").read_text()))
    namespaces: dict[str, str] = {}
    documents = []
    for tenant in tenants_doc:
        old_name = tenant["metadata"]["name"]
        old_namespace = tenant["spec"].get("namespace") or f"tenant-{old_name}"
        tenant["metadata"]["name"] = f"{old_name}-{shard}"
        tenant["metadata"].setdefault("labels", {})[SHARD_LABEL] = shard
        tenant["spec"]["namespace"] = f"{old_namespace}-{shard}"[:63]
        namespaces[old_namespace] = tenant["spec"]["namespace"]
        documents.append(tenant)
    for path in sorted(EXAMPLES.glob("*.yaml")):
        if path.name == "tenants.yaml":
            continue
        for document in yaml.safe_load_all(path.read_text()):
            if document and document["metadata"].get("namespace") in namespaces:
                document["metadata"]["namespace"] = namespaces[document["metadata"]["namespace"]]
                documents.append(document)
    return documents, namespaces


def test_applying_the_examples_gives_region_pinned_pools(simulated_operator: OperatorProcess, fleet: Fleet,
                                                         kube: Cluster, pods: RunnerPool, shard: str):
    documents, namespaces = renamed_examples(shard)
    tenants = [d for d in documents if d["kind"] == "Tenant"]
    agents = [d for d in documents if d["kind"] == "VoiceAgent"]
    assert len(tenants) == 3 and len(agents) == 3
    fleet.tenants += [t["metadata"]["name"] for t in tenants]  # cleaned up with the module
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(tenants))
    for tenant in tenants:
        fleet.wait_tenant_ready(tenant["metadata"]["name"])
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all([d for d in documents if d["kind"] != "Tenant"]))

    simulated = {region: set(nodes) for region, nodes in pods.simulated_nodes.items()}
    for agent in agents:
        namespace, name = agent["metadata"]["namespace"], agent["metadata"]["name"]
        status = fleet.wait_agent_ready(namespace, name, timeout=90)["status"]
        regions = [r["name"] for r in agent["spec"]["regions"]]
        assert status["regionNames"] == ",".join(regions)
        assert status["readyWorkers"] == sum(r["minWorkers"] for r in agent["spec"]["regions"])
        for region in regions:
            workers = fleet.ready_pods(namespace, name, region)
            assert workers, f"{name} has no worker in {region}"
            for pod in workers:
                assert pod.spec.node_name in simulated[region], f"{pod.metadata.name} ran outside {region}"
                assert pod.metadata.labels[labels.REGION] == region
        printed = kube.kubectl("get", "voiceagent", name, "-n", namespace).stdout.splitlines()
        assert printed[0].split()[:5] == ["NAME", "REGIONS", "READY", "WORKERS", "SESSIONS"]
        assert printed[1].split()[1:4] == [",".join(regions), "True", str(status["readyWorkers"])]
    wait_for("the Tenants to count their agents", lambda: all(
        (fleet.tenant(t["metadata"]["name"])["status"]["agents"] == 1) for t in tenants))

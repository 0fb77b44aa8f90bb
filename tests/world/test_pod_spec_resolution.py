"""Kubelet semantics the pod runner reproduces, checked without a cluster: $(VAR) expansion, env sources, mount
path rewriting, probe thresholds and the nodes' address plan."""

import ipaddress
from pathlib import Path

import pytest

from voxfleet.world import topology
from voxfleet.kube.errors import NotFound
from voxfleet.world.pod_env import ConfigError, EnvResolver, expand, field_value
from voxfleet.world.pod_volumes import Mount, rewrite
from voxfleet.world.probes import ProbeState


@pytest.mark.parametrize("text,expected", [
    ("$(A)-$(B)", "1-two"),
    ("$$(A)", "$(A)"),  # escaped
    ("$(MISSING)", "$(MISSING)"),  # unknown names stay as written
    ("$(A", "$(A"),  # unterminated
    ("cost $5", "cost $5"),
    ("$$$(A)", "$1"),
])
def test_expand_follows_kubelet(text, expected):
    assert expand(text, {"A": "1", "B": "two"}) == expected


POD = {"metadata": {"name": "p", "namespace": "ns", "uid": "u", "labels": {"app": "a", "x": "y"},
                    "annotations": {"note": "n"}},
       "spec": {"nodeName": "runner-us-east-a", "serviceAccountName": "sa"},
       "status": {"podIP": "127.11.0.5", "podIPs": [{"ip": "127.11.0.5"}], "hostIP": "127.11.1.254"}}


def test_field_refs():
    assert field_value(POD, "metadata.labels['app']") == "a"
    assert field_value(POD, "metadata.annotations['note']") == "n"
    assert field_value(POD, "status.podIP") == "127.11.0.5"
    assert field_value(POD, "spec.nodeName") == "runner-us-east-a"
    assert field_value(POD, "metadata.labels") == 'app="a"\nx="y"'
    with pytest.raises(ConfigError):
        field_value(POD, "spec.nope")


def _resolver(config_maps: dict, secrets: dict) -> EnvResolver:
    def reader(store):
        def read(namespace, name):
            if (namespace, name) not in store:
                raise NotFound(404, {"message": name})
            return store[(namespace, name)]
        return read
    return EnvResolver(reader(config_maps), reader(secrets))


def test_env_later_entries_see_earlier_ones_and_env_overrides_env_from():
    resolver = _resolver({("ns", "cm"): {"A": "from-cm", "bad key": "skipped"}}, {("ns", "s"): {"T": "tok"}})
    container = {"envFrom": [{"configMapRef": {"name": "cm"}}, {"secretRef": {"name": "s"}, "prefix": "S_"}],
                 "env": [{"name": "A", "value": "override"}, {"name": "B", "value": "$(A)+$(S_T)"},
                         {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]}
    env = resolver.resolve(POD, container, {"PATH": "/bin"})
    assert env == {"PATH": "/bin", "A": "override", "S_T": "tok", "B": "override+tok", "IP": "127.11.0.5"}


def test_missing_reference_is_a_config_error_unless_optional():
    resolver = _resolver({}, {})
    with pytest.raises(ConfigError, match='configmap "cm" not found'):
        resolver.resolve(POD, {"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}}]},
                         {})
    optional = {"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k", "optional": True}}}]}
    assert resolver.resolve(POD, optional, {}) == {}


def test_mount_paths_are_rewritten_longest_first():
    mounts = [Mount("/etc/app/secret", Path("/w/v/secret")), Mount("/etc/app", Path("/w/v/cfg"))]
    assert rewrite("/etc/app/config.yaml", mounts) == "/w/v/cfg/config.yaml"
    assert rewrite("/etc/app/secret/token", mounts) == "/w/v/secret/token"
    assert rewrite("--config=/etc/app/x", mounts) == "--config=/w/v/cfg/x"
    assert rewrite("/etc/application", mounts) == "/etc/application"  # only whole path components
    assert rewrite("relative/etc/app", mounts) == "relative/etc/app"


def test_the_images_own_files_are_never_a_volumes_even_below_a_mount_path():
    # This checkout and its Python play the image: a clone under /tmp keeps its worker command when worker pods
    # mount an emptyDir at /tmp (what that volume holds is still rewritten).
    # The checkout's parent may itself be /tmp (CI clones into `mktemp -d`), so the second volume sits elsewhere.
    checkout = Path(__file__).resolve().parents[2]
    mounts = [Mount(str(checkout.parent), Path("/vol/a")), Mount("/var/scratch", Path("/vol/scratch"))]
    assert rewrite(str(checkout / ".venv" / "bin" / "python"), mounts) == str(checkout / ".venv" / "bin" / "python")
    assert rewrite(str(checkout.parent / "elsewhere"), mounts) == "/vol/a/elsewhere"
    assert rewrite("/var/scratch/x", mounts) == "/vol/scratch/x"


def test_probe_thresholds():
    state = ProbeState({"periodSeconds": 10, "failureThreshold": 2, "successThreshold": 1})
    assert state.period == 0.2  # fast until the first success
    assert state.record(True, 0.0) and state.ok and state.period == 10
    assert not state.record(False, 1.0) and state.ok  # one failure is tolerated
    assert state.record(False, 2.0) and not state.ok


def test_node_address_plan_keeps_worlds_and_nodes_apart():
    plans = [topology.nodes(simulated_per_zone=topology.MAX_SIMULATED_PER_ZONE, slot=s)
             for s in range(topology.MAX_SLOTS)]
    cidrs = [ipaddress.ip_network(n.pod_cidr) for plan in plans for n in plan]
    assert len(set(cidrs)) == len(cidrs)
    assert all(not a.overlaps(b) for i, a in enumerate(cidrs) for b in cidrs[i + 1:])
    for plan in plans:
        for node in plan:
            assert ipaddress.ip_address(node.node_ip) in ipaddress.ip_network(node.pod_cidr)

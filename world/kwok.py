"""Two kwok processes keep the world's nodes alive.

- "kwok-simulated" manages nodes labelled ``voxfleet.dev/node-kind=simulated`` with node and pod stages: pods
  scheduled there turn Running/Ready at once, without any process (scale benchmarks with thousands of pods).
- "kwok-runner" manages ``voxfleet.dev/node-kind=runner`` with node stages only. It leaves those nodes' pods
  alone (kwok's pod-delete stage would end a pod before its process drained); the pod runner owns them.

kwok v0.8 ships no built-in stages, so we write our own minimal ones below (the Stage API of
sigs.k8s.io/kwok/pkg/apis/v1alpha1; templates are Go templates with kwok's functions ``Now``, ``NodeConditions``,
``NodeIPsWith``, ``PodIPsWith``). The stage file holds Stages only: a KwokConfiguration in it would replace
kwok's defaults, so everything else is passed as flags.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from . import processes
from .binaries import Binary
from .processes import Server
from .topology import NODE_KIND_LABEL, RUNNER, SIMULATED

# Nodes: Ready with the usual conditions as soon as they appear; no allocatable/addresses here because the world
# creates nodes with those already in their status.
NODE_READY = """\
{{ $now := Now }}
conditions:
{{ range NodeConditions }}
- type: {{ .type | Quote }}
  status: {{ .status | Quote }}
  reason: {{ .reason | Quote }}
  message: {{ .message | Quote }}
  lastHeartbeatTime: {{ $now | Quote }}
  lastTransitionTime: {{ $now | Quote }}
{{ end }}
nodeInfo:
  architecture: amd64
  operatingSystem: linux
  kubeletVersion: v1.36.3-voxfleet-world
  containerRuntimeVersion: voxfleet-world://1
phase: Running
"""

# Pods on simulated nodes: Running and Ready with an IP from the node's podCIDR, no process behind it.
POD_RUNNING = """\
{{ $now := Now }}
phase: Running
startTime: {{ $now | Quote }}
conditions:
{{ range list "PodReadyToStartContainers" "Initialized" "ContainersReady" "Ready" }}
- type: {{ . | Quote }}
  status: "True"
  lastTransitionTime: {{ $now | Quote }}
{{ end }}
{{ range .spec.readinessGates }}
- type: {{ .conditionType | Quote }}
  status: "True"
  lastTransitionTime: {{ $now | Quote }}
{{ end }}
containerStatuses:
{{ range .spec.containers }}
- name: {{ .name | Quote }}
  image: {{ .image | Quote }}
  ready: true
  started: true
  restartCount: 0
  state:
    running:
      startedAt: {{ $now | Quote }}
{{ end }}
{{ with NodeIPsWith .spec.nodeName }}
hostIP: {{ index . 0 | Quote }}
hostIPs:
{{ range . }}
- ip: {{ . | Quote }}
{{ end }}
{{ end }}
{{ with PodIPsWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) }}
podIP: {{ index . 0 | Quote }}
podIPs:
{{ range . }}
- ip: {{ . | Quote }}
{{ end }}
{{ end }}
"""

# Job pods finish right after they start, so Jobs on simulated nodes complete.
POD_SUCCEEDED = """\
{{ $now := Now }}
phase: Succeeded
containerStatuses:
{{ range .spec.containers }}
- name: {{ .name | Quote }}
  image: {{ .image | Quote }}
  ready: false
  started: false
  restartCount: 0
  state:
    terminated:
      exitCode: 0
      reason: Completed
      startedAt: {{ $now | Quote }}
      finishedAt: {{ $now | Quote }}
{{ end }}
"""

READY_STATUS = '.status.conditions.[] | select( .type == "Ready" ) | .status'


def _stage(name: str, kind: str, expressions: list[dict], next_: dict, delay_ms: int | None = None,
           jitter_ms: int | None = None) -> dict:
    spec: dict = {"resourceRef": {"apiGroup": "v1", "kind": kind},
                  "selector": {"matchExpressions": expressions}, "next": next_}
    if delay_ms is not None:
        spec["delay"] = {"durationMilliseconds": delay_ms, "jitterDurationMilliseconds": jitter_ms or delay_ms}
    return {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Stage", "metadata": {"name": name}, "spec": spec}


def node_stages() -> list[dict]:
    return [
        _stage("voxfleet-node-ready", "Node",
               [{"key": READY_STATUS, "operator": "NotIn", "values": ["True"]}],
               {"statusTemplate": NODE_READY}),
        # Node health comes from the leases kwok renews; this only refreshes the conditions' heartbeat now and
        # then (as a kubelet does every few minutes) so they don't look stale.
        _stage("voxfleet-node-heartbeat", "Node",
               [{"key": ".status.phase", "operator": "In", "values": ["Running"]},
                {"key": READY_STATUS, "operator": "In", "values": ["True"]}],
               {"statusTemplate": NODE_READY}, delay_ms=240_000, jitter_ms=300_000),
    ]


def pod_stages() -> list[dict]:
    not_deleting = {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"}
    return [
        _stage("voxfleet-pod-running", "Pod",
               [not_deleting, {"key": ".status.phase", "operator": "In", "values": ["Pending"]},
                {"key": READY_STATUS, "operator": "NotIn", "values": ["True"]}],
               {"statusTemplate": POD_RUNNING}),
        _stage("voxfleet-pod-job-succeeded", "Pod",
               [not_deleting, {"key": ".status.phase", "operator": "In", "values": ["Running"]},
                {"key": ".metadata.ownerReferences.[].kind", "operator": "In", "values": ["Job"]}],
               {"statusTemplate": POD_SUCCEEDED}),
        # Nothing to drain on a simulated node: finish the deletion at once, as a kubelet would after the exit.
        _stage("voxfleet-pod-delete", "Pod",
               [{"key": ".metadata.deletionTimestamp", "operator": "Exists"}],
               {"delete": True}),
    ]


def write_stages(path: Path, stages: list[dict]) -> Path:
    path.write_text(yaml.safe_dump_all(stages, sort_keys=False))
    return path


def start(*, kwok: Binary, kubeconfig: Path, state_dir: Path, world_id: str) -> list[Server]:
    """Start both kwoks; returns their servers (nodes turn Ready once they exist)."""
    config_dir = state_dir / "kwok"
    config_dir.mkdir(parents=True, exist_ok=True)
    plans = [
        ("kwok-simulated", SIMULATED, node_stages() + pod_stages()),
        ("kwok-runner", RUNNER, node_stages()),
    ]
    servers = []
    for name, kind, stages in plans:
        stage_file = write_stages(config_dir / f"{name}-stages.yaml", stages)
        servers.append(processes.start(name, [
            str(kwok.path),
            f"--kubeconfig={kubeconfig}",
            f"--config={stage_file}",
            f"--manage-nodes-with-label-selector={NODE_KIND_LABEL}={kind}",
            "--node-ip=127.0.0.1", "--cidr=127.1.0.0/24",  # fallbacks only: every node carries its own
            "--node-lease-duration-seconds=40",
        ], log_dir=state_dir / "logs", world_id=world_id, cwd=config_dir))
    return servers

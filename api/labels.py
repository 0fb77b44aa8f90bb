"""Labels, annotations and well-known names every component agrees on (the operator sets them, the gateway
selects worker Pods by them, the pod runner and dashboards read them)."""

from __future__ import annotations

PREFIX = "voxfleet.dev"
TENANT = f"{PREFIX}/tenant"
AGENT = f"{PREFIX}/agent"
REGION = f"{PREFIX}/region"
CONFIG_HASH = f"{PREFIX}/config-hash"  # pod-template annotation: a spec edit rolls the pool
COMPONENT = "app.kubernetes.io/component"
NAME = "app.kubernetes.io/name"
MANAGED_BY = "app.kubernetes.io/managed-by"
PART_OF_VALUE = "voxfleet"
WORKER_COMPONENT = "voice-worker"
# What the gateway watches: every worker Pod of every tenant.
WORKER_SELECTOR = f"{NAME}={PART_OF_VALUE},{COMPONENT}={WORKER_COMPONENT}"

NODE_REGION = "topology.kubernetes.io/region"
NODE_ZONE = "topology.kubernetes.io/zone"
POD_DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
# Eviction safety (voxfleet.operator.eviction_guard): "false" on a worker pod while it holds a live call, "true"
# once it is idle. The label is what the pool's PodDisruptionBudget selects (busy pods only: no eviction); the
# annotation is the cluster autoscaler's, which then neither picks the pod's node for scale-down nor, when idle,
# refuses it for its emptyDir.
SAFE_TO_EVICT = f"{PREFIX}/safe-to-evict"
AUTOSCALER_SAFE_TO_EVICT = "cluster-autoscaler.kubernetes.io/safe-to-evict"

WORKER_TOKEN_KEY = "token"  # key of the worker-token Secret
AGENT_CONFIG_KEY = "agent.json"  # key of the rendered agent ConfigMap
AGENT_CONFIG_MOUNT = "/etc/voxfleet/agent"

# Secrets a tenant wrote through the gateway's secrets API carry this label (value "true"). They are the only
# Secrets a VoiceAgent spec may reference: the gateway refuses others at admission, the operator builds no pod
# with one. Platform Secrets copied into a tenant namespace (the worker credential) never carry it.
TENANT_SECRET = f"{PREFIX}/tenant-secret"
TENANT_SECRET_VALUE = "true"

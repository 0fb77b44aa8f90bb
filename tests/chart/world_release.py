"""A voxfleet release in the test world: the values that put the chart's pods on the pod runner's nodes (real
processes bound to their pod IPs) with the world's LiveKit, and a sharded Tenant with one small VoiceAgent whose
worker runs for real. Shared by the chart's install and monitoring tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kubernetes import client

from tests.world.waiting import wait_for

SHARD_LABEL = "voxfleet.dev/test-shard"


@dataclass
class Release:
    name: str
    namespace: str
    shard: str
    values_file: Path

    @property
    def fullname(self) -> str:
        return f"{self.name}-voxfleet"


def pod_kubeconfig_env(pods, namespace: str) -> dict:
    """KUBECONFIG for a pod the pod runner runs: the kubeconfig it writes into the pod's folder.

    Needed because the runner rewrites *every* env value that starts with a mountPath, its own KUBECONFIG
    included: the chart mounts an emptyDir at /tmp (read-only root) and the world lives under /tmp, so the
    runner's KUBECONFIG gets pointed into that emptyDir. The leading "//" (the same path to Linux) keeps this
    value clear of the rewrite.
    """
    return {"name": "KUBECONFIG", "value": "/" + str(pods.pod_dir(namespace, "$(HOSTNAME)") / "kubeconfig")}


def world_values(pods, livekit, shard: str, namespace: str, *, database_secret: str | None = None) -> dict:
    """What the test world needs on top of the defaults: every pod on the pod runner's nodes (real processes),
    servers bound to their pod IPs, one gateway replica, the world's LiveKit, and this test's Tenant shard.
    The store: the Secret `database_secret` (key url) names a real PostgreSQL, whose migration Job then runs for
    real; without it, none (the bundled StatefulSet's claim would find no storage provisioner in the world)."""
    placement = pods.placement()
    on_runners = {"nodeSelector": placement["nodeSelector"], "tolerations": placement["tolerations"]}
    us_east = livekit["us-east"]
    kubeconfig = pod_kubeconfig_env(pods, namespace)
    return {
        # The world's CRDs are the whole test run's (installed once, shared by every test): no release owns them.
        "crds": {"enabled": False},
        "platform": {"logLevel": "info"},
        # The hook Job that creates the worker token and session key runs for real (kwok would only fake it).
        "secretsJob": on_runners,
        "workers": on_runners,
        "operator": {
            "bindAddress": "$(POD_IP)", "tenantSelector": f"{SHARD_LABEL}={shard}", **on_runners,
            # Quicker reactions than production defaults, so the test doesn't wait on timers.
            "extraEnv": [{"name": "VOXFLEET_OPERATOR_POLL_INTERVAL_SECONDS", "value": "1"},
                         {"name": "VOXFLEET_OPERATOR_STATUS_FIGURES_INTERVAL_SECONDS", "value": "1"},
                         {"name": "VOXFLEET_OPERATOR_STATUS_WORDING_DELAY_SECONDS", "value": "1"},
                         {"name": "VOXFLEET_OPERATOR_RECHECK_SECONDS", "value": "2"}, kubeconfig],
        },
        "gateway": {
            "replicas": 1, "bindAddress": "$(POD_IP)", "extraEnv": [kubeconfig], **on_runners,
            "regions": {"us-east": {"livekitUrl": us_east.url, "credentialsSecret": "livekit-us-east"}},
            "latencyMs": {"us-east": {"us-east": 1}},
        },
        "database": {"existingSecret": database_secret, "migrations": on_runners} if database_secret
        else {"bundled": {"enabled": False}},
        # No Service routing in the test world (EndpointSlices refuse loopback pod IPs): check the pods.
        "tests": {"checkService": False, "checkPods": True, **on_runners},
    }


def tenant_and_agent(rel: Release) -> tuple[dict, dict]:
    tenant = {"apiVersion": "voxfleet.dev/v1alpha1", "kind": "Tenant",
              "metadata": {"name": rel.shard, "labels": {SHARD_LABEL: rel.shard}},
              "spec": {"displayName": "Chart test tenant", "groups": [f"{rel.shard}:admins"],
                       "allowedRegions": ["us-east"],
                       "quotas": {"maxConcurrentSessions": 4, "maxAgents": 2, "maxWorkers": 2}}}
    agent = {"apiVersion": "voxfleet.dev/v1alpha1", "kind": "VoiceAgent",
             "metadata": {"name": "concierge", "namespace": f"tenant-{rel.shard}"},
             "spec": {"greeting": "Hello from the chart test.",
                      "pipeline": {"stt": {"provider": "pocketsphinx"}, "llm": {"provider": "scripted"},
                                   "tts": {"provider": "espeak", "voice": "en-us"}},
                      "turnDetection": {"detector": "speech-timeout", "vad": {"stopMs": 200},
                                        "timeouts": {"speechTimeoutMs": 400}},
                      "intents": [{"name": "goodbye", "keywords": ["goodbye"], "reply": "Goodbye!"}],
                      "regions": [{"name": "us-east", "minWorkers": 1, "maxWorkers": 1}],
                      "scaling": {"sessionsPerWorker": 2, "bufferSessions": 1},
                      "limits": {"maxSessionSeconds": 60, "idleTimeoutSeconds": 10}}}
    return tenant, agent


def delete_tenant(kube, rel: Release, namespace: str) -> None:
    kube.kubectl("delete", "voiceagent", "concierge", "-n", namespace, "--wait=true", "--timeout=120s")
    custom = client.CustomObjectsApi(kube.api_client())

    def tenant_gone():
        try:
            custom.get_cluster_custom_object("voxfleet.dev", "v1alpha1", "tenants", rel.shard)
            kube.kubectl("delete", "tenant", rel.shard, "--wait=false", check=False)  # refused while agents remain
            return False
        except client.ApiException as error:
            return error.status == 404

    wait_for(f"Tenant {rel.shard} gone", tenant_gone, timeout=180, interval=1)

    def namespace_gone():
        try:
            client.CoreV1Api(kube.api_client()).read_namespace(namespace)
            return False
        except client.ApiException as error:
            return error.status == 404

    # The operator deletes the tenant's namespace; its worker drains (no call is live) and exits.
    wait_for(f"namespace {namespace} gone", namespace_gone, timeout=180, interval=1)

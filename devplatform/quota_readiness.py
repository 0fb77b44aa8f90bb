"""Wait until the controller-manager's quota controller counts a freshly installed custom resource.

Tenants' ResourceQuotas limit `count/voiceagents.voxfleet.dev`. The quota controller learns of a new CRD by
rediscovery (every 30 s), and a quota created before that gets its usage for the new kind only at the next full
resync (5 minutes by default); until then the apiserver refuses every VoiceAgent in that namespace ("status
unknown for quota"). So the local platform waits, before it applies Tenants, until a probe quota in the
platform namespace shows usage for the kind, nudging the controller by changing the probe's limit each second.
"""

from __future__ import annotations

import time

from voxfleet.kube.blocking import BlockingKubeClient

PROBE_NAME = "voxfleet-dev-quota-probe"


def wait_until_counted(kube: BlockingKubeClient, namespace: str, resource: str, *, timeout: float = 90.0,
                       check=lambda: None) -> float:
    """Block until quotas in ``namespace`` compute usage of ``resource`` (e.g. ``count/voiceagents.voxfleet.dev``);
    returns the seconds waited. ``check`` runs each round (to fail early when a server died)."""
    started = time.monotonic()
    limit = 1_000_000
    kube.delete("ResourceQuota", PROBE_NAME, namespace)  # a probe left by an interrupted start (None when none)
    kube.create({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": PROBE_NAME, "namespace": namespace},
                 "spec": {"hard": {resource: str(limit)}}})
    try:
        while True:
            check()
            quota = kube.get("ResourceQuota", PROBE_NAME, namespace)
            if resource in ((quota.get("status") or {}).get("used") or {}):
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"the quota controller did not count {resource} within {timeout:.0f} s "
                                   f"(see the kube-controller-manager log)")
            time.sleep(1.0)
            limit += 1  # a changed limit makes the controller recompute this quota's usage
            kube.merge_patch("ResourceQuota", PROBE_NAME, {"spec": {"hard": {resource: str(limit)}}}, namespace)
    finally:
        kube.delete("ResourceQuota", PROBE_NAME, namespace)

"""What the CRD schema can't check about a VoiceAgent: things that depend on the cluster and the platform.

Each problem becomes the Degraded condition and a Warning Event. `blocking` problems stop every change to the
agent's pools (they keep running the last spec that was fine, so a bad edit never takes a working agent down);
region problems affect only that region's pool. Messages name Secrets and keys, never values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from voxfleet.api.common import SecretKeyRef
from voxfleet.api.outbound import OutboundPolicy
from voxfleet.api.settings import PlatformSettings
from voxfleet.api.spec_secrets import secret_references
from voxfleet.api.spec_urls import url_refusals
from voxfleet.api.voiceagent import VoiceAgentSpec

if TYPE_CHECKING:
    from voxfleet.operator.cluster_view import SecretView

DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class Problem:
    reason: str  # CamelCase, as Kubernetes reasons are
    message: str
    region: str | None = None
    blocking: bool = False  # True: no pool of this agent changes until it is fixed
    region_skipped: bool = False  # True: this region gets no pool (or its pool drains)


def spec_references(spec: VoiceAgentSpec) -> list[tuple[str, SecretKeyRef]]:
    """(spec path as a kubectl user reads it, ref) for every Secret key the pods will read."""
    return [(f"spec.{path}", ref) for path, ref in secret_references(spec, by_name=True)]


def check_name(name: str) -> list[Problem]:
    if DNS_1035.match(name):
        return []
    return [Problem("InvalidName", f"VoiceAgent name {name!r} must be a DNS-1035 label (lowercase letters, digits"
                                   " and '-', starting with a letter, at most 63 characters): it names the agent's"
                                   " Service and labels its pods. Recreate the agent under such a name.",
                    blocking=True)]


def check_image(spec: VoiceAgentSpec, platform: PlatformSettings) -> list[Problem]:
    image = spec.worker.image
    if image is None or platform.image_allowed(image):
        return []
    return [Problem("ImageNotAllowed", f"spec.worker.image {image!r} is not in the platform's allow-list of worker"
                                       " images; remove spec.worker.image to use the platform's image, or ask the"
                                       " platform team to allow it. The pools keep their current spec meanwhile.",
                    blocking=True)]


def check_secrets(spec: VoiceAgentSpec, namespace: str, secrets: Mapping[str, SecretView | None],
                  platform: PlatformSettings) -> list[Problem]:
    """secrets: Secret name -> what the operator knows of it (keys, tenant-secret label), None when missing.

    A spec may name only Secrets the tenant wrote through the gateway's secrets API (labelled
    voxfleet.dev/tenant-secret=true): anything else in the namespace is the platform's (the worker token) or
    nobody's business of the tenant's. The worker-token Secret is refused even when someone has labelled it."""
    problems = []
    for path, ref in spec_references(spec):
        secret = secrets.get(ref.name)
        how = f"write it with PUT /v1/secrets/{ref.name} (the gateway's tenant secrets API)"
        if ref.name == platform.worker_token_secret or (secret is not None and not secret.tenant_secret):
            problems.append(Problem("SecretNotAllowed", f"{path} names Secret {ref.name!r}, which is not a tenant"
                                                        " secret: a VoiceAgent may reference only Secrets written"
                                                        " through the gateway's secrets API; store the value under"
                                                        f" another name with PUT /v1/secrets/{{name}} and name that"
                                                        " one. No pod is built with this reference; the pools keep"
                                                        " their current spec meanwhile.", blocking=True))
        elif secret is None:
            problems.append(Problem("SecretMissing", f"Secret {ref.name!r} named by {path} does not exist in"
                                                     f" namespace {namespace}; {how}. The pools keep their"
                                                     " current spec meanwhile.", blocking=True))
        elif ref.key not in secret.keys:
            problems.append(Problem("SecretKeyMissing", f"Secret {ref.name!r} named by {path} has no key"
                                                        f" {ref.key!r}; add it ({how}). The pools keep their"
                                                        " current spec meanwhile.", blocking=True))
    return problems


def check_urls(spec: VoiceAgentSpec, platform: PlatformSettings) -> list[Problem]:
    """URLs the outbound policy refuses without DNS (IP literals in denied ranges): the gateway refuses them at
    admission; an agent applied with kubectl gets the same verdict here."""
    return [Problem("URLNotAllowed", f"spec.{refusal.field}: {refusal.message} The pools keep their current spec"
                                     " meanwhile.", blocking=True)
            for refusal in url_refusals(spec, OutboundPolicy.from_settings(platform))]


def check_regions(spec: VoiceAgentSpec, allowed_regions: list[str], regions_with_nodes: set[str],
                  tenant: str) -> list[Problem]:
    problems = []
    for region in spec.regions:
        if region.name not in allowed_regions:
            problems.append(Problem("RegionNotAllowed", f"region {region.name!r} is not among Tenant {tenant}'s"
                                                        f" allowedRegions ({', '.join(allowed_regions)}); it gets"
                                                        " no pool.", region=region.name, region_skipped=True))
        elif region.name not in regions_with_nodes:
            problems.append(Problem("NoNodesInRegion", f"no schedulable voice node has"
                                                       f" topology.kubernetes.io/region={region.name}; its workers"
                                                       " stay Pending until such nodes join.", region=region.name))
    return problems


def replica_failure(region: str, failure: str | None) -> list[Problem]:
    """The ReplicaSet's FailedCreate (e.g. exceeded quota), which the Deployment surfaces as ReplicaFailure."""
    if not failure:
        return []
    # The namespace's ResourceQuota ("exceeded quota") or LimitRange ("maximum cpu usage per Container is 4"):
    # either way the Tenant's quotas refused the worker.
    over_bound = "exceeded quota" in failure or "maximum cpu usage" in failure or "maximum memory usage" in failure
    reason = "QuotaExceeded" if over_bound else "WorkersNotCreated"
    return [Problem(reason, f"region {region}: {failure}", region=region)]

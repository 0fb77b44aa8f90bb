"""The platform's own Secrets, created once and never rotated by a deploy: the chart's pre-install/pre-upgrade hook
Job runs `python -m voxfleet.platform_secrets`.

Why a Job and not the chart's templates: a template can only keep a generated value by reading it back with
`lookup`, which returns nothing under `helm template` (Argo CD, Flux's post-renderers, any GitOps render), so every
render used to mint a new worker token and session key, breaking running workers and every signed session id.
This command creates each named Secret only when it is absent, with a fresh random value; a Secret that exists is
left as it is (the user's own, or ours from an earlier install), so upgrades, re-syncs and a re-install after
`helm uninstall` keep the values.

One exception, the upgrade from a chart that still rendered these Secrets itself: Helm would delete them as soon
as the new chart no longer renders them. Such a Secret (it carries Helm's release annotation) gets
`helm.sh/resource-policy: keep`, which Helm honours on the live object, and stops being the release's.

Values never reach stdout, stderr or an exception message: only names and keys do.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import secrets
import string
import sys
from dataclasses import dataclass

from voxfleet.kube.client import KubeClient
from voxfleet.kube.errors import Conflict, KubeApiError

# Alphanumerics, like the chart's randAlphaNum before: the values go into files and env without any quoting.
ALPHABET = string.ascii_letters + string.digits
VALUE_LENGTH = 64  # ~380 bits
KEEP_ANNOTATION = "helm.sh/resource-policy"
HELM_RELEASE_ANNOTATIONS = ("meta.helm.sh/release-name", "meta.helm.sh/release-namespace")
MANAGER = "voxfleet-platform-secrets"


@dataclass(frozen=True)
class SecretKey:
    """A Secret of the release namespace and the one key in it that must hold a value."""

    name: str
    key: str

    @classmethod
    def parse(cls, text: str) -> SecretKey:
        name, separator, key = text.partition("/")
        if not separator or not name or not key:
            raise argparse.ArgumentTypeError(f"expected NAME/KEY, got {text!r}")
        return cls(name, key)


def new_value() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(VALUE_LENGTH))


def secret_manifest(wanted: SecretKey, namespace: str, labels: dict[str, str]) -> dict:
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": wanted.name, "namespace": namespace,
                     "labels": {"app.kubernetes.io/part-of": "voxfleet", "app.kubernetes.io/managed-by": MANAGER,
                                **labels},
                     # Should anyone ever adopt it into a release, uninstalling that release still keeps it.
                     "annotations": {KEEP_ANNOTATION: "keep"}},
        "data": {wanted.key: base64.b64encode(new_value().encode()).decode()},
    }


async def ensure(kube: KubeClient, namespace: str, wanted: SecretKey, labels: dict[str, str]) -> str:
    """Create the Secret if absent; say what was done ("created", "kept", "kept, released from Helm")."""
    existing = await kube.get_or_none("Secret", wanted.name, namespace)
    if existing is None:
        try:
            await kube.create(secret_manifest(wanted, namespace, labels))
            return "created"
        except Conflict:  # created meanwhile by someone else: judge that one below
            existing = await kube.get("Secret", wanted.name, namespace)
    if not (existing.get("data") or {}).get(wanted.key):
        # Never overwrite: the Secret may be someone's own. Refusing makes the install fail, naming what to fix.
        raise MissingKey(f"Secret {namespace}/{wanted.name} exists but has no value under key {wanted.key!r}: "
                         f"add it, or delete the Secret to have one generated")
    annotations = existing["metadata"].get("annotations") or {}
    if annotations.get(HELM_RELEASE_ANNOTATIONS[0]) and annotations.get(KEEP_ANNOTATION) != "keep":
        # Rendered by an older chart: Helm would delete it once the new chart stops rendering it.
        await kube.merge_patch("Secret", wanted.name, {"metadata": {
            "annotations": {KEEP_ANNOTATION: "keep", **{name: None for name in HELM_RELEASE_ANNOTATIONS}},
            "labels": {"app.kubernetes.io/managed-by": MANAGER}}}, namespace)
        return "kept, released from Helm"
    return "kept"


class MissingKey(Exception):
    pass


async def ensure_all(namespace: str, wanted: list[SecretKey], labels: dict[str, str]) -> int:
    # KUBECONFIG when set (the test world's pod runner gives pods one), else the pod's in-cluster credentials.
    async with KubeClient.from_kubeconfig() as kube:
        for secret in wanted:
            try:
                outcome = await ensure(kube, namespace, secret, labels)
            except MissingKey as error:
                print(f"platform secrets: {error}", file=sys.stderr)
                return 1
            except KubeApiError as error:  # status and reason only: a message may quote what was sent
                print(f"platform secrets: Secret {namespace}/{secret.name}: the apiserver answered "
                      f"{error.status} {error.reason}", file=sys.stderr)
                return 1
            print(f"platform secrets: Secret {namespace}/{secret.name} (key {secret.key}): {outcome}", flush=True)
    return 0


def _label(text: str) -> tuple[str, str]:
    name, separator, value = text.partition("=")
    if not separator or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m voxfleet.platform_secrets",
        description="Create the platform's Secrets with random values when they are absent; never change one "
                    "that exists.")
    parser.add_argument("--namespace", required=True, help="the release (platform) namespace")
    parser.add_argument("--secret", dest="secrets", type=SecretKey.parse, action="append", required=True,
                        metavar="NAME/KEY", help="a Secret and the key that must hold a value (repeatable)")
    parser.add_argument("--label", dest="labels", type=_label, action="append", default=[], metavar="NAME=VALUE",
                        help="a label of the Secrets it creates (repeatable)")
    args = parser.parse_args(argv)
    return asyncio.run(ensure_all(args.namespace, args.secrets, dict(args.labels)))


if __name__ == "__main__":
    sys.exit(main())

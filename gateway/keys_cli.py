"""`voxfleet keys`: create, list and revoke tenant API keys.

A new key is printed once, alone on stdout (so `KEY=$(voxfleet keys create --tenant acme)` works); only its
hash is stored, in a Secret of the platform namespace. Revoking deletes that Secret: every gateway replica
watches these Secrets and refuses the key as soon as the deletion reaches it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from voxfleet.api import labels
from voxfleet.api.settings import PlatformSettings
from voxfleet.gateway import api_keys
from voxfleet.kube.blocking import BlockingKubeClient
from voxfleet.kube.errors import KubeApiError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voxfleet keys", description="Create, list and revoke tenant API keys.")
    parser.add_argument("--kubeconfig", type=Path, default=None, help="kubeconfig file (default: in-cluster or"
                                                                      " KUBECONFIG)")
    parser.add_argument("--namespace", default=None,
                        help="platform namespace holding the key Secrets (default: VOXFLEET_PLATFORM_NAMESPACE)")
    commands = parser.add_subparsers(dest="command", required=True)

    create = commands.add_parser("create", help="create a key for a tenant and print it once")
    create.add_argument("--tenant", required=True, help="Tenant name")
    create.add_argument("--description", default="", help="what the key is for (shown by list)")

    listing = commands.add_parser("list", help="list key ids (never the keys)")
    listing.add_argument("--tenant", default=None, help="only this tenant's keys")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")

    revoke = commands.add_parser("revoke", help="revoke a key by its id (effective at once)")
    revoke.add_argument("key_id", help="the key id (the part after vfk_), or the whole key")
    revoke.add_argument("--tenant", default=None, help="refuse unless the key belongs to this tenant")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    namespace = args.namespace or PlatformSettings().platform_namespace
    try:
        kube = BlockingKubeClient.from_kubeconfig(args.kubeconfig)
    except Exception as error:  # noqa: BLE001 - any loader failure means "no cluster to talk to"
        print(f"voxfleet keys: cannot load Kubernetes credentials: {error}", file=sys.stderr)
        return 2
    with kube:
        try:
            if args.command == "create":
                return _create(kube, namespace, args.tenant, args.description)
            if args.command == "list":
                return _list(kube, namespace, args.tenant, args.json)
            return _revoke(kube, namespace, args.key_id, args.tenant)
        except KubeApiError as error:
            print(f"voxfleet keys {args.command}: the apiserver answered {error.status} {error.reason}",
                  file=sys.stderr)
            return 1


def _create(kube: BlockingKubeClient, namespace: str, tenant: str, description: str) -> int:
    if kube.get_or_none("Tenant", tenant) is None:
        print(f"voxfleet keys create: there is no Tenant {tenant!r}; create the Tenant first", file=sys.stderr)
        return 1
    key = api_keys.generate()
    kube.create(api_keys.secret_manifest(tenant=tenant, key=key, namespace=namespace, description=description))
    print(f"created key {key.key_id} for tenant {tenant}; it is shown only this once, store it now:",
          file=sys.stderr)
    print(key.plaintext)
    return 0


def _list(kube: BlockingKubeClient, namespace: str, tenant: str | None, as_json: bool) -> int:
    selector = api_keys.KEY_SECRET_SELECTOR + (f",{labels.TENANT}={tenant}" if tenant else "")
    secrets = kube.list("Secret", namespace, label_selector=selector)["items"]
    stored = [api_keys.from_secret(secret) for secret in secrets]
    rows = sorted((s for s in stored if s is not None), key=lambda s: (s.tenant, s.created_at))
    if as_json:
        for row in rows:
            print(json.dumps({"keyId": row.key_id, "tenant": row.tenant, "createdAt": row.created_at,
                              "description": row.description}))
        return 0
    print(f"{'KEY ID':<14} {'TENANT':<24} {'CREATED':<26} DESCRIPTION")
    for row in rows:
        print(f"{row.key_id:<14} {row.tenant:<24} {row.created_at:<26} {row.description}")
    return 0


def _revoke(kube: BlockingKubeClient, namespace: str, key_or_id: str, tenant: str | None) -> int:
    parsed = api_keys.parse(key_or_id)
    key_id = parsed[0] if parsed else key_or_id
    secret = kube.get_or_none("Secret", api_keys.secret_name(key_id), namespace)
    if secret is None:
        print(f"voxfleet keys revoke: no key with id {key_id!r}", file=sys.stderr)
        return 1
    meta = secret["metadata"]
    owner = (meta.get("labels") or {}).get(labels.TENANT)
    if tenant is not None and owner != tenant:
        print(f"voxfleet keys revoke: key {key_id!r} does not belong to tenant {tenant!r}", file=sys.stderr)
        return 1
    # The uid precondition makes sure we delete exactly the key we looked at.
    kube.delete("Secret", meta["name"], namespace, preconditions={"uid": meta["uid"]})
    print(f"revoked key {key_id} of tenant {owner}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

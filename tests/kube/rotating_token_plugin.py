"""A client.authentication.k8s.io exec plugin that issues short-lived tokens the world's apiserver really stops
accepting: run by a kubeconfig's `user.exec`, like `aws eks get-token`.

The apiserver's TokenRequest API will not issue a token shorter than 10 minutes, so each token is bound to a
Secret of its own (TokenRequest's boundObjectRef): the apiserver accepts a bound token only while that object
exists. It also remembers a token it accepted for 10 s (kube-apiserver's token success cache, not configurable),
so a deleted Secret ends a token within 10 s, not at once (measured: refused 10.0 s after its first use). The
Secret's annotations carry the expiry this plugin announces (`expirationTimestamp`, `--lifetime` seconds from
now) and when to delete it (REVOKE_AT: 10 s earlier); `TokenExpiry` (in the tests) deletes it then, so the
apiserver refuses the token by its announced expiry, as it would an expired one.

    python rotating_token_plugin.py --admin-kubeconfig K --namespace N --service-account SA --lifetime 12
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from datetime import datetime, timezone

from voxfleet.kube.client import KubeClient

EXPIRES_AT = "k1.voxfleet.dev/expires-at"
REVOKE_AT = "k1.voxfleet.dev/revoke-at"
APISERVER_TOKEN_CACHE_SECONDS = 10.0
TOKEN_LABEL = "k1.voxfleet.dev/bound-token"


async def issue(admin_kubeconfig: str, namespace: str, service_account: str, lifetime: float) -> dict:
    async with KubeClient.from_kubeconfig(admin_kubeconfig) as kube:
        holder = await kube.create({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": f"{service_account}-token-{uuid.uuid4().hex[:10]}", "namespace": namespace,
                         "labels": {TOKEN_LABEL: service_account}}})
        meta = holder["metadata"]
        answer = await kube.request(
            "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token",
            body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                  "spec": {"expirationSeconds": 600,
                           "boundObjectRef": {"kind": "Secret", "apiVersion": "v1", "name": meta["name"],
                                              "uid": meta["uid"]}}})
        # The clock starts now, when the token is about to be handed over (not when this slow process started).
        expires = time.time() + lifetime
        revoke = max(time.time() + 0.5, expires - APISERVER_TOKEN_CACHE_SECONDS)
        await kube.merge_patch("Secret", meta["name"], {"metadata": {"annotations": {
            EXPIRES_AT: f"{expires:.3f}", REVOKE_AT: f"{revoke:.3f}"}}}, namespace)
    stamp = datetime.fromtimestamp(expires, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
            "status": {"token": answer["status"]["token"], "expirationTimestamp": stamp}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--admin-kubeconfig", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--service-account", required=True)
    parser.add_argument("--lifetime", type=float, default=12.0)
    args = parser.parse_args()
    credential = asyncio.run(issue(args.admin_kubeconfig, args.namespace, args.service_account, args.lifetime))
    print(json.dumps(credential))


if __name__ == "__main__":
    main()

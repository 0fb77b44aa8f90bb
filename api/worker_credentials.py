"""Per-tenant worker credentials, derived from the platform's root worker token.

The root token lives only in the platform namespace (the gateway and the operator read it). A worker in
namespace N accepts only `token_for_namespace(root, N)`: the operator writes that token (never the root) into
N's worker-token Secret, and the gateway and operator derive it for each pod's namespace when they call a
worker. So a token that leaks from one tenant's namespace opens that tenant's workers and nobody else's.

HMAC-SHA256 keyed by the root over a domain-separation label and the namespace: without the root, knowing
tenant A's token tells nothing about tenant B's (HMAC is a PRF), and the label keeps this use of the root apart
from any other use a later version might make of it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

# Changing the label changes every tenant's token (the operator rewrites the Secrets, workers roll): bump the
# version only together with such a rotation.
DERIVATION_LABEL = b"voxfleet.dev/worker-token/v1/namespace\x00"


def token_for_namespace(root: str | bytes, namespace: str) -> str:
    """The token workers in `namespace` accept: urlsafe base64 (no padding) of HMAC-SHA256(root, label || ns)."""
    if not namespace:
        raise ValueError("a worker token is derived for a namespace; the namespace is empty")
    key = root.encode() if isinstance(root, str) else root
    if not key:
        raise ValueError("the root worker token is empty; set the platform's worker-token Secret")
    digest = hmac.new(key, DERIVATION_LABEL + namespace.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class NamespaceTokens:
    """The derived token per namespace, remembered while the root stays the same (one HMAC per namespace, not
    one per call)."""

    def __init__(self) -> None:
        self._root: bytes | None = None
        self._tokens: dict[str, str] = {}

    def token(self, root: str | bytes, namespace: str) -> str:
        key = root.encode() if isinstance(root, str) else root
        if key != self._root:
            self._root, self._tokens = key, {}
        found = self._tokens.get(namespace)
        if found is None:
            found = self._tokens[namespace] = token_for_namespace(key, namespace)
        return found

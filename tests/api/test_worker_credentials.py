"""Per-tenant worker tokens: derived from the root and the namespace, stable, distinct per namespace, and never
the root itself."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from voxfleet.api.worker_credentials import DERIVATION_LABEL, NamespaceTokens, token_for_namespace

ROOT = "root-token-0123456789abcdefghijklmnopqrstuv"


def test_the_token_is_hmac_sha256_of_the_label_and_namespace_keyed_by_the_root():
    expected = base64.urlsafe_b64encode(
        hmac.new(ROOT.encode(), DERIVATION_LABEL + b"tenant-acme", hashlib.sha256).digest()).rstrip(b"=").decode()
    assert token_for_namespace(ROOT, "tenant-acme") == expected
    assert token_for_namespace(ROOT.encode(), "tenant-acme") == expected
    assert len(expected) == 43 and ROOT not in expected


def test_namespaces_and_roots_each_get_their_own_token():
    namespaces = [f"tenant-{i}" for i in range(200)] + ["tenant-a", "tenant-ab", "tenant-a-b"]
    tokens = {token_for_namespace(ROOT, ns) for ns in namespaces}
    print(f"{len(namespaces)} namespaces -> {len(tokens)} distinct tokens")
    assert len(tokens) == len(namespaces)
    assert token_for_namespace("another-root", "tenant-a") != token_for_namespace(ROOT, "tenant-a")


def test_an_empty_root_or_namespace_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="root worker token is empty"):
        token_for_namespace("", "tenant-a")
    with pytest.raises(ValueError, match="namespace is empty"):
        token_for_namespace(ROOT, "")


def test_the_cache_follows_a_root_rotation():
    tokens = NamespaceTokens()
    assert tokens.token(ROOT, "tenant-a") == token_for_namespace(ROOT, "tenant-a")
    assert tokens.token("rotated", "tenant-a") == token_for_namespace("rotated", "tenant-a")

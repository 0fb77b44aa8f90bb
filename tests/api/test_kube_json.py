"""Apiserver request bodies read the same as JSON and as YAML (server-side apply parses them as YAML), for text in
any script, against the real apiserver too."""

from __future__ import annotations

import json

import pytest
import yaml

from voxfleet.api.kube_json import body_bytes
from voxfleet.kube.blocking import BlockingKubeClient

TEXTS = ["Hello \U0001F600", "caf\u00e9 \u4f60\u597d", "\U000e46df \ue000", "line\u2028sep \u0085 \u0090",
         "tab\there\nnew \u0001 \"quoted\" \\ud83d (a backslash, not an escape)", "\ufffe\uffff",
         "del \u007f c1 \u0083 \u0097 and \U0008ebe5 (the stateful fuzzer's system prompt: the apiserver answered 400)"]


@pytest.mark.parametrize("text", TEXTS)
def test_json_and_yaml_read_the_same_body(text):
    body = {"greeting": text, "list": [text, {"nested": text}]}
    encoded = body_bytes(body)
    assert json.loads(encoded) == body
    assert yaml.safe_load(encoded.decode("utf-8")) == body


@pytest.mark.world
def test_the_apiserver_stores_server_side_applied_text_as_written(kube, namespace):
    data = {f"t{i}": text for i, text in enumerate(TEXTS)}
    manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "unicode", "namespace": namespace},
                "data": data}
    with BlockingKubeClient.from_kubeconfig(kube.kubeconfig) as rest:  # voxfleet.kube: bodies via kube_json
        applied = rest.apply(manifest, field_manager="voxfleet-tests")
    assert applied["data"] == data

"""The informer against the real apiserver: events in order, indexes that follow changes, label selection by the
apiserver, RESYNC, and a relist after 410 Gone that tells handlers what the watch missed."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from voxfleet.kube.client import APPLY_PATCH, KubeClient
from voxfleet.kube.errors import Gone, KubeApiError
from voxfleet.kube.informer import ADDED, DELETED, MODIFIED, RESYNC, Informer, InformerEvent, by_label
from voxfleet.kube.resources import ResourceType

pytestmark = pytest.mark.world


def _configmap(namespace: str, name: str, tenant: str, value: str = "1") -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace, "labels": {"k1-test": "yes", "tenant": tenant}},
            "data": {"value": value}}


async def _until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_events_indexes_and_selection(admin: KubeClient, namespace):
    await admin.apply(_configmap(namespace, "before", "acme"), field_manager="k1-test")
    informer = Informer(admin, "ConfigMap", namespace=namespace, label_selector="k1-test=yes",
                        indexers={"tenant": by_label("tenant")}, resync_seconds=0.5)
    events: list[InformerEvent] = []
    informer.add_handler(events.append)
    informer.start()
    try:
        await informer.wait_synced(10)
        assert informer.has_synced and informer.healthy
        assert [e.type for e in events] == [ADDED]  # kube-root-ca.crt is not labelled: the apiserver selected
        await admin.apply(_configmap(namespace, "a", "acme"), field_manager="k1-test")
        await admin.apply(_configmap(namespace, "b", "globex"), field_manager="k1-test")
        await _until(lambda: len(informer) == 3)
        assert sorted(cm["metadata"]["name"] for cm in informer.by_index("tenant", "acme")) == ["a", "before"]
        await admin.apply(_configmap(namespace, "a", "globex", "2"), field_manager="k1-test")  # moves tenant
        await _until(lambda: len(informer.by_index("tenant", "globex")) == 2)
        assert [cm["metadata"]["name"] for cm in informer.by_index("tenant", "acme")] == ["before"]
        await admin.delete("ConfigMap", "before", namespace)
        await _until(lambda: informer.get(namespace, "before") is None)
        assert informer.by_index("tenant", "acme") == [] and "acme" not in informer.index_values("tenant")
        assert len(informer.in_namespace(namespace)) == 2
        await _until(lambda: any(e.type == RESYNC for e in events), timeout=5)
    finally:
        await informer.stop()
    changes = [(e.type, e.key[1]) for e in events if e.type != RESYNC]
    assert changes == [(ADDED, "before"), (ADDED, "a"), (ADDED, "b"), (MODIFIED, "a"), (DELETED, "before")]
    modified = next(e for e in events if e.type == MODIFIED)
    assert modified.old["data"]["value"] == "1" and modified.new["data"]["value"] == "2"


@pytest_asyncio.fixture(loop_scope="function")
async def widgets(admin: KubeClient) -> AsyncIterator[ResourceType]:
    """A resource type of this test's own (a CRD): the apiserver starts its watch cache when the CRD is created,
    at the current version, so version "1" is out of its window on any apiserver (a built-in type's cache on a
    young apiserver can still hold version 1, and then it answers with history instead of 410)."""
    suffix = uuid.uuid4().hex[:6]
    widget = ResourceType("k1test.voxfleet.dev/v1", f"widgets{suffix}", True, f"Widget{suffix.upper()}")
    name = f"{widget.plural}.k1test.voxfleet.dev"
    await admin.create({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": name},
        "spec": {"group": "k1test.voxfleet.dev", "scope": "Namespaced",
                 "names": {"plural": widget.plural, "singular": f"widget{suffix}", "kind": widget.kind},
                 "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                     "type": "object", "properties": {"data": {"type": "object",
                                                               "additionalProperties": {"type": "string"}}}}}}]}})
    try:
        deadline = time.monotonic() + 30
        while True:  # Established, and its REST endpoint answering (a moment later)
            try:
                await admin.list(widget, "default")
                break
            except KubeApiError:
                assert time.monotonic() < deadline, f"CRD {name} never served"
                await asyncio.sleep(0.1)
        yield widget
    finally:
        await admin.delete("CustomResourceDefinition", name)


async def test_a_too_old_version_relists_and_reports_what_the_watch_missed(admin: KubeClient, namespace, widgets):
    async def apply(name: str, value: str = "1") -> None:
        await admin.request("PATCH", widgets.path(namespace, name), content_type=APPLY_PATCH,
                            params={"fieldManager": "k1-test", "force": "true"},
                            body={"apiVersion": widgets.api_version, "kind": widgets.kind,
                                  "metadata": {"name": name, "namespace": namespace, "labels": {"k1-test": "yes"}},
                                  "data": {"value": value}})

    with pytest.raises(Gone):  # the apiserver's own answer to a version out of its window
        async for _ in admin.watch(widgets, namespace, resource_version="1", timeout_seconds=5):
            pass

    await apply("kept")
    await apply("gone")
    informer = Informer(admin, widgets, namespace=namespace, label_selector="k1-test=yes",
                        transform=lambda w: w["data"]["value"])
    events: list[InformerEvent] = []
    informer.add_handler(events.append)
    await informer.relist()
    # Away longer than the apiserver's window: changes happen, and the version to resume from is too old.
    await admin.request("DELETE", widgets.path(namespace, "gone"))
    await apply("kept", "2")
    informer.resource_version = "1"
    task = asyncio.create_task(informer.run())  # its watch gets 410 from the apiserver, so it lists again
    try:
        await _until(lambda: informer.get(namespace, "kept") == "2")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    print(f"\nrelists {informer.relists}")
    assert informer.relists == 2 and informer.get(namespace, "gone") is None
    changes = [(e.type, e.key[1], e.new) for e in events[2:]]
    assert sorted(changes, key=str) == sorted([(DELETED, "gone", None), (MODIFIED, "kept", "2")], key=str)

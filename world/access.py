"""Handles on a running world for tests and tools: the cluster (kubeconfig, clients, fresh namespaces) and the
runner pool (which nodes run pods for real, how to place a pod there, where its logs are)."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from voxfleet.kube.blocking import BlockingKubeClient
from voxfleet.kube.errors import KubeApiError

from . import binaries, topology
from .world import WorldInfo

TEST_NAMESPACE_LABEL = "voxfleet.dev/test-namespace"


@dataclass
class Cluster:
    kubeconfig: Path
    apiserver_url: str

    @classmethod
    def of(cls, info: WorldInfo) -> "Cluster":
        return cls(Path(info.kubeconfig), info.apiserver_url)

    def api_client(self):
        """A new ``kubernetes.client.ApiClient`` (admin); close it when done (it is a context manager)."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def rest(self) -> BlockingKubeClient:
        """A blocking voxfleet.kube client (admin, raw JSON dicts); close it when done (or use `with`)."""
        return BlockingKubeClient.from_kubeconfig(self.kubeconfig)

    def kubectl(self, *args: str, check: bool = True, input: str | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess:
        """Run our kubectl (v1.36, not an old one from PATH) against the world; text output captured."""
        return self._run("kubectl", args, check, input, timeout)

    def helm(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        """Run helm against the world (its own cache/config folders, so a user's helm setup isn't touched)."""
        return self._run("helm", args, check, None, timeout)

    def _run(self, tool: str, args, check: bool, input: str | None, timeout: float) -> subprocess.CompletedProcess:
        env = dict(os.environ, KUBECONFIG=str(self.kubeconfig))
        if tool == "helm":
            home = self.kubeconfig.parent / "helm"
            env.update(HELM_CACHE_HOME=str(home / "cache"), HELM_CONFIG_HOME=str(home / "config"),
                       HELM_DATA_HOME=str(home / "data"))
        result = subprocess.run([str(binaries.find(tool).path), *args], env=env, input=input, text=True,
                                capture_output=True, timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)} failed ({result.returncode}):\n{result.stderr}{result.stdout}")
        return result

    def new_namespace(self, prefix: str = "t", *, labels: dict[str, str] | None = None,
                      timeout: float = 30.0) -> str:
        """Create a uniquely named namespace and wait until pods can be created in it (its 'default'
        ServiceAccount exists) and mount the API (kube-root-ca.crt exists)."""
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        rest = self.rest()
        try:
            rest.create({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": name, "labels": {TEST_NAMESPACE_LABEL: "true", **(labels or {})}}})
            deadline = time.monotonic() + timeout
            for kind, object_name in (("ServiceAccount", "default"), ("ConfigMap", "kube-root-ca.crt")):
                while rest.get_or_none(kind, object_name, name) is None:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"namespace {name}: {kind} {object_name} did not appear within "
                                           f"{timeout:.0f} s (is kube-controller-manager running? see its log)")
                    time.sleep(0.05)
        finally:
            rest.close()
        return name

    def delete_namespace(self, name: str) -> None:
        """Start deleting a namespace (doesn't wait: its pods drain in the background)."""
        rest = self.rest()
        try:
            rest.delete("Namespace", name, propagation=None)
        except KubeApiError:
            pass
        finally:
            rest.close()


@dataclass
class RunnerPool:
    """The nodes whose pods the pod runner runs as real processes (one per zone, region -> node names)."""
    nodes: dict[str, list[str]]
    simulated_nodes: dict[str, list[str]]
    pods_dir: Path
    runner_log: Path

    node_selector = topology.RUNNER_NODE_SELECTOR
    tolerations = topology.RUNNER_TOLERATIONS

    @classmethod
    def of(cls, info: WorldInfo) -> "RunnerPool":
        return cls(info.runner_nodes, info.simulated_nodes, Path(info.pods_dir),
                   Path(info.logs_dir) / "pod-runner.log")

    def placement(self, region: str | None = None) -> dict:
        """Pod-spec fields that put a pod on a runner node (of ``region``, if given): merge into ``spec``."""
        selector = dict(self.node_selector)
        if region is not None:
            if region not in self.nodes:
                raise ValueError(f"unknown region {region!r}; regions: {', '.join(self.nodes)}")
            selector[topology.REGION_LABEL] = region
        return {"nodeSelector": selector, "tolerations": [dict(t) for t in self.tolerations]}

    def pod_dir(self, namespace: str, pod: str) -> Path:
        return self.pods_dir / namespace / pod

    def log_path(self, namespace: str, pod: str, container: str) -> Path:
        """stdout+stderr of a container (appended across restarts, each run starts with a '---' line)."""
        return self.pod_dir(namespace, pod) / f"{container}.log"

    def log(self, namespace: str, pod: str, container: str) -> str:
        path = self.log_path(namespace, pod, container)
        return path.read_text(errors="replace") if path.exists() else ""

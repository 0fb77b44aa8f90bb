"""A pod's volumes materialised as folders under the pod's own directory, and container paths mapped onto them.

Without containers there is no mount namespace: a process sees the host's file system. So each volume becomes
``<pod dir>/volumes/<volume name>/`` and a container's view of it is *rewritten* instead of mounted: any
command/arg/env value (and workingDir) that starts with one of the container's ``mountPath``s, or a
``--flag=<value>`` arg whose value does, has that prefix replaced by the materialised path (subPath included).
Programs that build a mount path from pieces at runtime, or hard-code one, won't see the volume; pass paths
through args or env, which is good practice anyway.

Supported: configMap, secret, downwardAPI, emptyDir, projected (configMap, secret, downwardAPI,
serviceAccountToken via the TokenRequest API), hostPath (used as is). Written once when the pod starts: later
edits of a ConfigMap don't propagate (voxfleet rolls pods on config changes via a hash in the pod template).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from voxfleet.kube.errors import NotFound
from .pod_env import ConfigError, field_value, resource_value

SERVICE_ACCOUNT_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"


@dataclass(frozen=True)
class Mount:
    container_path: str  # as written in the pod spec
    host_path: Path  # where its content really is


class VolumeSources:
    """The API reads volumes need. Callables so this module stays testable without a cluster."""

    def __init__(self, read_config_map: Callable[[str, str], dict[str, str]],
                 read_secret: Callable[[str, str], dict[str, bytes]],
                 request_token: Callable[[dict, str | None, int], str]):
        self.read_config_map = read_config_map  # (namespace, name) -> data (binaryData included, as str)
        self.read_secret = read_secret  # (namespace, name) -> decoded bytes
        self.request_token = request_token  # (pod, audience, expirationSeconds) -> token bound to the pod


def materialise(pod: dict, pod_dir: Path, sources: VolumeSources) -> dict[str, Path]:
    """Write every volume of ``pod`` into ``pod_dir/volumes``; returns volume name -> folder."""
    root = pod_dir / "volumes"
    if root.exists():
        shutil.rmtree(root)  # a pod (same uid) restarted by a restarted runner: start from the API's truth
    root.mkdir(parents=True)
    namespace = pod["metadata"]["namespace"]
    paths: dict[str, Path] = {}
    for volume in pod["spec"].get("volumes") or []:
        name = volume["name"]
        target = root / name
        if "hostPath" in volume:
            paths[name] = Path(volume["hostPath"]["path"])
            continue
        target.mkdir()
        paths[name] = target
        if "emptyDir" in volume:
            continue
        if "configMap" in volume:
            _write_config_map(target, namespace, volume["configMap"], sources)
        elif "secret" in volume:
            _write_secret(target, namespace, volume["secret"], sources)
        elif "downwardAPI" in volume:
            _write_downward(target, pod, volume["downwardAPI"].get("items") or [],
                            volume["downwardAPI"].get("defaultMode"))
        elif "projected" in volume:
            projected = volume["projected"]
            mode = projected.get("defaultMode")
            for source in projected.get("sources") or []:
                if "configMap" in source:
                    _write_config_map(target, namespace, {**source["configMap"], "defaultMode": mode}, sources)
                elif "secret" in source:
                    _write_secret(target, namespace, {**source["secret"], "defaultMode": mode}, sources)
                elif "downwardAPI" in source:
                    _write_downward(target, pod, source["downwardAPI"].get("items") or [], mode)
                elif "serviceAccountToken" in source:
                    sat = source["serviceAccountToken"]
                    token = sources.request_token(pod, sat.get("audience"), int(sat.get("expirationSeconds", 3607)))
                    _write_file(target / sat["path"], token.encode(), mode)
        elif "persistentVolumeClaim" in volume:
            continue  # a plain folder per pod: enough for tests, not shared between pods
        else:
            kinds = sorted(k for k in volume if k != "name")
            raise ConfigError(f"volume {name!r}: unsupported volume type {kinds} in the test world")
    return paths


def mounts(container: dict, volume_paths: dict[str, Path]) -> list[Mount]:
    """The container's mounts, longest container path first so nested mounts win."""
    result = []
    for vm in container.get("volumeMounts") or []:
        host = volume_paths.get(vm["name"])
        if host is None:
            raise ConfigError(f"volumeMount {vm['name']!r} names no volume of the pod")
        if vm.get("subPath"):
            host = host / vm["subPath"]
        result.append(Mount(vm["mountPath"].rstrip("/") or "/", host))
    return sorted(result, key=lambda m: len(m.container_path), reverse=True)


def rewrite(value: str, container_mounts: list[Mount]) -> str:
    """Map a container path (or ``--flag=<path>``) onto the materialised volume; other values pass unchanged."""
    rewritten = _rewrite_path(value, container_mounts)
    if rewritten is not None:
        return rewritten
    if value.startswith("-") and "=" in value:
        flag, _, rest = value.partition("=")
        rewritten = _rewrite_path(rest, container_mounts)
        if rewritten is not None:
            return f"{flag}={rewritten}"
    return value


# The image's own files: here this checkout and its Python environment play the image, so a path inside them is
# never a volume's, even when the checkout sits below a mount path (a clone under /tmp, where worker pods mount an
# emptyDir): a real image's files would not live there.
_IMAGE_ROOTS = tuple({str(p) for root in (Path(__file__).parents[1], Path(sys.prefix)) for p in (root, root.resolve())})


def _in_image(value: str) -> bool:
    return any(value == root or value.startswith(root + "/") for root in _IMAGE_ROOTS)


def _rewrite_path(value: str, container_mounts: list[Mount]) -> str | None:
    if _in_image(value):
        return None
    for mount in container_mounts:
        prefix = mount.container_path
        if value == prefix or value.startswith(prefix + "/"):
            return str(mount.host_path) + value[len(prefix):]
    return None


def _items(data: dict, items: list[dict] | None, what: str, optional: bool) -> list[tuple[str, bytes, int | None]]:
    if not items:
        return [(key, value, None) for key, value in data.items()]
    result = []
    for item in items:
        if item["key"] not in data:
            if optional:
                continue
            raise ConfigError(f"{what}: no key {item['key']!r}")
        result.append((item["path"], data[item["key"]], item.get("mode")))
    return result


def _write_config_map(target: Path, namespace: str, ref: dict, sources: VolumeSources) -> None:
    name, optional = ref["name"], bool(ref.get("optional"))
    data = _read(sources.read_config_map, namespace, name, "configmap", optional)
    encoded = {k: v.encode() if isinstance(v, str) else v for k, v in (data or {}).items()}
    for path, content, mode in _items(encoded, ref.get("items"), f"configmap {namespace}/{name}", optional):
        _write_file(target / path, content, mode if mode is not None else ref.get("defaultMode"))


def _write_secret(target: Path, namespace: str, ref: dict, sources: VolumeSources) -> None:
    name = ref.get("secretName") or ref.get("name")
    optional = bool(ref.get("optional"))
    data = _read(sources.read_secret, namespace, name, "secret", optional)
    for path, content, mode in _items(data or {}, ref.get("items"), f"secret {namespace}/{name}", optional):
        _write_file(target / path, content, mode if mode is not None else ref.get("defaultMode"))


def _write_downward(target: Path, pod: dict, items: list[dict], default_mode: int | None) -> None:
    for item in items:
        if "fieldRef" in item:
            value = field_value(pod, item["fieldRef"]["fieldPath"])
        else:
            container = next(c for c in pod["spec"]["containers"]
                             if c["name"] == item["resourceFieldRef"].get("containerName", c["name"]))
            value = resource_value(container, item["resourceFieldRef"])
        _write_file(target / item["path"], value.encode(), item.get("mode", default_mode))


def _read(reader, namespace: str, name: str, kind: str, optional: bool):
    try:
        return reader(namespace, name)
    except NotFound:
        if optional:
            return None
        raise ConfigError(f'{kind} "{name}" not found') from None


def _write_file(path: Path, content: bytes, mode: int | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    # Modes stay owner-readable: the files belong to the runner's user, not to a container uid.
    os.chmod(path, (mode if mode is not None else 0o644) | 0o400)

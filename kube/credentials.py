"""Where the apiserver is and who we are to it: a kubeconfig (contexts, embedded or referenced certificates,
tokens, token files, exec plugins) or the pod's service account.

Tokens come from a `TokenSource` that each client owns, asked before every request:
- a static token (kubeconfig `token`);
- a token file read again every minute (the kubelet rotates a pod's projected service-account token; client-go
  re-reads it the same way);
- an exec plugin (EKS `aws eks get-token`, GKE `gke-gcloud-auth-plugin`, ...): run once, its ExecCredential
  cached until shortly before its `expirationTimestamp`, then run again before the token can expire; run again
  too when the apiserver answers 401 to the token it gave (revoked, or a clock disagreement).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import yaml

IN_CLUSTER_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TOKEN_FILE_REREAD_SECONDS = 60.0
# Refresh an exec token this long before it expires: the larger of 1 s and a fifth of its lifetime, at most a
# minute (a 15-minute EKS token is refreshed at 14 min; a 10 s test token at 8 s).
_EARLY_MAX = 60.0
_EARLY_FRACTION = 0.2


class CredentialsError(RuntimeError):
    """No usable credentials: no kubeconfig and not in a pod, a missing context, or an exec plugin failing."""


class TokenSource(Protocol):
    async def token(self) -> str | None:
        """The bearer token for the next request (None: authenticate by client certificate only)."""

    async def rejected(self, token: str | None) -> bool:
        """The apiserver answered 401 to `token`: get a fresh one; True when a retry may help."""


class NoToken:
    async def token(self) -> str | None:
        return None

    async def rejected(self, token: str | None) -> bool:
        return False


@dataclass
class StaticToken:
    value: str

    async def token(self) -> str | None:
        return self.value

    async def rejected(self, token: str | None) -> bool:
        return False


@dataclass
class TokenFile:
    """A token file, read again after TOKEN_FILE_REREAD_SECONDS (and at once after a 401)."""

    path: str
    _value: str | None = None
    _read_at: float = 0.0

    async def token(self) -> str | None:
        if self._value is None or time.monotonic() - self._read_at > TOKEN_FILE_REREAD_SECONDS:
            self._value = Path(self.path).read_text().strip()
            self._read_at = time.monotonic()
        return self._value

    async def rejected(self, token: str | None) -> bool:
        self._value = None
        return True


@dataclass
class ExecPlugin:
    """A client.authentication.k8s.io exec plugin: command, args, env, as the kubeconfig's `user.exec` says."""

    command: str
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    api_version: str = "client.authentication.k8s.io/v1"
    cluster: dict[str, Any] | None = None  # given to the plugin when provideClusterInfo is true
    timeout: float = 60.0


class ExecPluginToken:
    """Tokens from an exec plugin, refreshed before they expire and after a 401; one run at a time."""

    def __init__(self, plugin: ExecPlugin):
        self.plugin = plugin
        self.runs = 0  # how many times the plugin ran (tests and metrics read it)
        self.rejections = 0  # 401s answered to one of its tokens
        self._token: str | None = None
        self._refresh_at = 0.0  # time.time() after which the token is renewed before use
        self._lock: asyncio.Lock | None = None

    async def token(self) -> str | None:
        if self._token is None or time.time() >= self._refresh_at:
            await self._refresh(stale=self._token)
        return self._token

    async def rejected(self, token: str | None) -> bool:
        self.rejections += 1
        await self._refresh(stale=token)
        return True

    async def _refresh(self, stale: str | None) -> None:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            # Another request refreshed while this one waited for the lock: use its token.
            if self._token is not None and self._token != stale and time.time() < self._refresh_at:
                return
            credential = await self._run()
            status = credential.get("status") or {}
            token = status.get("token")
            if not token:
                raise CredentialsError(f"exec plugin {self.plugin.command!r} returned no status.token"
                                       " (client certificates from exec plugins are not supported)")
            issued = time.time()
            expires = _parse_time(status.get("expirationTimestamp"))
            if expires is None:
                self._refresh_at = float("inf")  # no expiry given: keep it until a 401 says otherwise
            else:
                early = min(_EARLY_MAX, max(1.0, (expires - issued) * _EARLY_FRACTION))
                self._refresh_at = expires - early
            self._token = token
            self.runs += 1

    async def _run(self) -> dict[str, Any]:
        plugin = self.plugin
        spec: dict[str, Any] = {"interactive": False}
        if plugin.cluster is not None:
            spec["cluster"] = plugin.cluster
        env = dict(os.environ, **plugin.env,
                   KUBERNETES_EXEC_INFO=json.dumps({"apiVersion": plugin.api_version, "kind": "ExecCredential",
                                                    "spec": spec}))
        try:
            process = await asyncio.create_subprocess_exec(
                plugin.command, *plugin.args, env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        except OSError as error:
            raise CredentialsError(f"exec plugin {plugin.command!r} could not start: {error}") from None
        try:
            out, err = await asyncio.wait_for(process.communicate(), plugin.timeout)
        except asyncio.TimeoutError:
            process.kill()
            await process.wait()
            raise CredentialsError(f"exec plugin {plugin.command!r} did not answer in {plugin.timeout:.0f} s") \
                from None
        if process.returncode != 0:
            # stderr is the plugin's own words (no token there: the token goes to stdout), cut short.
            raise CredentialsError(f"exec plugin {plugin.command!r} exited {process.returncode}: "
                                   f"{err.decode(errors='replace').strip()[:300]}")
        try:
            return json.loads(out)
        except ValueError:
            raise CredentialsError(f"exec plugin {plugin.command!r} printed no ExecCredential JSON") from None


def _parse_time(value: str | None) -> float | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class Credentials:
    """Immutable connection settings; each client makes its own token source from them (`token_source()`)."""

    server: str
    ca_file: str | None = None
    ca_data: bytes | None = None
    client_cert_file: str | None = None
    client_key_file: str | None = None
    client_cert_data: bytes | None = None
    client_key_data: bytes | None = None
    token: str | None = None
    token_file: str | None = None
    exec_plugin: ExecPlugin | None = None
    insecure: bool = False
    tls_server_name: str | None = None
    namespace: str = "default"  # the context's namespace, or the pod's

    # --- loading --------------------------------------------------------------------------------------------

    @classmethod
    def load(cls, kubeconfig: str | Path | None = None, *, context: str | None = None) -> "Credentials":
        """An explicit kubeconfig, else $KUBECONFIG, else the pod's service account, else ~/.kube/config."""
        if kubeconfig is not None:
            return cls.from_kubeconfig(kubeconfig, context=context)
        if os.environ.get("KUBECONFIG"):
            return cls.from_kubeconfig(os.environ["KUBECONFIG"], context=context)
        if (IN_CLUSTER_DIR / "token").exists() and os.environ.get("KUBERNETES_SERVICE_HOST"):
            return cls.in_cluster()
        default = Path.home() / ".kube" / "config"
        if default.exists():
            return cls.from_kubeconfig(default, context=context)
        raise CredentialsError("no Kubernetes credentials: no kubeconfig given, $KUBECONFIG unset, not in a pod"
                               f" and {default} does not exist")

    @classmethod
    def in_cluster(cls) -> "Credentials":
        host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if ":" in host:
            host = f"[{host}]"
        namespace_file = IN_CLUSTER_DIR / "namespace"
        return cls(server=f"https://{host}:{port}", ca_file=str(IN_CLUSTER_DIR / "ca.crt"),
                   token_file=str(IN_CLUSTER_DIR / "token"),
                   namespace=namespace_file.read_text().strip() if namespace_file.exists() else "default")

    @classmethod
    def from_kubeconfig(cls, path: str | Path, *, context: str | None = None) -> "Credentials":
        """One kubeconfig, or a $KUBECONFIG-style list joined by os.pathsep (the first file naming a thing wins,
        as kubectl merges them). Relative file paths are relative to the file that names them."""
        merged: dict[str, dict[str, tuple[dict, Path]]] = {"clusters": {}, "users": {}, "contexts": {}}
        current = None
        files = [Path(p).expanduser() for p in str(path).split(os.pathsep) if p]
        for file in files:
            if not file.exists():
                if len(files) == 1:
                    raise CredentialsError(f"kubeconfig {file} does not exist")
                continue
            config = yaml.safe_load(file.read_text()) or {}
            current = current or config.get("current-context")
            for section, key in (("clusters", "cluster"), ("users", "user"), ("contexts", "context")):
                for entry in config.get(section) or []:
                    merged[section].setdefault(entry["name"], (entry.get(key) or {}, file.parent))
        name = context or current
        if not name or name not in merged["contexts"]:
            raise CredentialsError(f"kubeconfig {path}: context {name!r} not found")
        ctx, _ = merged["contexts"][name]
        if ctx.get("cluster") not in merged["clusters"]:
            raise CredentialsError(f"kubeconfig {path}: cluster {ctx.get('cluster')!r} not found")
        cluster, cluster_dir = merged["clusters"][ctx["cluster"]]
        user, user_dir = merged["users"].get(ctx.get("user"), ({}, cluster_dir))

        def file_of(entry: dict, key: str, base: Path) -> str | None:
            value = entry.get(key)
            return str((base / value).resolve()) if value else None

        def data_of(entry: dict, key: str) -> bytes | None:
            value = entry.get(key)
            return base64.b64decode(value) if value else None

        exec_plugin = None
        if user.get("exec"):
            spec = user["exec"]
            command = spec["command"]
            if os.sep in command and not os.path.isabs(command):
                command = str((user_dir / command).resolve())  # as client-go: relative to the kubeconfig
            exec_plugin = ExecPlugin(
                command=command, args=list(spec.get("args") or []),
                env={e["name"]: e["value"] for e in spec.get("env") or []},
                api_version=spec.get("apiVersion") or "client.authentication.k8s.io/v1",
                cluster=({"server": cluster["server"],
                          "certificate-authority-data": cluster.get("certificate-authority-data"),
                          "insecure-skip-tls-verify": bool(cluster.get("insecure-skip-tls-verify"))}
                         if spec.get("provideClusterInfo") else None))
        return cls(
            server=cluster["server"],
            ca_file=file_of(cluster, "certificate-authority", cluster_dir),
            ca_data=data_of(cluster, "certificate-authority-data"),
            client_cert_file=file_of(user, "client-certificate", user_dir),
            client_key_file=file_of(user, "client-key", user_dir),
            client_cert_data=data_of(user, "client-certificate-data"),
            client_key_data=data_of(user, "client-key-data"),
            token=user.get("token"),
            token_file=file_of(user, "tokenFile", user_dir),
            exec_plugin=exec_plugin,
            insecure=bool(cluster.get("insecure-skip-tls-verify")),
            tls_server_name=cluster.get("tls-server-name"),
            namespace=ctx.get("namespace") or "default")

    # --- what a client needs --------------------------------------------------------------------------------

    def token_source(self) -> TokenSource:
        """A new token source (one per client: an exec plugin's cache and lock belong to one event loop)."""
        if self.exec_plugin is not None:
            return ExecPluginToken(self.exec_plugin)
        if self.token_file:
            return TokenFile(self.token_file)
        if self.token:
            return StaticToken(self.token)
        return NoToken()

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(
            cafile=self.ca_file, cadata=self.ca_data.decode() if self.ca_data else None)
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.client_cert_file:
            context.load_cert_chain(self.client_cert_file, self.client_key_file)
        elif self.client_cert_data:
            # ssl loads a chain only from files: write the embedded pair to a private temp dir for the call.
            with tempfile.TemporaryDirectory(prefix="voxfleet-kube-") as directory:
                cert, key = Path(directory) / "tls.crt", Path(directory) / "tls.key"
                cert.write_bytes(self.client_cert_data)
                key.touch(0o600)
                key.write_bytes(self.client_key_data or b"")
                context.load_cert_chain(str(cert), str(key))
        return context

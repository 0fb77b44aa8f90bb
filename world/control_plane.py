"""etcd, kube-apiserver, kube-controller-manager and kube-scheduler as real processes on 127.0.0.1.

No kubelet: nodes come from kwok, real pods from the pod runner. Start order matters: etcd, then the apiserver
(waited for on /readyz), then controller-manager and scheduler. Started earlier, they exit at once: their first
read of kube-system/extension-apiserver-authentication is refused until the apiserver's RBAC bootstrap is done.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from . import certs, kubeconfig, processes
from .binaries import Binary
from .processes import Server

SERVICE_CIDR = "10.96.0.0/16"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
# Benchmarks create thousands of pods: the default client rate limits (20/30 QPS) would measure the limiter.
CLIENT_QPS, CLIENT_BURST = 200, 400


@dataclass
class ControlPlane:
    apiserver_url: str
    admin_kubeconfig: Path
    servers: list[Server]
    etcd_url: str


def start(*, bins: dict[str, Binary], pki: certs.Pki, state_dir: Path, world_id: str,
          timeout: float = 60.0) -> ControlPlane:
    logs = state_dir / "logs"
    etcd_port, peer_port, api_port, cm_port, sched_port = processes.free_ports(5)
    etcd_url = f"http://127.0.0.1:{etcd_port}"
    servers: list[Server] = []

    etcd = processes.start("etcd", [
        str(bins["etcd"].path),
        "--name=world", f"--data-dir={state_dir / 'etcd'}",
        f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
        f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
        f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
        f"--initial-cluster=world=http://127.0.0.1:{peer_port}",
        "--unsafe-no-fsync",  # a throwaway store: fsync only slows every write down
        "--log-level=warn",
    ], log_dir=logs, world_id=world_id)
    servers.append(etcd)

    apiserver_url = f"https://127.0.0.1:{api_port}"
    apiserver = processes.start("kube-apiserver", [
        str(bins["kube-apiserver"].path),
        f"--etcd-servers={etcd_url}",
        "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={api_port}",
        f"--cert-dir={state_dir / 'apiserver-certs'}",
        f"--tls-cert-file={pki.apiserver_cert}", f"--tls-private-key-file={pki.apiserver_key}",
        f"--client-ca-file={pki.ca_cert}",
        f"--service-account-issuer={SA_ISSUER}",
        f"--service-account-key-file={pki.sa_pub}", f"--service-account-signing-key-file={pki.sa_key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--authorization-mode=Node,RBAC",
        # No kubelet/kube-proxy would ever serve the 'kubernetes' Service endpoints; don't pretend.
        "--endpoint-reconciler-type=none",
        # Without these the controller-manager and scheduler log CA-bundle errors about
        # extension-apiserver-authentication forever.
        f"--requestheader-client-ca-file={pki.front_proxy_ca_cert}",
        "--requestheader-allowed-names=front-proxy-client",
        "--requestheader-username-headers=X-Remote-User", "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        f"--proxy-client-cert-file={pki.front_proxy_client_cert}",
        f"--proxy-client-key-file={pki.front_proxy_client_key}",
        # Room for benchmark bursts (defaults 400/200).
        "--max-requests-inflight=1600", "--max-mutating-requests-inflight=800",
        "--profiling=false",
    ], log_dir=logs, world_id=world_id)
    servers.append(apiserver)

    admin = kubeconfig.write(state_dir / "kubeconfig", server=apiserver_url, ca_cert=pki.ca_cert,
                             client_cert=pki.client_cert("admin"), client_key=pki.client_key("admin"),
                             user="voxfleet-admin")
    ssl_ctx = client_ssl_context(pki, "admin")
    processes.wait_until("kube-apiserver /readyz", lambda: _get_ok(f"{apiserver_url}/readyz", ssl_ctx),
                         timeout=timeout, servers=servers)

    cm_kubeconfig = kubeconfig.write(state_dir / "kubeconfigs" / "controller-manager", server=apiserver_url,
                                     ca_cert=pki.ca_cert, client_cert=pki.client_cert("controller-manager"),
                                     client_key=pki.client_key("controller-manager"))
    servers.append(processes.start("kube-controller-manager", [
        str(bins["kube-controller-manager"].path),
        f"--kubeconfig={cm_kubeconfig}",
        f"--authentication-kubeconfig={cm_kubeconfig}", f"--authorization-kubeconfig={cm_kubeconfig}",
        "--bind-address=127.0.0.1", f"--secure-port={cm_port}",
        f"--cert-dir={state_dir / 'controller-manager-certs'}",
        f"--service-account-private-key-file={pki.sa_key}", f"--root-ca-file={pki.ca_cert}",
        # Each controller acts as its own service account, so RBAC is exercised as in a real cluster.
        "--use-service-account-credentials=true",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--allocate-node-cidrs=false",  # nodes are created with their own 127.x.y.0/24
        "--leader-elect=false",
        f"--kube-api-qps={CLIENT_QPS}", f"--kube-api-burst={CLIENT_BURST}",
        # Sync Deployments/ReplicaSets of benchmarks in parallel (defaults are 5).
        "--concurrent-deployment-syncs=20", "--concurrent-replicaset-syncs=20",
        "--profiling=false",
    ], log_dir=logs, world_id=world_id))

    sched_kubeconfig = kubeconfig.write(state_dir / "kubeconfigs" / "scheduler", server=apiserver_url,
                                        ca_cert=pki.ca_cert, client_cert=pki.client_cert("scheduler"),
                                        client_key=pki.client_key("scheduler"))
    sched_config = state_dir / "scheduler-config.yaml"
    # The scheduler's rate limits live in its config file (its --kube-api-qps flags are deprecated/ignored
    # once --config is given).
    sched_config.write_text(yaml.safe_dump({
        "apiVersion": "kubescheduler.config.k8s.io/v1",
        "kind": "KubeSchedulerConfiguration",
        "clientConnection": {"kubeconfig": str(sched_kubeconfig), "qps": CLIENT_QPS, "burst": CLIENT_BURST},
        "leaderElection": {"leaderElect": False},
    }))
    servers.append(processes.start("kube-scheduler", [
        str(bins["kube-scheduler"].path),
        f"--config={sched_config}",
        f"--authentication-kubeconfig={sched_kubeconfig}", f"--authorization-kubeconfig={sched_kubeconfig}",
        "--bind-address=127.0.0.1", f"--secure-port={sched_port}",
        f"--cert-dir={state_dir / 'scheduler-certs'}",
        "--profiling=false",
    ], log_dir=logs, world_id=world_id))

    return ControlPlane(apiserver_url=apiserver_url, admin_kubeconfig=admin, servers=servers, etcd_url=etcd_url)


def client_ssl_context(pki: certs.Pki, who: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    ctx.load_cert_chain(str(pki.client_cert(who)), str(pki.client_key(who)))
    return ctx


def _get_ok(url: str, ssl_ctx: ssl.SSLContext) -> bool:
    return httpx.get(url, verify=ssl_ctx, timeout=2).status_code == 200

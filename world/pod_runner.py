"""The pod runner: plays kubelet for the world's runner nodes, running each pod's containers as real processes.

For every pod bound to one of its nodes it:

1. assigns a pod IP from the node's ``spec.podCIDR`` (127.x.y.z: answers on ``lo``, see topology.py) and reports
   podIP/podIPs/hostIP/startTime at once, so the downward API (``status.podIP``) has a value;
2. materialises the pod's volumes into ``<state>/pods/<namespace>/<pod>/volumes`` and rewrites container paths
   onto them (see pod_volumes.py: args/env/workingDir that start with a mountPath, or ``--flag=<mountPath...>``);
3. resolves each container's env like kubelet (pod_env.py: envFrom, env, valueFrom, ``$(VAR)`` expansion) on
   top of a small base env: PATH (this venv's bin first, so ``python`` and ``voxfleet`` resolve), HOME,
   HOSTNAME=pod name, LANG, and KUBECONFIG when the pod mounts a service-account token (a kubeconfig with the
   pod's own bound token: the world's stand-in for in-cluster config, whose paths are hard-coded);
4. runs init containers to completion, then starts each container's ``command + args`` (the image is ignored:
   a container without a command can't run here) in its own process group, stdout+stderr appended to
   ``<pod dir>/<container>.log``;
5. keeps ``pods/status`` current: phase, containerStatuses (running/waiting/terminated, restartCount,
   lastState) and the Ready/ContainersReady conditions from each container's readinessProbe (httpGet,
   tcpSocket, exec; probes.py);
6. restarts exited containers per ``restartPolicy`` with a doubling back-off (1 s .. 30 s, shorter than
   kubelet's 10 s .. 5 min so crash tests don't crawl);
7. on deletion (``deletionTimestamp``) marks the pod not ready, runs exec preStop hooks, sends SIGTERM to every
   container's process group, waits up to the pod's grace period, SIGKILLs what is left, then deletes the pod
   with grace period 0, as kubelet does.

One thread per pod (a pod's life is mostly waiting), one watch thread per node. Started by the World as
``python -m voxfleet.world.pod_runner``; on SIGTERM it stops every container quickly and exits without touching
the API (the world is going away).
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from voxfleet.kube.blocking import BlockingKubeClient
from voxfleet.kube.errors import Gone, KubeApiError, NotFound
from voxfleet.kube.resources import resource_path

from . import kubeconfig as kubeconfig_files
from . import pod_volumes, probes
from .pod_env import ConfigError, EnvResolver, expand
from .processes import MARKER_ENV

BACKOFF_START, BACKOFF_MAX = 1.0, 30.0
BACKOFF_RESET_AFTER = 60.0  # a container that ran this long restarts without waiting
READY_FILE = "pod-runner.ready"


def log(message: str) -> None:
    print(f"{dt.datetime.now().strftime('%H:%M:%S.%f')[:-3]} {message}", flush=True)


def now_rfc3339() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class RunnerNode:
    name: str
    pod_cidr: str
    node_ip: str
    _used: dict[str, str] = field(default_factory=dict)  # ip -> pod uid
    _cursor: int = 1  # network[0] is the network address; the node's own IP is skipped below

    def allocate(self, uid: str, wanted: str | None) -> str:
        """A free IP of the node's CIDR (round-robin, so a freed IP isn't reused at once); ``wanted`` is kept if
        it is ours and free (a restarted runner re-adopting a pod)."""
        network = ipaddress.ip_network(self.pod_cidr)
        if wanted and ipaddress.ip_address(wanted) in network and self._used.get(wanted) in (None, uid):
            self._used[wanted] = uid
            return wanted
        size = network.num_addresses
        for _ in range(size):
            offset = self._cursor
            self._cursor = self._cursor + 1 if self._cursor + 1 < size - 1 else 1
            ip = str(network[offset])
            if ip not in self._used and ip != self.node_ip:
                self._used[ip] = uid
                return ip
        raise RuntimeError(f"node {self.name}: no free pod IP left in {self.pod_cidr}")

    def release(self, ip: str, uid: str) -> None:
        if self._used.get(ip) == uid:
            del self._used[ip]


class ContainerRun:
    """One container of a pod: its process, restarts and status."""

    def __init__(self, spec: dict, *, init: bool):
        self.spec = spec
        self.name: str = spec["name"]
        self.init = init
        self.popen: subprocess.Popen | None = None
        self.started_at: str | None = None
        self.started_mono = 0.0
        self.restart_count = 0
        self.terminated: dict | None = None  # state.terminated of the last run
        self.last_state: dict = {}
        self.waiting: tuple[str, str] | None = ("ContainerCreating", "")
        self.next_start = 0.0
        self.backoff = BACKOFF_START
        self.readiness: probes.ProbeState | None = None
        self.env: dict[str, str] = {}
        self.argv: list[str] = []
        self.cwd: str | None = None

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def start(self, log_path: Path) -> None:
        if not self.argv:
            self.waiting = ("RunContainerError",
                            "no command: the test world runs command+args only (images are not pulled)")
            return
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as out:
            out.write(f"--- {now_rfc3339()} starting {self.argv!r}\n".encode())
            out.flush()
            try:
                self.popen = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, stdin=subprocess.DEVNULL,
                                              stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            except OSError as e:
                self.popen = None
                self.waiting = ("RunContainerError", f"failed to start {self.argv[0]!r}: {e}")
                return
        self.waiting, self.terminated = None, None
        self.started_at, self.started_mono = now_rfc3339(), time.monotonic()
        probe = self.spec.get("readinessProbe")
        self.readiness = probes.ProbeState(probe) if probe and not self.init else None

    def reap(self) -> bool:
        """If the process exited: record it, kill leftovers of its group, return True."""
        if self.popen is None or self.popen.poll() is None:
            return False
        code = self.popen.returncode
        self.kill_group(signal.SIGKILL)  # a container's children die with it, as with a cgroup
        self.terminated = {
            "exitCode": code if code >= 0 else 128 - code,
            "reason": "Completed" if code == 0 else "Error",
            "startedAt": self.started_at, "finishedAt": now_rfc3339(),
            "containerID": self.container_id,
        }
        if code < 0:
            self.terminated["signal"] = -code
        ran_for = time.monotonic() - self.started_mono
        self.backoff = BACKOFF_START if ran_for > BACKOFF_RESET_AFTER else self.backoff
        self.popen, self.readiness = None, None
        return True

    def kill_group(self, sig: int) -> None:
        pid = self.popen.pid if self.popen is not None else None
        if pid:
            try:
                os.killpg(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    @property
    def container_id(self) -> str:
        return f"voxfleet-world://{self.popen.pid}" if self.popen is not None else ""

    @property
    def ready(self) -> bool:
        if not self.running:
            return False
        return self.readiness.ok if self.readiness else True

    def status(self) -> dict:
        status = {"name": self.name, "image": self.spec.get("image", ""), "imageID": "",
                  "restartCount": self.restart_count, "ready": self.ready, "started": self.running}
        if self.running:
            status["state"] = {"running": {"startedAt": self.started_at}}
            status["containerID"] = self.container_id
        elif self.waiting:
            reason, message = self.waiting
            status["state"] = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        elif self.terminated:
            status["state"] = {"terminated": self.terminated}
        else:
            status["state"] = {"waiting": {"reason": "ContainerCreating"}}
        if self.last_state:
            status["lastState"] = self.last_state
        return status


class PodLifecycle(threading.Thread):
    """Everything that happens to one pod on one node, from first sight to deletion."""

    def __init__(self, runner: "PodRunner", pod: dict, node: RunnerNode):
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.runner, self.node, self.pod = runner, node, pod
        self.uid, self.namespace, self.pod_name = meta["uid"], meta["namespace"], meta["name"]
        self.wake = threading.Event()
        self.gone = False
        self.ip = ""
        self.started_at = ""
        self.dir = runner.pods_dir / self.namespace / self.pod_name
        self.init_containers = [ContainerRun(c, init=True) for c in pod["spec"].get("initContainers") or []]
        self.containers = [ContainerRun(c, init=False) for c in pod["spec"]["containers"]]
        self.conditions: dict[str, tuple[str, str]] = {}
        self.sent_status: dict | None = None
        self.first_seen = time.monotonic()
        self.reported_ready = False
        self.terminal_phase: str | None = None
        self.config_error = ""

    # --- events from the watch ------------------------------------------------------------------------

    def update(self, pod: dict) -> None:
        self.pod = pod
        self.wake.set()

    def vanish(self) -> None:
        self.gone = True
        self.wake.set()

    @property
    def deleting(self) -> bool:
        return bool(self.pod["metadata"].get("deletionTimestamp"))

    @property
    def policy(self) -> str:
        return self.pod["spec"].get("restartPolicy", "Always")

    # --- the life -------------------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._live()
        except Exception:  # noqa: BLE001 - a bug in one pod must not take the runner down; it is logged
            log(f"pod {self.namespace}/{self.pod_name}: runner error\n{traceback.format_exc()}")
            self._stop_processes(grace=2)
        finally:
            if self.ip:
                self.runner.release_ip(self.node, self.ip, self.uid)
            self.runner.forget(self.uid)

    def _live(self) -> None:
        status = self.pod.get("status") or {}
        if status.get("phase") in ("Succeeded", "Failed"):
            # Finished before this runner saw it (runner restart): nothing to run, only a deletion to finish.
            self.terminal_phase = status["phase"]
            self._wait_until(lambda: self.deleting or self.gone or self.runner.stopping.is_set())
            if self.deleting and not self.gone and not self.runner.stopping.is_set():
                self._finish_deletion()
            return
        if self.deleting:
            self._finish_deletion()
            return
        self.ip = self.node.node_ip if self.pod["spec"].get("hostNetwork") else \
            self.runner.allocate_ip(self.node, self.uid, status.get("podIP"))
        self.started_at = status.get("startTime") or now_rfc3339()
        self._report()
        if not self._prepare():
            return
        for container in self.init_containers:
            if not self._run_to_completion(container):
                return
        for container in self.containers:
            container.start(self.dir / f"{container.name}.log")
        log(f"pod {self.namespace}/{self.pod_name}: started {len(self.containers)} container(s) on {self.ip} "
            f"{time.monotonic() - self.first_seen:.2f} s after first sight")
        self._supervise()

    def _prepare(self) -> bool:
        """Volumes and env for every container; retried while a referenced object is missing."""
        while True:
            if self._should_exit():
                return False
            try:
                pod = self._pod_with_ips()
                self.dir.mkdir(parents=True, exist_ok=True)
                volumes = pod_volumes.materialise(pod, self.dir, self.runner.volume_sources)
                for container in self.init_containers + self.containers:
                    self._configure(container, pod, volumes)
                self.config_error = ""
                return True
            except ConfigError as e:
                self._config_failed("CreateContainerConfigError", str(e), retry_in=1.0)
            except Exception as e:  # noqa: BLE001 - a runner bug shows on the pod (and in the log), not as silence
                if str(e) != self.config_error:
                    log(f"pod {self.namespace}/{self.pod_name}: runner error\n{traceback.format_exc()}")
                self._config_failed("RunContainerError", f"pod runner error: {type(e).__name__}: {e}", retry_in=5.0)

    def _config_failed(self, reason: str, message: str, *, retry_in: float) -> None:
        if message != self.config_error:
            log(f"pod {self.namespace}/{self.pod_name}: waiting: {message}")
        self.config_error = message
        for container in self.init_containers + self.containers:
            container.waiting = (reason, message)
        self._report()
        self._wait(retry_in)

    def _configure(self, container: ContainerRun, pod: dict, volumes: dict[str, Path]) -> None:
        mounts = pod_volumes.mounts(container.spec, volumes)
        base = self.runner.base_env(self.pod_name)
        sa_mount = next((m for m in mounts if m.container_path == pod_volumes.SERVICE_ACCOUNT_MOUNT), None)
        if sa_mount is not None:
            base["KUBECONFIG"] = str(self._pod_kubeconfig(sa_mount.host_path))
        env = self.runner.env_resolver.resolve(pod, container.spec, base)
        # Only the pod's own values point into its mounts; the runner's (PATH, KUBECONFIG, ...) are host paths
        # already, and rewriting them would break a pod that mounts e.g. /tmp.
        env = {k: v if base.get(k) == v else pod_volumes.rewrite(v, mounts) for k, v in env.items()}
        argv = [expand(a, env) for a in (container.spec.get("command") or []) + (container.spec.get("args") or [])]
        container.argv = [pod_volumes.rewrite(a, mounts) for a in argv]
        container.env = env
        working_dir = container.spec.get("workingDir")
        container.cwd = pod_volumes.rewrite(working_dir, mounts) if working_dir else str(self.dir)
        if working_dir and container.cwd == working_dir and not Path(working_dir).is_dir():
            container.cwd = str(self.dir)  # an image's folder that doesn't exist here

    def _pod_kubeconfig(self, sa_dir: Path) -> Path:
        token = (sa_dir / "token").read_text()
        return kubeconfig_files.write(self.dir / "kubeconfig", server=self.runner.rest.server,
                                      ca_cert=sa_dir / "ca.crt", token=token,
                                      user=f"system:serviceaccount:{self.namespace}")

    def _pod_with_ips(self) -> dict:
        pod = dict(self.pod)
        pod["status"] = {**(pod.get("status") or {}), "podIP": self.ip, "podIPs": [{"ip": self.ip}],
                         "hostIP": self.node.node_ip, "hostIPs": [{"ip": self.node.node_ip}]}
        return pod

    def _run_to_completion(self, container: ContainerRun) -> bool:
        """An init container: run until it exits 0 (retrying per restartPolicy); False if the pod ends."""
        while True:
            container.start(self.dir / f"{container.name}.log")
            self._report()
            while container.running or container.waiting and container.waiting[0] == "ContainerCreating":
                if self._should_exit():
                    self._end()
                    return False
                self._wait(0.1)
            container.reap()
            if container.terminated and container.terminated["exitCode"] == 0:
                return True
            if self.policy == "Never":
                self.terminal_phase = "Failed"
                self._report()
                self._wait_until(self._should_exit)
                self._end()
                return False
            self._schedule_restart(container)
            self._wait_until(lambda: time.monotonic() >= container.next_start or self._should_exit())
            if self._should_exit():
                self._end()
                return False
            container.restart_count += 1

    def _supervise(self) -> None:
        while True:
            if self._should_exit():
                self._end()
                return
            now = time.monotonic()
            for container in self.containers:
                if container.reap():
                    self._after_exit(container)
                if container.popen is None and container.waiting and container.waiting[0] in (
                        "CrashLoopBackOff", "RunContainerError") and now >= container.next_start \
                        and self._restarts(container):
                    container.restart_count += 1 if container.started_at else 0
                    container.start(self.dir / f"{container.name}.log")
                    if container.popen is None:
                        self._schedule_restart(container)
                probe = container.readiness
                if container.running and probe and probe.due(now):
                    ok = probes.run(probe.probe, pod_ip=self.ip, container=container.spec, env=container.env,
                                    cwd=container.cwd)
                    probe.record(ok, time.monotonic())
            if all(c.popen is None and c.terminated and not self._restarts(c) for c in self.containers):
                failed = any(c.terminated["exitCode"] != 0 for c in self.containers)
                self.terminal_phase = "Failed" if failed else "Succeeded"
            self._report()
            self._wait(self._next_wake())

    def _after_exit(self, container: ContainerRun) -> None:
        container.last_state = {"terminated": container.terminated}
        if self._restarts(container):
            self._schedule_restart(container)
        log(f"pod {self.namespace}/{self.pod_name}: container {container.name} exited "
            f"{container.terminated['exitCode']}")

    def _restarts(self, container: ContainerRun) -> bool:
        if container.terminated is None:
            return container.waiting is not None and container.waiting[0] == "RunContainerError"
        return self.policy == "Always" or (self.policy == "OnFailure" and container.terminated["exitCode"] != 0)

    def _schedule_restart(self, container: ContainerRun) -> None:
        container.next_start = time.monotonic() + container.backoff
        reason, message = container.waiting or ("", "")
        if reason != "RunContainerError":
            container.waiting = ("CrashLoopBackOff",
                                 f"back-off {container.backoff:.0f}s restarting failed container={container.name}")
        container.backoff = min(container.backoff * 2, BACKOFF_MAX)

    def _next_wake(self) -> float:
        now, soonest = time.monotonic(), 0.25
        for container in self.containers:
            if container.readiness and container.running:
                soonest = min(soonest, max(container.readiness.next_at - now, 0.01))
            if container.popen is None and container.next_start > now:
                soonest = min(soonest, container.next_start - now)
        return soonest

    # --- the end --------------------------------------------------------------------------------------

    def _should_exit(self) -> bool:
        return self.gone or self.deleting or self.runner.stopping.is_set()

    def _end(self) -> None:
        if self.runner.stopping.is_set():
            self._stop_processes(grace=2)  # the world is stopping: quick, and no API writes
        elif self.gone:
            self._stop_processes(grace=0)  # force-deleted: nothing to wait for (kubelet kills too)
        else:
            self._finish_deletion()

    def _finish_deletion(self) -> None:
        meta = self.pod["metadata"]
        grace = float(meta.get("deletionGracePeriodSeconds", 30))
        for container in self.containers:
            if container.readiness:
                container.readiness.ok = False
        self._report(force_not_ready=True)
        deadline = time.monotonic() + grace
        self._run_pre_stop_hooks(deadline)
        self._stop_processes(grace=max(deadline - time.monotonic(), 0))
        try:
            self.runner.rest.delete("Pod", self.pod_name, self.namespace, propagation=None, grace_period_seconds=0,
                                    preconditions={"uid": self.uid})
        except KubeApiError as e:
            if e.status != 409:  # 409: a new pod of the same name already exists; ours is gone
                raise
        log(f"pod {self.namespace}/{self.pod_name}: deleted")

    def _run_pre_stop_hooks(self, deadline: float) -> None:
        for container in self.containers:
            hook = ((container.spec.get("lifecycle") or {}).get("preStop") or {}).get("exec")
            if hook and container.running:
                try:
                    subprocess.run(hook["command"], env=container.env, cwd=container.cwd,
                                   timeout=max(deadline - time.monotonic(), 0.1),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                except (OSError, subprocess.TimeoutExpired):
                    pass

    def _stop_processes(self, *, grace: float) -> None:
        """SIGTERM every container's group, wait up to ``grace`` (shortened if the pod's is), then SIGKILL."""
        running = [c for c in self.init_containers + self.containers if c.running]
        for container in running:
            container.kill_group(signal.SIGTERM)
        deadline = time.monotonic() + grace
        seen_grace = self.pod["metadata"].get("deletionGracePeriodSeconds")
        while any(c.running for c in running) and time.monotonic() < deadline:
            time.sleep(0.05)
            current = self.pod["metadata"].get("deletionGracePeriodSeconds")
            if current is not None and current != seen_grace:
                # A second delete may shorten the grace period (kubectl delete --grace-period=1).
                deadline, seen_grace = min(deadline, time.monotonic() + float(current)), current
        for container in running:
            if container.running:
                container.kill_group(signal.SIGKILL)
                container.popen.wait()
            container.reap()

    # --- status ---------------------------------------------------------------------------------------

    def _condition(self, kind: str, ok: bool) -> dict:
        value = "True" if ok else "False"
        previous = self.conditions.get(kind)
        if previous is None or previous[0] != value:
            self.conditions[kind] = (value, now_rfc3339())
        return {"type": kind, "status": value, "lastTransitionTime": self.conditions[kind][1]}

    def _phase(self) -> str:
        if self.terminal_phase:
            return self.terminal_phase
        started = all(c.started_at for c in self.containers)
        return "Running" if started else "Pending"

    def _report(self, *, force_not_ready: bool = False) -> None:
        """Patch pods/status when it differs from what was last sent."""
        initialized = all(c.terminated and c.terminated["exitCode"] == 0 for c in self.init_containers)
        ready = not force_not_ready and bool(self.containers) and all(c.ready for c in self.containers) \
            and self.terminal_phase is None
        gates = [g["conditionType"] for g in self.pod["spec"].get("readinessGates") or []]
        current = {c["type"]: c["status"] for c in (self.pod.get("status") or {}).get("conditions") or []}
        pod_ready = ready and all(current.get(g) == "True" for g in gates)
        status = {
            "phase": self._phase(),
            "hostIP": self.node.node_ip, "hostIPs": [{"ip": self.node.node_ip}],
            "podIP": self.ip, "podIPs": [{"ip": self.ip}],
            "startTime": self.started_at,
            "conditions": [self._condition("PodReadyToStartContainers", True),
                           self._condition("Initialized", initialized),
                           self._condition("ContainersReady", ready),
                           self._condition("Ready", pod_ready)],
            "containerStatuses": [c.status() for c in self.containers],
        }
        if self.init_containers:
            status["initContainerStatuses"] = [c.status() for c in self.init_containers]
        if status == self.sent_status:
            return
        try:
            self.runner.rest.patch("Pod", self.pod_name, {"metadata": {"uid": self.uid}, "status": status},
                                   self.namespace, patch_type="strategic", subresource="status")
        except NotFound:
            self.gone = True
            return
        except KubeApiError as e:
            if e.status == 409 or (e.status == 422 and "metadata.uid" in str(e)):
                self.gone = True  # the uid precondition failed: our pod was replaced by a namesake
                return
            log(f"pod {self.namespace}/{self.pod_name}: status patch failed: {e}")
            return
        self.sent_status = status
        if pod_ready and not self.reported_ready:
            self.reported_ready = True
            log(f"pod {self.namespace}/{self.pod_name}: Ready {time.monotonic() - self.first_seen:.2f} s "
                f"after first sight")

    # --- waiting --------------------------------------------------------------------------------------

    def _wait(self, seconds: float) -> None:
        self.wake.wait(seconds)
        self.wake.clear()

    def _wait_until(self, predicate) -> None:
        while not predicate():
            self._wait(0.25)


class PodRunner:
    def __init__(self, rest: BlockingKubeClient, state_dir: Path, node_selector: str):
        self.rest = rest
        self.state_dir = state_dir
        self.pods_dir = state_dir / "pods"
        self.node_selector = node_selector
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.pods: dict[str, PodLifecycle] = {}
        self.nodes: list[RunnerNode] = []
        self.listed: set[str] = set()
        self.venv_bin = str(Path(sys.executable).parent)
        self.env_resolver = EnvResolver(self._config_map_data, self._secret_text)
        self.volume_sources = pod_volumes.VolumeSources(self._config_map_data, self._secret_bytes,
                                                        self._request_token)

    # --- API reads for env and volumes ------------------------------------------------------------------

    def _config_map_data(self, namespace: str, name: str) -> dict[str, str]:
        import base64

        cm = self.rest.get("ConfigMap", name, namespace)
        data = dict(cm.get("data") or {})
        for key, value in (cm.get("binaryData") or {}).items():
            data[key] = base64.b64decode(value)
        return data

    def _secret_bytes(self, namespace: str, name: str) -> dict[str, bytes]:
        import base64

        secret = self.rest.get("Secret", name, namespace)
        return {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}

    def _secret_text(self, namespace: str, name: str) -> dict[str, str]:
        return {k: v.decode(errors="replace") for k, v in self._secret_bytes(namespace, name).items()}

    def _request_token(self, pod: dict, audience: str | None, expiration: int) -> str:
        meta = pod["metadata"]
        account = pod["spec"].get("serviceAccountName") or "default"
        spec = {"expirationSeconds": expiration,
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]}}
        if audience:
            spec["audiences"] = [audience]
        try:
            answer = self.rest.request(
                "POST", resource_path("ServiceAccount", meta["namespace"], account, "token"),
                body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec})
        except NotFound:
            raise ConfigError(f'serviceaccount "{account}" not found') from None
        return answer["status"]["token"]

    def base_env(self, pod_name: str) -> dict[str, str]:
        return {
            "PATH": f"{self.venv_bin}:{os.environ.get('PATH', '/usr/local/bin:/usr/bin:/bin')}",
            "HOME": os.environ.get("HOME", "/tmp"),
            "HOSTNAME": pod_name,
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            MARKER_ENV: os.environ.get(MARKER_ENV, ""),
        }

    # --- pods -----------------------------------------------------------------------------------------

    def allocate_ip(self, node: RunnerNode, uid: str, wanted: str | None) -> str:
        with self.lock:
            return node.allocate(uid, wanted)

    def release_ip(self, node: RunnerNode, ip: str, uid: str) -> None:
        with self.lock:
            node.release(ip, uid)

    def forget(self, uid: str) -> None:
        with self.lock:
            self.pods.pop(uid, None)

    def on_pod(self, node: RunnerNode, pod: dict, deleted: bool) -> None:
        uid = pod["metadata"]["uid"]
        with self.lock:
            lifecycle = self.pods.get(uid)
            if deleted:
                if lifecycle:
                    lifecycle.vanish()
                return
            if lifecycle:
                lifecycle.update(pod)
                return
            if self.stopping.is_set():
                return
            lifecycle = PodLifecycle(self, pod, node)
            self.pods[uid] = lifecycle
        lifecycle.start()

    def _sync(self, node: RunnerNode, items: list[dict]) -> None:
        present = {p["metadata"]["uid"] for p in items}
        with self.lock:
            vanished = [lc for uid, lc in self.pods.items() if lc.node is node and uid not in present]
        for lifecycle in vanished:
            lifecycle.vanish()
        for pod in items:
            self.on_pod(node, pod, deleted=False)

    def _watch_node(self, node: RunnerNode) -> None:
        selector = f"spec.nodeName={node.name}"
        while not self.stopping.is_set():
            try:
                listing = self.rest.list("Pod", field_selector=selector)
                version = listing["metadata"]["resourceVersion"]
                self._sync(node, listing["items"])
                self._listed(node)
                while not self.stopping.is_set():
                    for event in self.rest.watch("Pod", resource_version=version, field_selector=selector,
                                                 timeout_seconds=300):
                        pod = event.object
                        version = pod["metadata"]["resourceVersion"]
                        if event.type != "BOOKMARK":
                            self.on_pod(node, pod, deleted=event.type == "DELETED")
            except Gone:
                continue  # too old: list again
            except Exception as e:  # noqa: BLE001 - keep watching through apiserver hiccups
                if self.stopping.is_set():
                    return
                log(f"node {node.name}: watch error, relisting in 1 s: {e}")
                time.sleep(1)

    def _listed(self, node: RunnerNode) -> None:
        with self.lock:
            self.listed.add(node.name)
            done = len(self.listed) == len(self.nodes)
        if done:
            (self.state_dir / READY_FILE).write_text(str(os.getpid()))

    def load_nodes(self) -> None:
        listing = self.rest.list("Node", label_selector=self.node_selector)
        for item in listing["items"]:
            cidr = item["spec"].get("podCIDR")
            if not cidr:
                raise SystemExit(f"node {item['metadata']['name']} has no spec.podCIDR; the pod runner needs one")
            addresses = {a["type"]: a["address"] for a in item.get("status", {}).get("addresses") or []}
            node_ip = addresses.get("InternalIP") or str(ipaddress.ip_network(cidr)[-2])
            self.nodes.append(RunnerNode(item["metadata"]["name"], cidr, node_ip))
        if not self.nodes:
            raise SystemExit(f"no nodes match {self.node_selector!r}: nothing to run")

    def run(self) -> None:
        self.load_nodes()
        log(f"pod runner for {', '.join(n.name for n in self.nodes)}")
        for node in self.nodes:
            threading.Thread(target=self._watch_node, args=(node,), name=f"watch-{node.name}", daemon=True).start()
        self.stopping.wait()
        log("stopping: ending every container")
        with self.lock:
            lifecycles = list(self.pods.values())
        for lifecycle in lifecycles:
            lifecycle.wake.set()
        for lifecycle in lifecycles:
            lifecycle.join(timeout=5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m voxfleet.world.pod_runner", description=__doc__.split("\n")[0])
    parser.add_argument("--kubeconfig", required=True, type=Path)
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--node-selector", default="voxfleet.dev/node-kind=runner",
                        help="label selector of the nodes this runner plays kubelet for")
    args = parser.parse_args(argv)
    runner = PodRunner(BlockingKubeClient.from_kubeconfig(args.kubeconfig), args.state_dir, args.node_selector)
    signal.signal(signal.SIGTERM, lambda *_: runner.stopping.set())
    signal.signal(signal.SIGINT, lambda *_: runner.stopping.set())
    runner.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The whole platform on 127.0.0.1, started in order and stopped without leaving anything behind.

Steps: the test world (control plane, kwok nodes in three regions, the pod runner, a livekit-server per voice
region) -> the CRDs -> the platform namespace and worker token -> the demo tool server -> the operator -> the
gateway (which serves the playground) -> the example Tenants and VoiceAgents -> a tenant API key -> wait for
warm workers. Every process it starts carries the world's environment marker (VOXFLEET_WORLD=<id>), so stopping
sweeps up anything a process left (a worker's child, a server whose parent died), as the world itself does.

A component that is not in this build yet (the operator, gateway or `voxfleet keys`) is reported with a
"not yet available" line and the steps that need it are skipped; the rest still runs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from voxfleet.api.voiceagent import GROUP, PLURAL
from voxfleet.cli import command_name
from voxfleet.devplatform import component_env, demo_tools, provider_keys, quota_readiness
from voxfleet.devplatform.component_env import PLATFORM_NAMESPACE, DevSecrets
from voxfleet.devplatform.dev_state import DevState
from voxfleet.kube.blocking import BlockingKubeClient
from voxfleet.kube.credentials import CredentialsError
from voxfleet.kube.errors import KubeApiError
from voxfleet.world import binaries, processes
from voxfleet.world.processes import Server, ServerFailed
from voxfleet.world.world import World, WorldInfo

OFFLINE_TENANT = "demo"
OFFLINE_EXAMPLE = "offline-demo.yaml"
TENANTS_EXAMPLE = "tenants.yaml"
DEMO_TOOL_URL = f"http://127.0.0.1:{demo_tools.DEFAULT_PORT}"
FIELD_MANAGER = "voxfleet-dev"
PLAYGROUND_PATH = "/playground/"
VOICEAGENT_QUOTA_RESOURCE = f"count/{PLURAL}.{GROUP}"
TENANT_READY_S = 90.0  # the operator creates a tenant's namespace and quota before its agents can be applied

Progress = Callable[[str], None]


class DevFailed(RuntimeError):
    """A step could not complete; the message says which and where its log is."""


@dataclass
class DevOptions:
    dev_dir: Path
    repo: Path
    gateway_port: int = 8000
    tool_port: int = demo_tools.DEFAULT_PORT
    env_file: Path | None = None
    workers_timeout: float = 300.0


def available(module: str) -> bool:
    """Whether a component's entry point is in this build (components land one by one)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def find_repo(start: Path | None = None) -> Path:
    """The checkout holding crds/ and examples/: the working directory's, else the one this package lives in."""
    for candidate in ([start] if start else []) + [Path.cwd(), Path(__file__).resolve().parents[1]]:
        if (candidate / "crds").is_dir() and (candidate / "examples").is_dir():
            return candidate.resolve()
    raise DevFailed("cannot find the voxfleet checkout (a folder with crds/ and examples/): run voxfleet dev from it")


@dataclass
class LocalPlatform:
    options: DevOptions
    progress: Progress
    world: World | None = None
    info: WorldInfo | None = None
    state: DevState | None = None
    servers: list[Server] = field(default_factory=list)
    summary: dict[str, str] = field(default_factory=dict)  # what to print when ready
    notes: list[str] = field(default_factory=list)  # "not yet available" and skipped-example lines

    # --- start -----------------------------------------------------------------------------------------------

    def start(self) -> DevState:
        """Run every step; on failure raise DevFailed/ServerFailed (call stop() to end what started)."""
        dev_dir = self.options.dev_dir
        dev_dir.mkdir(parents=True, exist_ok=True)
        self.world = World(dev_dir / "world")
        self._step("the test world: Kubernetes control plane, kwok nodes in 3 regions, pod runner, LiveKit")
        self.info = self.world.start(progress=lambda m: self.progress(f"  world: {m}"))
        self.state = DevState(dev_dir=str(dev_dir), world_dir=str(self.world.state_dir), world_id=self.info.world_id,
                              supervisor_pid=os.getpid(), kubeconfig=self.info.kubeconfig, started_at=time.time())
        self.state.save()
        secrets_ = DevSecrets.generate()

        self._step("CRDs (crds/)")
        self._kubectl("apply", "--server-side", "--force-conflicts", f"--field-manager={FIELD_MANAGER}",
                      "-f", str(self.options.repo / "crds"))
        self._kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(self.options.repo / "crds"))

        self._step(f"platform namespace {PLATFORM_NAMESPACE} and the worker token Secret")
        self._apply_documents([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": PLATFORM_NAMESPACE}},
                               component_env.worker_token_secret(secrets_)])

        self._step(f"demo tool server on 127.0.0.1:{self.options.tool_port} (the offline agent's lookup_order)")
        self._start_tool_server()

        operator_ok = self._start_operator(secrets_)
        gateway_ok = self._start_gateway(secrets_)

        self._wait_for_quota_controller()
        self._step(f"tenants ({TENANTS_EXAMPLE}) and the offline demo agent ({OFFLINE_EXAMPLE})")
        examples = self.options.repo / "examples"
        self._apply_documents([d for d in yaml.safe_load_all((examples / TENANTS_EXAMPLE).read_text()) if d])
        offline = self._offline_example(examples / OFFLINE_EXAMPLE)
        self._apply_documents(offline, retry_s=TENANT_READY_S)
        agents = [(d["metadata"]["namespace"], d["metadata"]["name"]) for d in offline if d["kind"] == "VoiceAgent"]
        tenants = {OFFLINE_TENANT}
        tenants.update(self._cloud_examples(examples, agents))
        self.state.agents = [f"{ns}/{name}" for ns, name in agents]
        self.state.tenant = OFFLINE_TENANT
        self.state.save()

        keys = self._create_keys(sorted(tenants)) if gateway_ok else {}
        if gateway_ok and keys.get(OFFLINE_TENANT):
            self._wait_for_key(keys[OFFLINE_TENANT])
        if operator_ok:
            self._wait_for_workers(agents)
        else:
            self.notes.append("no warm workers: the operator is not in this build yet")
        self._summarise(keys, agents)
        self.state.phase = "ready"
        self.state.save()
        return self.state

    def _wait_for_quota_controller(self) -> None:
        assert self.info is not None
        self._step("waiting until the quota controller counts VoiceAgents (about 30 s after a fresh start)")
        kube = BlockingKubeClient.from_kubeconfig(self.info.kubeconfig, timeout=10)
        try:
            def check() -> None:
                for server in self.servers:
                    server.check()

            seconds = quota_readiness.wait_until_counted(kube, PLATFORM_NAMESPACE, VOICEAGENT_QUOTA_RESOURCE,
                                                         check=check)
        except TimeoutError as error:
            raise DevFailed(str(error)) from None
        finally:
            kube.close()
        self.progress(f"  counted after {seconds:.0f} s")

    def _step(self, text: str) -> None:
        self.progress(f"==> {text}")

    def _start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Server:
        assert self.info is not None and self.state is not None
        server = processes.start(name, argv, log_dir=self.options.dev_dir / "logs", world_id=self.info.world_id,
                                 env={**os.environ, **(env or {})}, cwd=self.options.repo)
        self.servers.append(server)
        self.state.pids[name] = server.pid
        self.state.logs[name] = str(server.log)
        self.state.save()
        return server

    def _start_tool_server(self) -> None:
        port = self.options.tool_port
        server = self._start("demo-tools", [sys.executable, "-m", "voxfleet.devplatform.demo_tools",
                                            "--host", "127.0.0.1", "--port", str(port)])
        url = f"http://127.0.0.1:{port}"
        processes.wait_until(f"demo tool server on {url}", lambda: _http_ok(f"{url}/healthz"), timeout=30,
                             servers=[server])
        assert self.state is not None
        self.state.tool_server_url = url

    def _start_operator(self, secrets_: DevSecrets) -> bool:
        if not available("voxfleet.operator.main"):
            self._not_yet("operator", "VoiceAgents will get no worker pools")
            return False
        assert self.info is not None
        port = processes.free_port()
        self._step(f"operator (health on 127.0.0.1:{port}; workers placed on the runner nodes)")
        server = self._start("operator", [sys.executable, "-m", "voxfleet.cli", "operator"],
                             component_env.operator_env(self.info, secrets_, http_port=port))
        processes.wait_until("operator /readyz", lambda: _http_ok(f"http://127.0.0.1:{port}/readyz"),
                             timeout=90, servers=[server], interval=0.2)
        return True

    def _start_gateway(self, secrets_: DevSecrets) -> bool:
        if not available("voxfleet.gateway.main"):
            self._not_yet("gateway", "no sessions API, no playground")
            return False
        assert self.info is not None and self.state is not None
        port = self.options.gateway_port or processes.free_port()
        if not _port_free(port):
            raise DevFailed(f"port {port} on 127.0.0.1 is in use; stop what uses it or pass --gateway-port")
        url = f"http://127.0.0.1:{port}"
        operational_port = processes.free_port(other_than=(port,))
        database_url = self._prepare_database()
        self._step(f"gateway on {url} (LiveKit regions: {', '.join(r['region'] for r in self.info.livekit)};"
                   f" /metrics on 127.0.0.1:{operational_port})")
        server = self._start("gateway", [sys.executable, "-m", "voxfleet.cli", "gateway"],
                             component_env.gateway_env(self.info, secrets_, port=port,
                                                       operational_port=operational_port,
                                                       database_url=database_url))
        processes.wait_until("gateway /readyz", lambda: _http_ok(f"{url}/readyz"), timeout=90, servers=[server],
                             interval=0.2)
        self.state.gateway_url = url
        if _http_ok(f"{url}{PLAYGROUND_PATH}"):
            self.state.playground_url = f"{url}{PLAYGROUND_PATH}"
        else:
            self.notes.append(f"the gateway does not serve the playground at {PLAYGROUND_PATH} (is the bundle built? "
                              f"`make playground`)")
        self.state.save()
        return True

    def _prepare_database(self) -> str | None:
        """The store: database `voxfleet` on the world's PostgreSQL, migrated (the gateway never migrates at start;
        in a cluster the chart's Job does it). None for a world from before worlds had PostgreSQL."""
        assert self.info is not None
        admin_url = self.info.postgres_admin_url
        if admin_url is None:
            self.notes.append("the world has no PostgreSQL: no call history, webhooks or usage (restart voxfleet dev)")
            return None
        from voxfleet.store import migrations_runner
        from voxfleet.world import postgres

        self._step(f"the store: database {component_env.DATABASE_NAME} on the world's PostgreSQL"
                   f" (127.0.0.1:{self.info.postgres['port']}), migrations applied")
        url = postgres.ensure_database(admin_url, component_env.DATABASE_NAME)
        migrations_runner.upgrade(url)
        return url

    def _not_yet(self, component: str, consequence: str) -> None:
        line = f"{component}: not yet available in this build ({consequence})"
        self.progress(f"==> {line}")
        self.notes.append(line)

    def _offline_example(self, path: Path) -> list[dict]:
        """The offline example, its tool URL moved to the tool server's port when that is not the default."""
        documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
        if self.options.tool_port != demo_tools.DEFAULT_PORT:
            moved = f"http://127.0.0.1:{self.options.tool_port}"
            for document in documents:
                for tool in (document.get("spec") or {}).get("tools") or []:
                    url = (tool.get("http") or {}).get("url", "")
                    if url.startswith(DEMO_TOOL_URL):
                        tool["http"]["url"] = moved + url[len(DEMO_TOOL_URL):]
        return documents

    def _cloud_examples(self, examples: Path, agents: list[tuple[str, str]]) -> set[str]:
        """Apply the cloud examples `.env` has keys for; returns their tenants (they get API keys too)."""
        env_file = self.options.env_file or (self.options.repo / ".env")
        env = provider_keys.read_env_file(env_file)
        if not any(env.get(name) for name in provider_keys.PROVIDER_ENV.values()):
            return set()
        self._step(f"cloud examples with the provider keys in {env_file}")
        runnable, skipped = provider_keys.cloud_examples(examples, env)
        for line in skipped:
            self.progress(f"  skipped {line}")
        namespaces = _tenant_namespaces(examples / TENANTS_EXAMPLE)
        tenants = set()
        for example in runnable:
            self.progress(f"  {example.name}: {', '.join(name for _, name in example.agents)}")
            self._apply_documents(example.documents, quiet=True, retry_s=TENANT_READY_S)
            agents.extend(example.agents)
            tenants.update(namespaces[ns] for ns, _ in example.agents if ns in namespaces)
        return tenants

    def _create_keys(self, tenants: list[str]) -> dict[str, str]:
        if not available("voxfleet.gateway.keys_cli"):
            self._not_yet("voxfleet keys", "no tenant API key")
            return {}
        assert self.info is not None and self.state is not None
        self._step(f"tenant API key{'s' if len(tenants) > 1 else ''} for {', '.join(tenants)}")
        keys = {}
        for tenant in tenants:
            result = subprocess.run(
                [sys.executable, "-m", "voxfleet.cli", "keys", "--kubeconfig", self.info.kubeconfig,
                 "--namespace", PLATFORM_NAMESPACE, "create", "--tenant", tenant, "--description", "voxfleet dev"],
                capture_output=True, text=True, timeout=60, env={**os.environ, processes.MARKER_ENV: self.info.world_id})
            if result.returncode != 0:
                raise DevFailed(f"voxfleet keys create --tenant {tenant} failed: {result.stderr.strip()[-600:]}")
            keys[tenant] = result.stdout.strip().splitlines()[-1]
        if OFFLINE_TENANT in keys:
            self.state.save_api_key(keys[OFFLINE_TENANT])
        return keys

    def _wait_for_key(self, key: str) -> None:
        """The gateway learns new keys from a watch: wait until it takes this one."""
        assert self.state is not None
        url = f"{self.state.gateway_url}/v1/agents"
        processes.wait_until("the gateway to accept the new API key",
                             lambda: httpx.get(url, headers={"Authorization": f"Bearer {key}"}, timeout=5)
                             .status_code == 200, timeout=30, servers=self.servers, interval=0.2)

    def _wait_for_workers(self, agents: list[tuple[str, str]]) -> None:
        assert self.info is not None
        self._step(f"waiting for warm workers of {', '.join(name for _, name in agents)} (first start loads models)")
        kube = BlockingKubeClient.from_kubeconfig(self.info.kubeconfig, timeout=10)
        last_line = ""
        deadline = time.monotonic() + self.options.workers_timeout
        try:
            while True:
                for server in self.servers:
                    server.check()
                figures = {f"{ns}/{name}": _ready_by_region(kube, ns, name) for ns, name in agents}
                line = "; ".join(f"{agent}: " + ", ".join(f"{region} {ready}/{wanted}" for region, (ready, wanted)
                                                          in regions.items())
                                 for agent, regions in figures.items())
                if line != last_line:
                    self.progress(f"  ready workers: {line}")
                    last_line = line
                if all(regions and all(ready >= 1 for ready, _ in regions.values()) for regions in figures.values()):
                    return
                if time.monotonic() > deadline:
                    self.notes.append(f"workers were not ready within {self.options.workers_timeout:.0f} s: see "
                                      f"`{command_name()} dev status` and the pod logs in {self.info.pods_dir}")
                    return
                time.sleep(1.0)
        finally:
            kube.close()

    def _summarise(self, keys: dict[str, str], agents: list[tuple[str, str]]) -> None:
        assert self.info is not None and self.state is not None
        self.summary = {"kubeconfig": self.info.kubeconfig}
        if self.state.gateway_url:
            self.summary["gateway"] = self.state.gateway_url
        for tenant, key in keys.items():
            self.summary[f"API key (tenant {tenant})"] = key
        if self.state.playground_url and keys.get(OFFLINE_TENANT):
            self.summary["playground"] = f"{self.state.playground_url}#key={keys[OFFLINE_TENANT]}"
        if agents:
            self.summary["agents"] = ", ".join(f"{name} ({ns})" for ns, name in agents)

    # --- applying --------------------------------------------------------------------------------------------

    def _kubectl(self, *args: str, stdin: str | None = None) -> str:
        assert self.info is not None
        kubectl = [str(binaries.find("kubectl").path), "--kubeconfig", self.info.kubeconfig]
        result = subprocess.run(kubectl + list(args), input=stdin, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise DevFailed(f"kubectl {' '.join(args[:2])} failed: {result.stderr.strip()[-800:]}")
        return result.stdout

    def _apply_documents(self, documents: list[dict], *, quiet: bool = False, retry_s: float = 0.0) -> None:
        """Server-side apply (idempotent). ``quiet``: the documents hold secrets, so kubectl's output is dropped.
        ``retry_s``: keep trying that long (a tenant's namespace and quota appear only after the operator acts)."""
        text = yaml.safe_dump_all(documents, sort_keys=False)
        deadline = time.monotonic() + retry_s
        while True:
            try:
                output = self._kubectl("apply", "--server-side", "--force-conflicts",
                                       f"--field-manager={FIELD_MANAGER}", "-f", "-", stdin=text)
                break
            except DevFailed:
                if time.monotonic() > deadline:
                    raise
                for server in self.servers:
                    server.check()
                time.sleep(0.5)
        if not quiet:
            for line in output.splitlines():
                self.progress(f"  {line}")

    # --- watching and stopping -------------------------------------------------------------------------------

    def dead_processes(self) -> list[str]:
        """Names of started processes that have exited (the world's servers included)."""
        dead = [s.name for s in self.servers if not s.alive()]
        if self.world is not None and self.info is not None:
            dead += [name for name, pid in self.info.pids.items() if not processes.pid_alive(pid)]
        return dead

    def stop(self) -> float:
        """Stop every process this run started: our components, then the world (pod runner and its workers,
        servers), then anything still carrying the run's marker. Returns the seconds it took."""
        started = time.monotonic()
        if self.state is not None:
            self.state.phase = "stopping"
            self.state.save()
        if self.servers:
            processes.stop_groups([s.pid for s in self.servers], timeout=10)
            self.progress(f"  stopped {', '.join(s.name for s in self.servers)} "
                          f"({time.monotonic() - started:.1f} s)")
        self.servers = []
        if self.world is not None:
            seconds = self.world.stop()
            self.progress(f"  stopped the world: workers, pod runner, LiveKit, Kubernetes ({seconds:.1f} s)")
        if self.info is not None:
            processes.kill_marked(self.info.world_id)
        if self.state is not None:
            self.state.forget()
        return time.monotonic() - started


def stop_leftovers(state: DevState) -> float:
    """End what a `voxfleet dev` that died without cleaning up left running (its recorded pids, its world, and
    every process with its marker)."""
    started = time.monotonic()
    processes.stop_groups([pid for pid in state.pids.values() if processes.pid_alive(pid)], timeout=10)
    try:
        World.attach(Path(state.world_dir)).stop()
    except FileNotFoundError:
        pass
    processes.kill_marked(state.world_id)
    state.forget()
    return time.monotonic() - started


def _ready_by_region(kube: BlockingKubeClient, namespace: str, name: str) -> dict[str, tuple[int, int]]:
    """Region -> (ready workers, minWorkers) from the VoiceAgent's spec and the operator's status."""
    try:
        agent = kube.get("VoiceAgent", name, namespace)
    except KubeApiError:  # not there (yet), or the apiserver is busy: nothing ready to show
        return {}
    status = {r.get("name"): int(r.get("readyWorkers") or 0) for r in (agent.get("status") or {}).get("regions") or []}
    return {r["name"]: (status.get(r["name"], 0), int(r.get("minWorkers", 1)))
            for r in (agent.get("spec") or {}).get("regions") or []}


def _tenant_namespaces(tenants_file: Path) -> dict[str, str]:
    """Namespace -> tenant name, as the operator derives it (spec.namespace, else tenant-<name>)."""
    result = {}
    for document in yaml.safe_load_all(tenants_file.read_text()):
        if document and document.get("kind") == "Tenant":
            name = document["metadata"]["name"]
            result[(document.get("spec") or {}).get("namespace") or f"tenant-{name}"] = name
    return result


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def describe(state: DevState) -> dict:
    """What `voxfleet dev status` shows: processes, world, gateway and agents."""
    alive = {name: processes.pid_alive(pid) for name, pid in state.pids.items()}
    world = World.attach(Path(state.world_dir)).status() if (Path(state.world_dir) / "world.json").exists() \
        else {"running": False}
    result = {"phase": state.phase, "supervisor": {"pid": state.supervisor_pid,
                                                   "alive": processes.pid_alive(state.supervisor_pid)},
              "processes": alive, "world": world, "gateway": state.gateway_url, "playground": state.playground_url,
              "kubeconfig": state.kubeconfig, "agents": {}}
    if state.gateway_url:
        result["gatewayReady"] = _http_ok(f"{state.gateway_url}/readyz")
    if world.get("running") and state.kubeconfig:
        try:
            kube = BlockingKubeClient.from_kubeconfig(state.kubeconfig, timeout=5)
            try:
                for entry in state.agents:
                    namespace, name = entry.split("/", 1)
                    result["agents"][entry] = {region: {"ready": ready, "minWorkers": wanted} for region, (ready, wanted)
                                               in _ready_by_region(kube, namespace, name).items()}
            finally:
                kube.close()
        except (KubeApiError, CredentialsError, OSError) as error:
            result["agentsError"] = str(error)
    result["running"] = result["supervisor"]["alive"] and all(alive.values()) and bool(world.get("running"))
    return result


def as_json(data: dict) -> str:
    return json.dumps(data, indent=2, sort_keys=False)

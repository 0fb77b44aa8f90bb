"""The test world: a real Kubernetes control plane with kwok nodes in three regions, a pod runner that runs the
voice pool's pods as real processes, two livekit-servers and a PostgreSQL server (the gateway's store), all on
127.0.0.1.

``World(state_dir).start()`` brings it up and writes ``<state_dir>/world.json`` (ports, URLs, pids, kubeconfig),
so any other process can ``World.attach(state_dir)``; ``stop()`` ends every process it started (by process
group, then by the environment marker sweep), so nothing is left behind.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from voxfleet.kube.backoff import NO_RETRY
from voxfleet.kube.blocking import BlockingKubeClient
from voxfleet.kube.errors import KubeApiError

from . import binaries, certs, control_plane, kwok, livekit, postgres, processes, topology
from .livekit import LiveKitRegion
from .postgres import PostgresInfo, PostgresServer
from .pod_runner import READY_FILE
from .processes import Server, ServerFailed

STATE_FILE = "world.json"
KEEP_ON_RESET = ("lock", "users", "start-failed")  # shared-world bookkeeping (shared.py) lives alongside
SERVERS = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "livekit-server"]


def default_state_dir() -> Path:
    if os.environ.get("VOXFLEET_WORLD_DIR"):
        return Path(os.environ["VOXFLEET_WORLD_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "voxfleet" / "world"


@dataclass
class WorldInfo:
    """What another process needs to use a running world; saved as world.json."""
    world_id: str
    state_dir: str
    kubeconfig: str
    apiserver_url: str
    livekit: list[dict]  # LiveKitRegion.as_dict() per region
    runner_nodes: dict[str, list[str]]  # region -> node names whose pods run as real processes
    simulated_nodes: dict[str, list[str]]  # region -> node names whose pods kwok fakes
    pods_dir: str  # <pods_dir>/<namespace>/<pod>/<container>.log
    pids: dict[str, int]  # server name -> pid (= its process group)
    logs_dir: str
    slot: int
    started_at: float = 0.0
    start_seconds: float = 0.0
    binaries: dict[str, str] = field(default_factory=dict)
    # PostgresInfo as a dict (admin user, password, port); None in a world.json written before worlds had one.
    postgres: dict | None = None

    @property
    def postgres_admin_url(self) -> str | None:
        """postgresql+asyncpg://voxfleet:<password>@127.0.0.1:<port>/postgres (holds the password: never print)."""
        return PostgresInfo(**self.postgres).admin_url if self.postgres else None

    def livekit_regions(self) -> dict[str, LiveKitRegion]:
        return {r["region"]: LiveKitRegion(**r) for r in self.livekit}

    @classmethod
    def load(cls, state_dir: Path) -> "WorldInfo":
        return cls(**json.loads((state_dir / STATE_FILE).read_text()))


class World:
    def __init__(self, state_dir: Path | None = None, *, simulated_per_zone: int = 2,
                 livekit_regions: tuple[str, ...] = livekit.REGIONS):
        self.state_dir = Path(state_dir or default_state_dir()).absolute()
        self.simulated_per_zone = simulated_per_zone
        self.livekit_regions = livekit_regions
        self.info: WorldInfo | None = None
        self.servers: list[Server] = []

    # --- attach / status ------------------------------------------------------------------------------

    @classmethod
    def attach(cls, state_dir: Path | None = None) -> "World":
        """A handle on a world started by another process (raises FileNotFoundError if none was started)."""
        world = cls(state_dir)
        world.info = WorldInfo.load(world.state_dir)
        return world

    def running(self) -> bool:
        try:
            info = self.info or WorldInfo.load(self.state_dir)
        except FileNotFoundError:
            return False
        return all(processes.pid_alive(pid) for pid in info.pids.values())

    def status(self) -> dict:
        """Which servers are alive, and what the apiserver says about nodes."""
        try:
            info = self.info or WorldInfo.load(self.state_dir)
        except FileNotFoundError:
            return {"running": False, "state_dir": str(self.state_dir)}
        alive = {name: processes.pid_alive(pid) for name, pid in info.pids.items()}
        result = {"running": all(alive.values()), "state_dir": info.state_dir, "kubeconfig": info.kubeconfig,
                  "apiserver": info.apiserver_url, "processes": alive,
                  "livekit": {r["region"]: r["url"] for r in info.livekit}}
        if alive.get("kube-apiserver"):
            try:
                with BlockingKubeClient.from_kubeconfig(Path(info.kubeconfig), timeout=5, backoff=NO_RETRY) as rest:
                    nodes = rest.list("Node")["items"]
                result["nodes_ready"] = sum(_node_ready(n) for n in nodes)
                result["nodes"] = len(nodes)
            except (KubeApiError, OSError) as e:
                result["apiserver_error"] = str(e)
        return result

    # --- start ----------------------------------------------------------------------------------------

    def start(self, progress: Callable[[str], None] = lambda _: None) -> WorldInfo:
        """Bring the whole world up (typically 4-8 s warm); on failure stop what started and raise ServerFailed
        carrying the failing server's log tail."""
        if self.running():
            raise ServerFailed(f"a world is already running in {self.state_dir}; stop it first (voxfleet cluster down)")
        t0 = time.monotonic()
        bins = binaries.find_all(SERVERS)
        self._reset_state_dir()
        world_id = uuid.uuid4().hex[:12]
        slot, slot_fd = _claim_slot()
        progress(f"state in {self.state_dir} (network slot {slot})")
        try:
            info = self._start(bins, world_id, slot, slot_fd, progress)
        except BaseException:
            self._stop_servers(world_id)
            raise
        finally:
            os.close(slot_fd)  # the pod runner keeps the slot's lock (inherited fd) as long as it lives
        info.start_seconds = round(time.monotonic() - t0, 2)
        self._save(info)
        progress(f"world up in {info.start_seconds:.1f} s")
        return info

    def _start(self, bins, world_id: str, slot: int, slot_fd: int, progress) -> WorldInfo:
        logs = self.state_dir / "logs"
        pki = certs.generate(self.state_dir / "pki")
        # livekit needs nothing from Kubernetes: let it boot while the control plane does.
        lk_regions, lk_servers = livekit.start(binary=bins["livekit-server"], state_dir=self.state_dir,
                                               world_id=world_id, regions=self.livekit_regions)
        self.servers += lk_servers
        # PostgreSQL neither: initdb and its start run in a thread beside the control plane's.
        database = PostgresServer(self.state_dir / "postgres", log_dir=logs, world_id=world_id)
        database_failure: list[BaseException] = []
        database_thread = threading.Thread(target=_start_catching, args=(database, database_failure),
                                           name="world-postgres")
        database_thread.start()
        progress("starting etcd and kube-apiserver")
        cp = control_plane.start(bins=bins, pki=pki, state_dir=self.state_dir, world_id=world_id)
        self.servers += cp.servers
        rest = BlockingKubeClient.from_kubeconfig(cp.admin_kubeconfig)
        try:
            progress(f"kube-apiserver ready at {cp.apiserver_url}; creating nodes, starting kwok and the pod runner")
            node_specs = topology.nodes(simulated_per_zone=self.simulated_per_zone, slot=slot)
            for spec in node_specs:
                rest.create(spec.manifest())
            kwok_kubeconfig = _identity_kubeconfig(self.state_dir, cp.apiserver_url, pki, "kwok")
            self.servers += kwok.start(kwok=bins["kwok"], kubeconfig=kwok_kubeconfig, state_dir=self.state_dir,
                                       world_id=world_id)
            runner_kubeconfig = _identity_kubeconfig(self.state_dir, cp.apiserver_url, pki, "pod-runner")
            runner = processes.start("pod-runner", [
                sys.executable, "-m", "voxfleet.world.pod_runner", f"--kubeconfig={runner_kubeconfig}",
                f"--state-dir={self.state_dir}", f"--node-selector={topology.NODE_KIND_LABEL}={topology.RUNNER}",
            ], log_dir=logs, world_id=world_id, pass_fds=(slot_fd,))
            self.servers.append(runner)

            processes.wait_until(f"{len(node_specs)} nodes Ready",
                                 lambda: sum(_node_ready(n) for n in rest.list("Node")["items"])
                                 == len(node_specs), timeout=30, servers=self.servers, interval=0.1)
            processes.wait_until("controller-manager: default ServiceAccount and kube-root-ca.crt",
                                 lambda: rest.get_or_none("ServiceAccount", "default", "default")
                                 and rest.get_or_none("ConfigMap", "kube-root-ca.crt", "default"),
                                 timeout=30, servers=self.servers, interval=0.1)
            processes.wait_until("pod runner watching its nodes", (self.state_dir / READY_FILE).exists,
                                 timeout=30, servers=self.servers)
            livekit.wait_ready(lk_regions, lk_servers)
        finally:
            rest.close()
            database_thread.join()
            if database.server is not None:
                self.servers.append(database.server)
        if database_failure:
            raise database_failure[0]
        progress(f"PostgreSQL ready on 127.0.0.1:{database.info.port}")

        def by_region(kind: str) -> dict[str, list[str]]:
            grouped: dict[str, list[str]] = {r: [] for r in topology.REGIONS}
            for spec in node_specs:
                if spec.kind == kind:
                    grouped[spec.region].append(spec.name)
            return grouped

        return WorldInfo(
            world_id=world_id, state_dir=str(self.state_dir), kubeconfig=str(cp.admin_kubeconfig),
            apiserver_url=cp.apiserver_url, livekit=[r.as_dict() for r in lk_regions],
            runner_nodes=by_region(topology.RUNNER), simulated_nodes=by_region(topology.SIMULATED),
            pods_dir=str(self.state_dir / "pods"), pids={s.name: s.pid for s in self.servers},
            logs_dir=str(logs), slot=slot, started_at=time.time(),
            binaries={name: str(b.path) for name, b in bins.items()}, postgres=asdict(database.info))

    def _reset_state_dir(self) -> None:
        # Only what a previous world left: never remove a folder that isn't one of ours.
        if self.state_dir.exists():
            children = [c for c in self.state_dir.iterdir() if c.name not in KEEP_ON_RESET]
            if children and not (self.state_dir / "logs").exists():
                raise ServerFailed(f"{self.state_dir} exists and is not a voxfleet world folder; "
                                   f"choose another --state-dir")
            for child in children:
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        self.state_dir.mkdir(parents=True, exist_ok=True)

    def _save(self, info: WorldInfo) -> None:
        self.info = info
        tmp = self.state_dir / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(info), indent=2))
        tmp.replace(self.state_dir / STATE_FILE)

    # --- stop -----------------------------------------------------------------------------------------

    def stop(self) -> float:
        """Stop every process of the world; returns the seconds it took. Logs stay in the state dir."""
        t0 = time.monotonic()
        try:
            info = self.info or WorldInfo.load(self.state_dir)
        except FileNotFoundError:
            return 0.0
        _stop_in_order(info.pids, info.world_id)
        if info.postgres:
            _remove_postgres_data(PostgresInfo(**info.postgres), self.state_dir)
        (self.state_dir / STATE_FILE).unlink(missing_ok=True)
        shutil.rmtree(self.state_dir / "etcd", ignore_errors=True)  # 60+ MB of preallocated WAL; logs stay
        self.info = None
        return time.monotonic() - t0

    def _stop_servers(self, world_id: str) -> None:
        _stop_in_order({s.name: s.pid for s in self.servers}, world_id)
        self.servers = []


def attach_or_start(work: Path, progress: Callable[[str], None] = lambda _: None) -> tuple[WorldInfo, "World | None"]:
    """For a benchmark: the running world $VOXFLEET_WORLD_DIR names (not ours to stop), or a new one in
    ``work/world`` (returned second: the caller stops it)."""
    configured = os.environ.get("VOXFLEET_WORLD_DIR")
    if configured and World(Path(configured)).running():
        return WorldInfo.load(Path(configured)), None
    world = World(work / "world")
    return world.start(progress=progress), world


def _stop_in_order(pids: dict[str, int], world_id: str) -> None:
    """Clients before servers: the pod runner first (it ends the containers it started, which live in their own
    sessions), then everything that talks to the apiserver, then the apiserver, then etcd. Stopped the other way
    round, etcd and the apiserver each wait seconds for clients that retry."""
    if "postgres" in pids:  # SIGINT, its fast shutdown: the SIGTERM below would wait for every client to leave
        postgres.stop_pid(pids["postgres"], timeout=5)
    tiers = [["pod-runner"], None, ["kube-apiserver"], ["etcd"]]
    rest = [name for name in pids if not any(name in t for t in tiers if t)]
    for tier in tiers:
        names = rest if tier is None else [n for n in tier if n in pids]
        processes.stop_groups([pids[n] for n in names], timeout=8 if tier == ["pod-runner"] else 3)
    processes.kill_marked(world_id)


def _start_catching(database: PostgresServer, failure: list[BaseException]) -> None:
    try:
        database.start()
    except BaseException as error:  # noqa: BLE001 - raised in the world's own thread after the join
        failure.append(error)


def _remove_postgres_data(info: PostgresInfo, state_dir: Path) -> None:
    """Its data (in a folder of its own under /tmp when the world ran as root); the logs stay."""
    server = PostgresServer(state_dir / "postgres", log_dir=state_dir / "logs")
    server.info = info
    server.remove_data()


def _node_ready(node: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in node.get("status", {}).get("conditions") or [])


def _identity_kubeconfig(state_dir: Path, server: str, pki: certs.Pki, who: str) -> Path:
    from . import kubeconfig

    return kubeconfig.write(state_dir / "kubeconfigs" / who, server=server, ca_cert=pki.ca_cert,
                            client_cert=pki.client_cert(who), client_key=pki.client_key(who))


def _claim_slot() -> tuple[int, int]:
    """Claim a network slot (which 127.x.y.0/24 block the nodes' pod CIDRs use) with an exclusive flock, so two
    worlds on one machine never hand out the same pod IP. The fd goes to the pod runner, which holds the lock
    for the world's lifetime."""
    slots = binaries.cache_dir().parent / "slots"
    slots.mkdir(parents=True, exist_ok=True)
    for slot in range(topology.MAX_SLOTS):
        fd = os.open(slots / f"{slot}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return slot, fd
    raise ServerFailed(f"all {topology.MAX_SLOTS} world network slots are taken (see {slots}); stop a world")

"""Shared fixtures: the test world (real servers, see world/ and ARCHITECTURE.md "Real parts in tests").

- ``world``: WorldInfo of the running world (ports, URLs, pids, kubeconfig path).
- ``kube``: voxfleet.world.access.Cluster: ``.kubeconfig``, ``.api_client()``, ``.rest()``, ``.new_namespace()``.
- ``namespace``: a fresh namespace for one test, deleted afterwards.
- ``livekit``: dict region -> LiveKitRegion (``url``, ``http_url``, ``api_key``, ``api_secret``): us-east, eu-west.
- ``pods``: voxfleet.world.access.RunnerPool: runner node names per region, ``placement(region)`` for a pod spec,
  ``log_path(namespace, pod, container)``.
- ``postgres``: voxfleet.world.postgres.PostgresInfo of a real PostgreSQL (``admin_url``): the world's at
  $VOXFLEET_WORLD_DIR when it has one, else a private server per test process (xdist worker) under its basetemp.
- ``database``: the URL of a fresh database on it with every migration applied (``alembic upgrade heads``),
  dropped after the test.

One world serves the whole run, also under pytest-xdist: the first worker starts it (under a file lock, in a
folder keyed by xdist's testrunuid), the others attach, the last to finish stops it. If VOXFLEET_WORLD_DIR names a
running world (``voxfleet cluster up``), tests use it and leave it running. Tests isolate themselves with unique
namespaces and never assume the cluster is theirs alone. A server that can't start fails the fixture with its log
tail; nothing is skipped. A run's world folder stays after it (its server logs explain a failure) until a later
run finds it a day old and stopped, and removes it.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fresh_database import fresh_database
from tests.security import secret_ledger
from voxfleet.world.access import Cluster, RunnerPool
from voxfleet.world.livekit import LiveKitRegion
from voxfleet.world.postgres import PostgresInfo
from voxfleet.world.shared import SharedWorld
from voxfleet.world.world import World, WorldInfo


def _run_key(config: pytest.Config) -> str:
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        return workerinput["testrunuid"][:12]  # the same in every worker of one run
    return f"{os.getpid()}-{uuid.uuid4().hex[:6]}"


WORLD_FOLDERS_KEPT_SECONDS = 24 * 3600


def _remove_old_world_folders(parent: Path) -> None:
    """Earlier runs' world folders (up to ~130 MB each, mostly etcd), once a day old and no longer running."""
    cutoff = time.time() - WORLD_FOLDERS_KEPT_SECONDS
    for folder in parent.glob("voxfleet-world-*"):
        try:
            if folder.is_dir() and folder.stat().st_mtime < cutoff and not World(folder).running():
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            continue  # another xdist worker removed it first


@pytest.fixture(scope="session")
def world(request: pytest.FixtureRequest) -> Iterator[WorldInfo]:
    configured = os.environ.get("VOXFLEET_WORLD_DIR")
    if configured and World(Path(configured)).running():
        yield WorldInfo.load(Path(configured))  # someone else's world: use it, leave it running
        return
    _remove_old_world_folders(Path(tempfile.gettempdir()))
    state_dir = Path(tempfile.gettempdir()) / f"voxfleet-world-{_run_key(request.config)}"
    shared = SharedWorld(state_dir)
    info = shared.acquire(progress=lambda m: print(f"[world] {m}", file=sys.stderr, flush=True))
    try:
        yield info
    finally:
        stopped_in = shared.release()
        if stopped_in is not None:
            print(f"[world] stopped in {stopped_in:.1f} s", file=sys.stderr, flush=True)


@pytest.fixture(scope="session")
def kube(world: WorldInfo) -> Cluster:
    return Cluster.of(world)


@pytest.fixture
def namespace(kube: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    prefix = "".join(ch if ch.isalnum() else "-" for ch in request.node.name.lower())[:30].strip("-") or "t"
    name = kube.new_namespace(prefix)
    yield name
    kube.delete_namespace(name)


@pytest.fixture(scope="session")
def livekit(world: WorldInfo) -> dict[str, LiveKitRegion]:
    return world.livekit_regions()


@pytest.fixture(scope="session")
def pods(world: WorldInfo) -> RunnerPool:
    return RunnerPool.of(world)


@pytest.fixture(scope="session")
def installed_crds(kube: Cluster) -> None:
    """The CRDs generated into crds/, installed and Established."""
    from tests.crds import install_crds

    install_crds(kube)


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresInfo]:
    from voxfleet.world import postgres as pg

    configured = os.environ.get("VOXFLEET_WORLD_DIR")
    if configured and World(Path(configured)).running():
        info = WorldInfo.load(Path(configured))
        if info.postgres:
            shared = PostgresInfo(**info.postgres)
            secret_ledger.record(shared.password, "PostgreSQL admin password (the world's)")
            yield shared  # the world's: used, never stopped
            return
    state = tmp_path_factory.mktemp("postgres")
    server = pg.PostgresServer(state, log_dir=state / "logs").start()
    try:
        # Its password is in every database URL a test hands a gateway: the run's log scan looks for it too.
        secret_ledger.record(server.info.password, "PostgreSQL admin password")
        yield server.info
    finally:
        server.stop()
        server.remove_data()


@pytest.fixture
def database(postgres: PostgresInfo) -> Iterator[str]:
    with fresh_database(postgres.admin_url, "t") as url:
        yield url


# Modules whose assertions are timings heard in a LiveKit room (TTFA, barge-in, silence gaps). On a 2-core machine a
# parallel neighbour's CPU would decide them, so `make test` runs them in a second, serial phase.
REALTIME_MODULES = {
    "tests/worker/test_worker_calls.py",
    "tests/worker/test_worker_tool_calls.py",
    "tests/worker/test_worker_turn_metrics.py",  # its barge-ins must land while the agent speaks
    "tests/worker/test_reply_filler.py",  # when the filler is heard, against the model's delay
    "tests/worker/test_turn_speed.py",  # heard TTFA and premature turn ends, old vs shipped demo settings
    "tests/worker/test_barge_in_heard.py",  # stop times and pauses heard in the room
    "tests/worker/test_understanding_calls.py",  # answers heard in the room (times nothing, but a room test)
    "tests/dev/test_caller.py",
    "tests/dev/test_dev_platform.py",
    "tests/eval/test_concurrent_run.py",
    "tests/eval/test_example_suite.py",
    "tests/eval/test_broken_agent.py",
    "tests/eval/test_simulated_callers.py",  # a simulated caller gives up on dead air past its patience
    "tests/eval/test_load_mode.py",  # twenty callers at once: TTFA heard under load
    "tests/gateway/test_e2e_with_operator.py",
    "tests/gateway/test_call_report_e2e.py",  # turns and TTFA of a real call, against what the caller measured
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = Path(__file__).resolve().parents[1]
    for item in items:
        if str(Path(item.fspath).resolve().relative_to(root)) in REALTIME_MODULES:
            item.add_marker(pytest.mark.realtime)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """A failure's report (terminal, JUnit XML, the rerun list) names the secrets it would show instead of showing
    them: a long traceback prints every fixture's value, and a fixture may hold a URL with a password or a key.
    The log scan reads the JUnit XML like any log, so this keeps a failing test from also failing the scan."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and report.longrepr is not None:
        text = str(report.longrepr)
        clean = secret_ledger.redacted(text)
        if clean != text:
            report.longrepr = clean
    report.sections = [(title, secret_ledger.redacted(content)) for title, content in report.sections]


FIGURE_LINES_PER_TEST = 12
FIGURE_LINE_CHARS = 400


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """What passing tests printed (their figures: latencies, counts, rates), so a pass shows its numbers too and
    not only a failure or a run with -s. Works under xdist: the controller gets each report's captured output."""
    shown = 0
    for report in terminalreporter.stats.get("passed", []):
        lines = [line for line in (report.capstdout or "").splitlines() if line.strip()]
        if report.when != "call" or not lines:
            continue
        if shown == 0:
            terminalreporter.section("figures printed by passing tests")
        shown += 1
        terminalreporter.write_line(report.nodeid)
        for line in lines[:FIGURE_LINES_PER_TEST]:
            terminalreporter.write_line("    " + line[:FIGURE_LINE_CHARS])
        if len(lines) > FIGURE_LINES_PER_TEST:
            terminalreporter.write_line(f"    ... {len(lines) - FIGURE_LINES_PER_TEST} more lines")

"""The gateway and its store, as real processes: `voxfleet gateway` with and without VOXFLEET_DATABASE_URL, against
real PostgreSQL servers.

- Without a database it serves what it did (agents, health) and says `database: not_configured`; an endpoint that
  needs the store answers 503 `database_not_configured` as a problem (require_database).
- With one, /readyz (both ports) says `database: up` and voxfleet_gateway_database_up is 1; the database password is
  in no log line and no /readyz body.
- PostgreSQL killed under a running gateway (a private server: the shared one is never stopped): /readyz stays 200
  but says "degraded" and `database: down` (calls need no database; leaving the rotation would cut the API on
  every replica at once), the gauge goes to 0; restarted, the same gateway says "up" again on its pooled
  connections (pool_pre_ping), with no restart of its own.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from tests.gateway.gateway_process import GatewayProcess
from tests.gateway.tenant_setup import create_tenant, delete_tenant, key_headers, wait_until_served
from tests.world.waiting import wait_for
from voxfleet.gateway import api_errors
from voxfleet.gateway.store_access import require_database
from voxfleet.world import postgres as pg
from voxfleet.world.access import Cluster
from voxfleet.world.postgres import PostgresInfo


@pytest.fixture(scope="module")
def platform_namespace(kube: Cluster, installed_crds: None) -> Iterator[str]:
    name = kube.new_namespace("vfsys")
    yield name
    kube.delete_namespace(name)


def _gateway(kube: Cluster, platform_namespace: str, log_dir: Path, database_url: str | None,
             **env: str) -> GatewayProcess:
    return GatewayProcess(kubeconfig=kube.kubeconfig, platform_namespace=platform_namespace,
                          log_path=log_dir / f"gateway-{uuid.uuid4().hex[:6]}.log", database_url=database_url,
                          extra_env=env)


def _readyz(url: str) -> tuple[int, dict]:
    response = httpx.get(f"{url}/readyz", timeout=5)
    return response.status_code, response.json()


def _database_gauge(gateway: GatewayProcess) -> str | None:
    for line in gateway.metrics().splitlines():
        if line.startswith("voxfleet_gateway_database_up "):
            return line.split()[1]
    return None


def test_without_a_database_the_gateway_serves_what_it_did(kube, platform_namespace, tmp_path):
    tenant = create_tenant(kube, platform_namespace, allowed_regions=["us-east"])
    try:
        with _gateway(kube, platform_namespace, tmp_path, None) as gateway:
            status, body = _readyz(gateway.url)
            print(f"/readyz {status}: status {body['status']}, database {body['database']}")
            assert status == 200 and body["status"] == "ready" and body["database"] == "not_configured"
            with httpx.Client(base_url=gateway.url, headers=key_headers(tenant.key), timeout=10) as http:
                wait_until_served(http)
                agents = http.get("/v1/agents")
            assert agents.status_code == 200, agents.text
            assert _database_gauge(gateway) is None  # nothing to report: no gauge at all
    finally:
        delete_tenant(kube, tenant)


def test_an_endpoint_that_needs_the_store_answers_503_database_not_configured():
    app = FastAPI()
    api_errors.install(app)
    app.state.database = None

    @app.get("/needs-store")
    async def needs_store(database=Depends(require_database)) -> dict:
        return {"database": "yes"}

    response = TestClient(app).get("/needs-store")
    print(response.status_code, response.headers.get("content-type"), response.json())
    assert response.status_code == 503
    assert response.json()["code"] == "database_not_configured"
    assert "VOXFLEET_DATABASE_URL" in response.json()["message"]


def test_with_a_database_readyz_says_up_and_the_password_is_never_shown(kube, platform_namespace, tmp_path,
                                                                       database: str, postgres: PostgresInfo):
    tenant = create_tenant(kube, platform_namespace, allowed_regions=["us-east"])
    try:
        with _gateway(kube, platform_namespace, tmp_path, database) as gateway:
            wait_for("the first database probe", lambda: _readyz(gateway.url)[1]["database"] == "up", timeout=20)
            bodies = []
            for url in (gateway.url, gateway.operational_url):
                status, body = _readyz(url)
                bodies.append(httpx.get(f"{url}/readyz", timeout=5).text)
                print(f"{url.rsplit(':', 1)[1]} /readyz {status}: status {body['status']}, database {body['database']}")
                assert status == 200 and body["status"] == "ready" and body["database"] == "up"
            assert _database_gauge(gateway) == "1.0"
            with httpx.Client(base_url=gateway.url, headers=key_headers(tenant.key), timeout=10) as http:
                wait_until_served(http)
                assert http.get("/v1/agents").status_code == 200
            metrics = gateway.metrics()
        log = gateway.log()
        print(f"gateway log: {len(log.splitlines())} lines")
        for shown in (log, metrics, *bodies):
            assert postgres.password not in shown
            assert database not in shown
    finally:
        delete_tenant(kube, tenant)


def test_postgres_killed_readyz_degraded_then_the_pool_recovers(kube, platform_namespace, tmp_path):
    server = pg.PostgresServer(tmp_path / "pg", log_dir=tmp_path / "pg-logs").start()
    try:
        url = pg.create_database(server.admin_url, f"t_{uuid.uuid4().hex[:12]}")
        with _gateway(kube, platform_namespace, tmp_path, url, VOXFLEET_DATABASE_PROBE_SECONDS="0.5") as gateway:
            wait_for("database up", lambda: _readyz(gateway.url)[1]["database"] == "up", timeout=20)

            server.kill()
            killed = time.monotonic()
            wait_for("/readyz to say the database is down", lambda: _readyz(gateway.url)[1]["database"] == "down",
                     timeout=30)
            seen_down = time.monotonic() - killed
            status, body = _readyz(gateway.url)
            print(f"killed: /readyz {status} {body['status']}, database {body['database']} after {seen_down:.1f} s;"
                  f" gauge {_database_gauge(gateway)}")
            assert status == 200 and body["status"] == "degraded"
            assert _database_gauge(gateway) == "0.0"

            server.start()
            restarted = time.monotonic()
            wait_for("/readyz to say the database is up again",
                     lambda: _readyz(gateway.url)[1]["database"] == "up", timeout=30)
            seen_up = time.monotonic() - restarted
            status, body = _readyz(gateway.url)
            print(f"restarted: /readyz {status} {body['status']}, database {body['database']} {seen_up:.1f} s after"
                  f" PostgreSQL accepted queries; gauge {_database_gauge(gateway)}")
            assert status == 200 and body["status"] == "ready"
            assert _database_gauge(gateway) == "1.0"
            assert gateway.popen is not None and gateway.popen.poll() is None  # the same process throughout
        assert "database does not answer" in gateway.log() and "database answers" in gateway.log()
    finally:
        server.stop()
        server.remove_data()

"""Attack 2 of issue 16 and the worker control API's front door: a worker token leaked from tenant A's namespace
opens no other tenant's workers, and a worker refuses a caller without its token before reading what it sends.

Real workers (``voxfleet worker`` processes the pod runner started for the operator's pods) of two tenants; the
tokens are read from the tenants' namespaces as anyone holding them could.
"""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from tests.security.hostile_platform import REGION, offline_spec

pytestmark = [pytest.mark.world, pytest.mark.timeout(400)]

WORKER_PORT = 8080
AGENT = "front-desk"


@pytest.fixture(scope="module")
def two_tenants_with_workers(platform):
    a, b = platform.add_tenant("wa"), platform.add_tenant("wb")
    for tenant in (a, b):
        with platform.api(tenant) as http:
            response = http.put(f"/v1/agents/{AGENT}", json=offline_spec(
                regions=[{"name": REGION, "minWorkers": 1, "maxWorkers": 1}]))
            assert response.status_code == 201, response.text
    return {t.name: (t, platform.wait_ready_workers(t, AGENT, timeout=180)[0]) for t in (a, b)}


def _load(ip: str, token: str) -> httpx.Response:
    return httpx.get(f"http://{ip}:{WORKER_PORT}/v1/load", headers={"Authorization": f"Bearer {token}"}, timeout=10)


def test_tenant_as_worker_token_is_refused_by_tenant_bs_worker(platform, two_tenants_with_workers):
    (a, a_ip), (b, b_ip) = two_tenants_with_workers.values()
    a_token, b_token = platform.worker_token_of(a.namespace), platform.worker_token_of(b.namespace)
    assert a_token != b_token, "two tenants share one worker token"
    assert a_token != platform.root_token and b_token != platform.root_token, "a tenant namespace holds the root"

    assert _load(a_ip, a_token).status_code == 200  # A's token opens A's worker
    assert _load(b_ip, b_token).status_code == 200  # the platform (gateway, operator) reaches B's with B's
    stolen = _load(b_ip, a_token)
    assert stolen.status_code == 401, stolen.text
    dispatch = httpx.post(f"http://{b_ip}:{WORKER_PORT}/v1/dispatch", json={},
                          headers={"Authorization": f"Bearer {a_token}"}, timeout=10)
    assert dispatch.status_code == 401, dispatch.text
    print(f"A's token on B's worker: GET /v1/load {stolen.status_code}, POST /v1/dispatch {dispatch.status_code}")


def test_the_root_token_is_no_worker_credential_and_stays_in_the_platform_namespace(platform,
                                                                                  two_tenants_with_workers):
    for tenant, ip in two_tenants_with_workers.values():
        assert _load(ip, platform.root_token).status_code == 401
        assert platform.root_token not in platform.secret_values(tenant.namespace), \
            f"the root token is stored in {tenant.namespace}"


def test_a_worker_answers_401_before_reading_an_unauthenticated_body(two_tenants_with_workers):
    """A chunked body that never ends, with a wrong token: the 401 comes at once, and the worker stays healthy."""
    _, ip = next(iter(two_tenants_with_workers.values()))
    with socket.create_connection((ip, WORKER_PORT), timeout=10) as sock:
        sock.sendall(b"POST /v1/dispatch HTTP/1.1\r\nHost: worker\r\nAuthorization: Bearer wrong-token\r\n"
                     b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        started = time.monotonic()
        chunk = b"x" * 65536
        sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))  # more to come, never sent
        answer = b""
        try:
            while b"\r\n\r\n" not in answer:
                part = sock.recv(4096)
                if not part:
                    break
                answer += part
        except TimeoutError:
            pass  # no answer within 10 s: the worker waits for the body before judging the token
        waited = time.monotonic() - started
    status_line = answer.split(b"\r\n", 1)[0].decode(errors="replace")
    print(f"unauthenticated endless body: '{status_line}' after {waited * 1000:.0f} ms")
    assert status_line.split(" ")[1:2] == ["401"], answer[:300]
    assert waited < 5.0
    assert httpx.get(f"http://{ip}:{WORKER_PORT}/healthz", timeout=5).status_code == 200

"""Property-based tests of the whole HTTP API with schemathesis, generated from the gateway's own OpenAPI
document and sent to a real gateway process (tenant key attached; a stand-in worker behind the agent):
valid and invalid input alike never gets a 5xx (except a documented 503 with Retry-After), every error is an
RFC 9457 problem (application/problem+json, keeping code/message/details), every answer matches its documented
schema, and no answer echoes the API key."""

from __future__ import annotations

import time

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.gateway import worker_pods
from tests.gateway.conftest import livekit_regions, session_gateway_env, start_gateway
from tests.gateway.tenant_setup import create_tenant, delete_tenant
from voxfleet.gateway.api_errors import PROBLEM_MEDIA_TYPE, ProblemDetails

pytestmark = pytest.mark.world

AGENT = "prop-agent"
DOCUMENTED_5XX = {503: {"no_capacity", "tenant_not_ready"}}
EXAMPLES = 15  # per operation and mode: ~300 requests in all, a few seconds of gateway time


@pytest.fixture(scope="module")
def target(kube, pods, platform_namespace, gateway_logs, livekit, module_database):
    gateway = start_gateway(kube, platform_namespace, gateway_logs, regions=livekit_regions(livekit),
                            database_url=module_database,  # history, webhooks, usage and Idempotency-Key too
                            extra_env=session_gateway_env(VOXFLEET_RATE_LIMIT_PER_SECOND="100000",
                                                          VOXFLEET_RATE_LIMIT_BURST="100000"))
    tenant = create_tenant(kube, platform_namespace, allowed_regions=["us-east", "eu-west"],
                           quotas={"maxAgents": 1000, "maxWorkers": 10000, "maxConcurrentSessions": 100000})
    with httpx.Client(base_url=gateway.url, headers=tenant.headers(), timeout=15) as http:
        assert http.put(f"/v1/agents/{AGENT}", json={"regions": [{"name": "us-east", "minWorkers": 0}]}
                        ).status_code == 201
    names = worker_pods.create(kube, tenant.namespace, [worker_pods.standin_pod(
        pods, tenant=tenant.name, agent=AGENT, region="us-east", slots=1000)])
    worker_pods.wait_ready(kube, tenant.namespace, names, pods=pods)
    time.sleep(0.5)  # the gateway's Pod watch
    yield gateway, tenant
    gateway.stop()
    delete_tenant(kube, tenant)


def _check(case, response, tenant) -> None:
    status = response.status_code
    body = response.json() if response.content else None
    label = f"{case.method} {case.formatted_path} -> {status} {response.text[:300]}"
    if status >= 500:
        allowed = DOCUMENTED_5XX.get(status, set())
        assert body is not None and body.get("code") in allowed, label
        assert "retry-after" in {k.lower() for k in response.headers}, label
    if status >= 400:  # every error is a problem
        content_type = {name.lower(): value for name, value in response.headers.items()}["content-type"]
        content_type = content_type[0] if isinstance(content_type, list) else content_type  # schemathesis: a list
        assert content_type.split(";")[0] == PROBLEM_MEDIA_TYPE, label
        ProblemDetails.model_validate(body)
        assert body["status"] == status and body["type"].endswith(":" + body["code"]), label
    assert tenant.key not in response.text, label
    case.validate_response(response, checks=[response_schema_conformance])


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_no_server_errors_and_only_documented_answers(target, mode):
    gateway, tenant = target
    schema = schemathesis.openapi.from_url(f"{gateway.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def exercise(case):
            _check(case, case.call(base_url=gateway.url, headers=tenant.headers(), timeout=15), tenant)

        try:
            exercise()
        except Unsatisfiable:
            # Nothing invalid can be said to an operation without parameters or body (GET /v1/agents).
            assert mode == GenerationMode.NEGATIVE and not list(operation.iter_parameters()) and not operation.body

"""The tenant API's conventions, against a real gateway process and the real apiserver: every error an RFC 9457
problem (application/problem+json) that keeps `code`/`message`/`details`; ETag and If-Match on agents (no
silent lost update), If-None-Match: * creates only; Location on 201; RateLimit-* headers on every answer to a
key, Retry-After on 429/503; the published OpenAPI document equal to what a running gateway serves, with
readable operationIds and the agent spec typed.

The units at the end (parsing entity tags, problem bodies, the rate-limit figures) need no servers."""

from __future__ import annotations

import copy
import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from kubernetes import client

from tests.api.invalid_resources import VALID_AGENT_SPEC
from tests.gateway.conftest import start_gateway
from tests.gateway.tenant_setup import create_tenant, delete_tenant, wait_until_served
from voxfleet.api.voiceagent import GROUP, PLURAL, VERSION, VoiceAgentSpec
from voxfleet.gateway import api_errors, entity_tags, openapi_document
from voxfleet.gateway.api_errors import ApiError, ProblemDetails
from voxfleet.gateway.entity_tags import MalformedCondition
from voxfleet.gateway.rate_limits import TenantRateLimiter

REPO = Path(__file__).resolve().parents[2]
SPEC = {**copy.deepcopy(VALID_AGENT_SPEC), "regions": [{"name": "us-east", "minWorkers": 0, "maxWorkers": 2}]}
BURST = 30  # the gateway's per-tenant bucket in this module; RATE refills it slowly, so a burst meets a 429
RATE = 1
MARKER = "sk-conventions-test-do-not-echo"


@pytest.fixture(scope="module")
def gateway(kube, platform_namespace, gateway_logs):
    process = start_gateway(kube, platform_namespace, gateway_logs,
                            extra_env={"VOXFLEET_RATE_LIMIT_BURST": str(BURST),
                                       "VOXFLEET_RATE_LIMIT_PER_SECOND": str(RATE)})
    yield process
    process.stop()


def _tenant(kube, platform_namespace):
    return create_tenant(kube, platform_namespace, allowed_regions=["us-east"],
                         quotas={"maxAgents": 10, "maxWorkers": 10})


@pytest.fixture
def tenant(kube, platform_namespace):
    """A tenant per test: each has its own rate-limit bucket."""
    created = _tenant(kube, platform_namespace)
    yield created
    delete_tenant(kube, created)


@pytest.fixture
def api(gateway, tenant):
    with httpx.Client(base_url=gateway.url, headers=tenant.headers(), timeout=15) as http:
        wait_until_served(http)
        yield http


def _problem(response: httpx.Response, status: int, code: str) -> dict:
    """The answer is a problem of this status and code, with every standard member and the kept ones."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].split(";")[0] == "application/problem+json", response.headers
    body = response.json()
    ProblemDetails.model_validate(body)
    assert body["status"] == status and body["code"] == code, body
    assert body["type"] == f"urn:voxfleet:problem:{code}" and body["title"], body
    assert body["detail"] == body["message"] and body["instance"].startswith("urn:uuid:"), body
    return body


# --- errors as problems -----------------------------------------------------------------------------------------

@pytest.mark.world
def test_every_kind_of_error_is_a_problem_that_keeps_code_message_and_details(gateway, api, tenant):
    anonymous = httpx.get(f"{gateway.url}/v1/agents", timeout=10)
    assert _problem(anonymous, 401, "missing_api_key")
    assert "ratelimit-limit" not in {name.lower() for name in anonymous.headers}  # no tenant, no bucket to show

    _problem(api.get("/v1/agents/nobody-here"), 404, "agent_not_found")
    _problem(api.get("/v1/no-such-endpoint"), 404, "not_found")
    _problem(api.post("/v1/agents"), 405, "method_not_allowed")
    too_large = api.put("/v1/agents/big", content=b"{" + b" " * (300 * 1024) + b"}",
                        headers={"Content-Type": "application/json"})
    _problem(too_large, 413, "request_too_large")

    # A body the gateway's model refuses: each field is named, by dotted path and JSON pointer, and the rejected
    # value (a secret pasted into the wrong field, say) is never echoed.
    invalid = api.put("/v1/agents/bad-body", json={**SPEC, "greeting": {"secret": MARKER},
                                                   "regions": [{"name": "us-east", "minWorkers": "many"}]})
    body = _problem(invalid, 422, "invalid_request")
    fields = {(d["field"], d.get("pointer")) for d in body["details"]}
    print(f"422 details: {sorted(fields)}")
    assert ("greeting", "/greeting") in fields and ("regions[0].minWorkers", "/regions/0/minWorkers") in fields
    assert MARKER not in invalid.text

    # FastAPI's own validation (a path parameter): the field is named; it is not in the body, so no pointer.
    bad_name = _problem(api.get("/v1/agents/Not_A_DNS_Label"), 422, "invalid_request")
    assert [(d["field"], "pointer" in d) for d in bad_name["details"]] == [("path.agent", False)]

    # Every occurrence has its own instance.
    instances = {api.get("/v1/agents/nobody-here").json()["instance"] for _ in range(3)}
    assert len(instances) == 3


# --- ETag, If-Match, If-None-Match ------------------------------------------------------------------------------

@pytest.mark.world
def test_two_clients_edit_one_agent_and_the_stale_one_gets_412_not_a_lost_update(gateway, tenant, api):
    created = api.put("/v1/agents/shared", json=SPEC)
    assert created.status_code == 201, created.text
    assert created.headers["ETag"] == created.json()["etag"]

    with httpx.Client(base_url=gateway.url, headers=tenant.headers(), timeout=15) as alice, \
            httpx.Client(base_url=gateway.url, headers=tenant.headers(), timeout=15) as bob:
        seen_by_alice = alice.get("/v1/agents/shared").headers["ETag"]
        seen_by_bob = bob.get("/v1/agents/shared").headers["ETag"]
        assert seen_by_alice == seen_by_bob == created.headers["ETag"]

        first = alice.put("/v1/agents/shared", json={**SPEC, "greeting": "Alice was here."},
                          headers={"If-Match": seen_by_alice})
        assert first.status_code == 200, first.text
        assert first.headers["ETag"] != seen_by_alice

        stale_patch = bob.patch("/v1/agents/shared", json={"greeting": "Bob was here."},
                                headers={"If-Match": seen_by_bob})
        problem = _problem(stale_patch, 412, "precondition_failed")
        assert problem["currentEtag"] == first.headers["ETag"]
        stale_put = bob.put("/v1/agents/shared", json={**SPEC, "greeting": "Bob again."},
                            headers={"If-Match": seen_by_bob})
        _problem(stale_put, 412, "precondition_failed")
        _problem(bob.delete("/v1/agents/shared", headers={"If-Match": seen_by_bob}), 412, "precondition_failed")

        kept = bob.get("/v1/agents/shared")
        print(f"ETags: read {seen_by_bob}, after Alice's edit {kept.headers['ETag']}; greeting kept:"
              f" {kept.json()['spec']['greeting']!r}")
        assert kept.json()["spec"]["greeting"] == "Alice was here."

        # Bob reads again and edits what is there now.
        fresh = kept.headers["ETag"]
        retried = bob.patch("/v1/agents/shared", json={"greeting": "Bob, after reading."}, headers={"If-Match": fresh})
        assert retried.status_code == 200 and retried.json()["spec"]["greeting"] == "Bob, after reading."
        assert bob.delete("/v1/agents/shared", headers={"If-Match": retried.headers["ETag"]}).status_code == 204
    _problem(api.get("/v1/agents/shared"), 404, "agent_not_found")


@pytest.mark.world
def test_the_etag_names_the_spec_so_the_operators_status_updates_do_not_break_if_match(api, kube, tenant):
    created = api.put("/v1/agents/status-moves", json=SPEC)
    etag = created.headers["ETag"]
    status = {"observedGeneration": 1, "readyWorkers": 1, "freeSlots": 2, "regions": [],
              "conditions": [{"type": "Ready", "status": "True", "reason": "PoolsReady", "message": "",
                              "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
    with kube.api_client() as api_client:  # what the operator does, as the operator
        objects = client.CustomObjectsApi(api_client)
        before = objects.get_namespaced_custom_object(GROUP, VERSION, tenant.namespace, PLURAL, "status-moves")
        after = objects.patch_namespaced_custom_object_status(GROUP, VERSION, tenant.namespace, PLURAL,
                                                              "status-moves", {"status": status})
    assert after["metadata"]["resourceVersion"] != before["metadata"]["resourceVersion"]
    read = api.get("/v1/agents/status-moves")
    assert read.json()["ready"] is True and read.headers["ETag"] == etag
    edited = api.patch("/v1/agents/status-moves", json={"greeting": "Still mine."}, headers={"If-Match": etag})
    assert edited.status_code == 200, edited.text
    print(f"status update moved resourceVersion {before['metadata']['resourceVersion']} ->"
          f" {after['metadata']['resourceVersion']}; ETag stayed {etag}; the If-Match edit went through")


@pytest.mark.world
def test_if_none_match_star_creates_only_and_get_answers_304_for_a_known_etag(api, kube, tenant):
    first = api.put("/v1/agents/create-once", json={**SPEC, "systemPrompt": "Be brief."},
                    headers={"If-None-Match": "*"})
    assert first.status_code == 201, first.text
    again = api.put("/v1/agents/create-once", json={**SPEC, "greeting": "Overwritten?"},
                    headers={"If-None-Match": "*"})
    _problem(again, 412, "precondition_failed")
    assert api.get("/v1/agents/create-once").json()["spec"]["greeting"] == SPEC["greeting"]
    replaced = api.put("/v1/agents/create-once", json=SPEC)  # no systemPrompt now
    assert replaced.status_code == 200 and replaced.json()["spec"]["systemPrompt"] == ""
    first = replaced

    # Created by the gateway's field manager as a server-side apply owns it: a later PUT that leaves a field out
    # removes it (the CRD default comes back), as for agents created without the header.
    with kube.api_client() as api_client:
        stored = client.CustomObjectsApi(api_client).get_namespaced_custom_object(
            GROUP, VERSION, tenant.namespace, PLURAL, "create-once")
    assert {(m["manager"], m["operation"]) for m in stored["metadata"]["managedFields"]} == \
        {("voxfleet-gateway", "Apply")}
    etag = first.headers["ETag"]
    not_modified = api.get("/v1/agents/create-once", headers={"If-None-Match": etag})
    assert not_modified.status_code == 304 and not_modified.content == b"" and not_modified.headers["ETag"] == etag
    assert api.get("/v1/agents/create-once", headers={"If-None-Match": '"other"'}).status_code == 200
    # If-Match on an agent a PUT would create cannot hold (PATCH and DELETE answer 404 as without it).
    _problem(api.put("/v1/agents/never-made", json=SPEC, headers={"If-Match": etag}), 412, "precondition_failed")
    _problem(api.put("/v1/agents/never-made", json=SPEC, headers={"If-Match": "*"}), 412, "precondition_failed")


@pytest.mark.world
def test_racing_create_only_puts_create_once(gateway, tenant, api):
    racers = 6

    def create(index: int) -> httpx.Response:
        with httpx.Client(base_url=gateway.url, headers=tenant.headers(), timeout=30) as http:
            return http.put("/v1/agents/raced", json={**SPEC, "greeting": f"Racer {index}."},
                            headers={"If-None-Match": "*"})

    with ThreadPoolExecutor(racers) as pool:
        answers = list(pool.map(create, range(racers)))
    statuses = sorted(answer.status_code for answer in answers)
    print(f"{racers} racing create-only PUTs: {statuses}")
    assert statuses == [201] + [412] * (racers - 1), [a.text[:200] for a in answers]
    winner = next(answer for answer in answers if answer.status_code == 201)
    assert api.get("/v1/agents/raced").json()["spec"]["greeting"] == winner.json()["spec"]["greeting"]


@pytest.mark.world
def test_malformed_preconditions_are_400_naming_the_header(api):
    assert api.put("/v1/agents/cond-bad", json=SPEC).status_code == 201
    for value in ("no-quotes", '"a", b', 'W/"x" junk', ", ".join(f'"{n}"' for n in range(60))):
        problem = _problem(api.patch("/v1/agents/cond-bad", json={"greeting": "x"}, headers={"If-Match": value}),
                           400, "invalid_precondition")
        assert problem["details"][0]["field"] == "header.If-Match"
    # A weak tag never matches If-Match (strong comparison): 412, not a write.
    etag = api.get("/v1/agents/cond-bad").headers["ETag"]
    _problem(api.patch("/v1/agents/cond-bad", json={"greeting": "x"}, headers={"If-Match": f"W/{etag}"}),
             412, "precondition_failed")


@pytest.mark.world
def test_another_tenants_etag_or_agent_is_just_not_found(gateway, api, kube, platform_namespace):
    created = api.put("/v1/agents/private", json=SPEC)
    etag = created.headers["ETag"]
    other = _tenant(kube, platform_namespace)
    try:
        with httpx.Client(base_url=gateway.url, headers=other.headers(), timeout=15) as stranger:
            wait_until_served(stranger)
            _problem(stranger.get("/v1/agents/private"), 404, "agent_not_found")
            _problem(stranger.get("/v1/agents/private", headers={"If-None-Match": etag}), 404, "agent_not_found")
            # Preconditions are not even looked at for an agent the tenant does not have (RFC 9110 13.2.1).
            _problem(stranger.patch("/v1/agents/private", json={"greeting": "x"}, headers={"If-Match": etag}),
                     404, "agent_not_found")
            _problem(stranger.delete("/v1/agents/private", headers={"If-Match": etag}), 404, "agent_not_found")
            _problem(stranger.delete("/v1/agents/private", headers={"If-Match": "*"}), 404, "agent_not_found")
    finally:
        delete_tenant(kube, other)
    assert api.get("/v1/agents/private").json()["spec"]["greeting"] == SPEC["greeting"]


# --- Location, rate limits, the typed spec ----------------------------------------------------------------------

@pytest.mark.world
def test_every_201_says_where_the_new_resource_is(api):
    agent = api.put("/v1/agents/located", json=SPEC)
    assert agent.status_code == 201 and agent.headers["Location"] == "/v1/agents/located"
    assert api.get(agent.headers["Location"]).json()["name"] == "located"
    assert "location" not in {k.lower() for k in api.put("/v1/agents/located", json=SPEC).headers}  # 200: none

    secret = api.put("/v1/secrets/located-key", json={"data": {"apiKey": "not-a-real-value"}})
    assert secret.status_code == 201 and secret.headers["Location"] == "/v1/secrets/located-key"
    assert api.get(secret.headers["Location"]).json()["name"] == "located-key"


@pytest.mark.world
def test_every_answer_to_a_key_carries_rate_limit_headers_and_a_429_says_when_to_retry(api):
    # Requests the gateway refuses itself (422: not a DNS label) cost no apiserver call, so the burst is quick
    # even on a loaded machine: far more than the bucket plus what refills meanwhile.
    answers = [api.get("/v1/agents/Not_A_DNS_Label") for _ in range(BURST * 3)]
    limits = {a.headers["RateLimit-Limit"] for a in answers}
    remaining = [int(a.headers["RateLimit-Remaining"]) for a in answers]
    refused = [a for a in answers if a.status_code == 429]
    print(f"remaining over {len(answers)} requests: {remaining[:3]}...{remaining[-3:]}; 429s: {len(refused)};"
          f" reset {answers[-1].headers['RateLimit-Reset']} s; policy {answers[-1].headers['RateLimit-Policy']}")
    assert limits == {str(BURST)}
    assert all(a.status_code in (422, 429) for a in answers)
    assert remaining[0] >= remaining[-1] and remaining[-1] == 0
    assert refused, "a burst over the bucket must meet a 429"
    for answer in refused:
        _problem(answer, 429, "rate_limited")
        assert int(answer.headers["Retry-After"]) >= 1
        assert 0 < int(answer.headers["RateLimit-Reset"]) <= BURST // RATE + 1
    assert answers[-1].headers["RateLimit-Policy"] == f"{BURST};w={BURST // RATE}"


@pytest.mark.world
def test_the_agent_spec_answered_is_a_voice_agent_spec(api, kube, tenant):
    created = api.put("/v1/agents/typed", json=SPEC).json()
    for view in (created, api.get("/v1/agents/typed").json(), api.get("/v1/agents").json()["items"][0]):
        VoiceAgentSpec.model_validate(view["spec"])  # the document's promise, kept
        assert view["etag"].startswith('"') and view["spec"]["scaling"]["sessionsPerWorker"] == 4


# --- the published document ---------------------------------------------------------------------------------------

@pytest.mark.world
def test_the_published_openapi_document_is_what_a_running_gateway_serves(gateway):
    served = httpx.get(f"{gateway.url}/openapi.json", timeout=15).json()
    published_path = REPO / openapi_document.PUBLISHED_PATH
    published = json.loads(published_path.read_text()) if published_path.exists() else None
    operations = [(method.upper(), path, op) for path, item in served["paths"].items() for method, op in item.items()]
    print(f"{len(operations)} operations: {', '.join(op['operationId'] for _, _, op in operations)}")
    assert published == served, (
        f"{openapi_document.PUBLISHED_PATH} differs from the gateway's /openapi.json: the API changed and the"
        f" published document was not regenerated. Run `{openapi_document.REGENERATE}` and commit the file.")


def test_the_document_has_readable_unique_operation_ids_problems_and_a_typed_spec():
    doc = openapi_document.offline_app().openapi()
    ids = []
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            ids.append(operation["operationId"])
            assert re.fullmatch(r"[a-z][a-zA-Z]*", operation["operationId"]), (method, path, operation["operationId"])
            for status, answer in operation["responses"].items():
                if status[0] in "45":
                    assert list(answer["content"]) == ["application/problem+json"], (method, path, status)
                if status == "201":
                    assert "Location" in answer["headers"], (method, path)
                if status in ("429", "503"):
                    assert "Retry-After" in answer["headers"], (method, path, status)
                if operation.get("security"):
                    assert "RateLimit-Remaining" in answer["headers"], (method, path, status)
    assert len(ids) == len(set(ids))
    assert {"listAgents", "getAgent", "putAgent", "patchAgent", "deleteAgent", "createSession", "getSession",
            "getSessionEval", "listSecrets", "putSecret"} <= set(ids)
    schemas = doc["components"]["schemas"]
    assert schemas["AgentView"]["properties"]["spec"]["$ref"].endswith("/VoiceAgentSpec")
    assert "HTTPValidationError" not in schemas
    print(f"{len(ids)} operationIds, all camelCase and unique")


# --- units ----------------------------------------------------------------------------------------------------------

def test_entity_tag_conditions_parse_and_compare_as_rfc_9110_says():
    current = entity_tags.spec_etag({"metadata": {"uid": "u-1", "generation": 3}})
    assert current == '"u-1.3"'
    assert entity_tags.parse_condition(None) is None
    assert entity_tags.parse_condition("*").matches_strongly(current)
    assert not entity_tags.parse_condition("*").matches_strongly(None)  # If-Match: * needs a resource
    listed = entity_tags.parse_condition(f'"x", {current}, W/"y"')
    assert listed.matches_strongly(current) and not listed.matches_strongly('"y"')
    assert entity_tags.parse_condition(f"W/{current}").matches_weakly(current)
    assert not entity_tags.parse_condition(f"W/{current}").matches_strongly(current)
    assert entity_tags.parse_condition('"a,b", "c"').tags == ((False, '"a,b"'), (False, '"c"'))
    for malformed in ("", "abc", '"open', '"a" "b"', ",".join(['"t"'] * (entity_tags.MAX_TAGS + 1))):
        with pytest.raises(MalformedCondition):
            entity_tags.parse_condition(malformed)


def test_problems_keep_their_members_and_429_503_always_carry_retry_after():
    app = FastAPI()
    api_errors.install(app)

    @app.get("/busy")
    async def busy() -> None:
        raise ApiError(503, "database_not_configured", "No database.", extensions={"limit": 3, "code": "spoof"})

    @app.get("/slow-down")
    async def slow_down() -> None:
        raise ApiError(429, "monthly_limit_reached", "Over the month's minutes.", headers={"Retry-After": "7"},
                       details=[{"field": "quotas.monthlyMinutes", "message": "used 10 of 10"}])

    with TestClient(app) as http:
        busy_answer = http.get("/busy")
        body = _problem(busy_answer, 503, "database_not_configured")
        assert busy_answer.headers["Retry-After"] == str(api_errors.DEFAULT_RETRY_AFTER_SECONDS)
        assert body["limit"] == 3 and body["code"] == "database_not_configured"  # extensions never replace members
        limited = http.get("/slow-down")
        body = _problem(limited, 429, "monthly_limit_reached")
        assert limited.headers["Retry-After"] == "7"
        assert body["details"] == [{"field": "quotas.monthlyMinutes", "message": "used 10 of 10"}]  # no pointer
    assert api_errors.problem_title("agent_not_found") == "Agent not found"


def test_rate_limit_figures_follow_the_bucket():
    limiter = TenantRateLimiter(rate_per_second=2, burst=4)
    assert limiter.status("a", now=0.0).remaining == 4
    for _ in range(4):
        assert limiter.try_acquire("a", now=0.0) == 0
    empty = limiter.status("a", now=0.0)
    assert (empty.limit, empty.remaining, empty.reset_seconds, empty.window_seconds) == (4, 0, 2, 2)
    assert limiter.status("a", now=1.0).remaining == 2 and limiter.status("a", now=1.0).reset_seconds == 1
    assert limiter.status("a", now=9.0).headers() == {"RateLimit-Limit": "4", "RateLimit-Remaining": "4",
                                                      "RateLimit-Reset": "0", "RateLimit-Policy": "4;w=2"}

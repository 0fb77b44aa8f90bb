"""A tool schema that points outside itself makes the worker fetch nothing (issue 16, item 3).

A listener the test runs stands where the `$ref` points. Admission refuses such a schema (tests/api); these are
the worker's own defences for one that got past it: build_validator refuses it naming the keyword, and the
argument validator resolves references only inside the schema, so validating arguments never makes a request.
As a control, jsonschema's default validator does fetch from the same listener: the listener is reachable.
"""

from __future__ import annotations

import warnings

import pytest
import referencing.exceptions
from jsonschema import Draft202012Validator

from tests.fakes.http_server import LocalHTTPServer, Reply
from voxfleet.api.voiceagent import Tool
from voxfleet.worker.tools import argument_validator, build_validator

REMOTE = {"type": "string"}


@pytest.fixture
def listener():
    with LocalHTTPServer(lambda request: Reply(body=REMOTE, headers={"Content-Type": "application/json"})) as server:
        yield server


def remote_schema(url: str) -> dict:
    return {"type": "object", "properties": {"city": {"$ref": f"{url}/x"}}}


def test_build_validator_refuses_a_remote_reference_and_fetches_nothing(listener):
    tool = Tool.model_construct(name="lookup", parameters=remote_schema(listener.url))  # past admission
    with pytest.raises(ValueError) as refused:
        build_validator(tool)
    assert "parameters.properties.city.$ref" in str(refused.value)
    assert listener.requests == []


def test_the_argument_validator_resolves_nothing_outside_the_schema(listener):
    validator = argument_validator(remote_schema(listener.url))
    with pytest.raises(referencing.exceptions.Unresolvable):
        list(validator.iter_errors({"city": "Lisbon"}))
    print(f"requests the listener received from the worker's validator: {len(listener.requests)}")
    assert listener.requests == []


def test_control_jsonschemas_default_validator_would_fetch(listener):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "automatic retrieval of remote references"
        errors = list(Draft202012Validator(remote_schema(listener.url)).iter_errors({"city": 7}))
    print(f"requests the listener received from jsonschema's default validator: {len(listener.requests)}")
    assert len(listener.requests) == 1 and listener.requests[0].path == "/x"
    assert errors  # 7 is not a string: the fetched schema was used


def test_local_references_still_validate():
    validator = argument_validator({"type": "object", "$defs": {"city": {"type": "string", "maxLength": 5}},
                                    "properties": {"city": {"$ref": "#/$defs/city"}}})
    assert not list(validator.iter_errors({"city": "Lima"}))
    assert [e.message for e in validator.iter_errors({"city": "Lisbon!"})]

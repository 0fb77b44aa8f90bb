"""What checking a tenant's spec may cost, and that tool schemas are self-contained (issue 16, items 2 and 3).

The pydantic models are what the gateway and the operator both admit with, so these rules hold for both. Each
costly check prints what it took; the limits judged are generous multiples of what a shared 2-core machine needs,
the point being seconds against the minutes the issue saw.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from pydantic import ValidationError

from tests.api.costly_specs import fresh_seed, issue_spec, over_budget_spec, worst_accepted_spec
from voxfleet.api.field_problem import field_problem_of
from voxfleet.api.tenant_regex import PATTERN_MAX_MEM, SPEC_PROGRAM_BUDGET, compile_pattern
from voxfleet.api.tool_schema import MAX_TOOL_SCHEMA_DEPTH, MAX_TOOL_SCHEMA_NODES
from voxfleet.api.voiceagent import MAX_SPEC_BYTES, STORED_SPEC_FOR_ROUTING, VoiceAgentSpec

REGION = [{"name": "us-east"}]


def _seed() -> str:
    return uuid.uuid4().hex[:8]  # distinct patterns every run: nothing cached helps


def refusal(spec: dict[str, Any]) -> tuple[str, str]:
    """(field, message) of the first problem, as the gateway's 422 detail and the operator's condition say it."""
    with pytest.raises(ValidationError) as raised:
        VoiceAgentSpec.model_validate(spec)
    first = raised.value.errors()[0]
    problem = field_problem_of(first)
    if problem is not None:
        return problem.field, problem.message
    return ".".join(map(str, first["loc"])), first["msg"]


def timed(spec: dict[str, Any]) -> tuple[float, tuple[str, str] | None]:
    started = time.perf_counter()
    try:
        VoiceAgentSpec.model_validate(spec)
        outcome = None
    except ValidationError:
        outcome = refusal(spec)
    return time.perf_counter() - started, outcome


def tool(parameters: dict[str, Any], name: str = "lookup") -> dict[str, Any]:
    return {"name": name, "http": {"url": "https://tools.example.com/x"}, "parameters": parameters}


# --- RE2 budgets ------------------------------------------------------------------------------------------------


def test_the_issues_spec_is_refused_in_milliseconds_naming_the_first_pattern():
    seconds, outcome = timed(issue_spec(_seed()))
    print(f"issue 16's spec (1,024 patterns of \\pL{{400}}): refused in {seconds * 1000:.1f} ms: {outcome}")
    assert outcome is not None
    field, message = outcome
    assert field == "intents[0].patterns[0]"
    assert f"{PATTERN_MAX_MEM // 1024} KiB" in message and "\\pL" in message
    assert seconds < 2.0


def test_patterns_past_the_spec_budget_are_refused_at_the_one_that_crosses_it():
    seconds, outcome = timed(over_budget_spec(_seed()))
    print(f"over-budget spec: refused in {seconds * 1000:.1f} ms: {outcome}")
    assert outcome is not None
    field, message = outcome
    assert field.startswith("intents[0].patterns[")
    assert str(SPEC_PROGRAM_BUDGET) in message
    assert seconds < 3.0


def test_the_worst_accepted_spec_checks_in_well_under_a_second():
    spec = worst_accepted_spec(fresh_seed())
    import voxfleet.api.tenant_regex as tenant_regex
    tenant_regex._CACHE = tenant_regex._CompiledCache(tenant_regex.CACHE_PROGRAM_SIZE)  # cold: nothing cached
    seconds, outcome = timed(spec)
    again, _ = timed(spec)
    used = sum(compile_pattern(p, case_sensitive=False).programsize for i in spec["intents"] for p in i["patterns"])
    print(f"worst accepted spec ({len(json.dumps(spec))} bytes, {used} of {SPEC_PROGRAM_BUDGET} RE2 instructions"
          f" in intents): {seconds * 1000:.1f} ms cold, {again * 1000:.1f} ms cached")
    assert outcome is None
    assert used > SPEC_PROGRAM_BUDGET * 0.8  # it really is near the budget
    assert seconds < 3.0
    assert again < seconds


def test_a_pattern_that_is_not_re2_names_its_field():
    spec = {"regions": REGION, "intents": [{"name": "a", "keywords": ["x"], "reply": "r"},
                                           {"name": "b", "patterns": ["fine", "(?<=x)y"], "reply": "r"}]}
    field, message = refusal(spec)
    assert field == "intents[1].patterns[1]"
    assert "not valid RE2" in message


def test_tool_schema_patterns_share_the_budget_and_name_their_field():
    parameters = {"type": "object", "properties": {"city": {"type": "string", "pattern": r"\pL{400}"}}}
    field, message = refusal({"regions": REGION, "tools": [tool(parameters)]})
    assert field == "tools[0].parameters.properties.city.pattern"
    assert "RE2" in message
    names = {"type": "object", "patternProperties": {r"^\pL{400}$": {"type": "string"}}}
    field, _ = refusal({"regions": REGION, "tools": [tool(names)]})
    assert field == "tools[0].parameters.patternProperties"


def test_the_budget_and_limits_are_in_the_field_descriptions():
    schema = VoiceAgentSpec.model_json_schema(by_alias=True)
    text = json.dumps(schema)
    assert str(SPEC_PROGRAM_BUDGET) in text and f"{PATTERN_MAX_MEM // 1024} KiB" in text
    assert f"{MAX_TOOL_SCHEMA_DEPTH} levels" in text and str(MAX_TOOL_SCHEMA_NODES) in text
    assert "2020-12" in text and "196,608" in text


def test_a_spec_larger_than_its_limit_is_refused_naming_the_size():
    spec = {"regions": REGION, "systemPrompt": "s" * 16000,
            "intents": [{"name": f"i{i}", "keywords": ["k" * 100] * 32, "reply": "r" * 2000} for i in range(64)]}
    assert len(json.dumps(spec)) > MAX_SPEC_BYTES
    _, message = refusal(spec)
    assert str(MAX_SPEC_BYTES) in message


def test_routing_readers_skip_only_the_costly_checks():
    spec = {"regions": REGION, "intents": [{"name": "a", "patterns": [r"\pL{400}"], "reply": "r"}]}
    assert refusal(spec)[0] == "intents[0].patterns[0]"
    assert VoiceAgentSpec.model_validate(spec, context=STORED_SPEC_FOR_ROUTING).intents[0].name == "a"
    with pytest.raises(ValidationError):  # the cheap rules still hold
        VoiceAgentSpec.model_validate({"regions": []}, context=STORED_SPEC_FOR_ROUTING)


# --- tool schemas -----------------------------------------------------------------------------------------------


def _nested(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        node = {"type": "object", "properties": {"a": node}}
    return node


def test_tool_schema_depth_is_bounded():
    assert VoiceAgentSpec.model_validate({"regions": REGION, "tools": [tool(_nested(12))]})
    field, message = refusal({"regions": REGION, "tools": [tool(_nested(MAX_TOOL_SCHEMA_DEPTH))]})
    assert field == "tools.0.parameters"
    assert f"deeper than {MAX_TOOL_SCHEMA_DEPTH} levels" in message


def test_a_deeply_nested_schema_is_refused_not_a_crash():
    node: Any = {}
    for _ in range(2000):  # past Python's recursion limit for json.dumps
        node = {"a": node}
    field, message = refusal({"regions": REGION, "tools": [tool({"type": "object", "x": node})]})
    assert "deep" in message, (field, message)


def test_deeply_nested_tool_call_arguments_are_refused_not_a_crash():
    node: Any = {}
    for _ in range(3000):
        node = {"a": node}
    spec = {"regions": REGION, "tools": [tool({"type": "object"}, name="t")],
            "intents": [{"name": "i", "keywords": ["x"], "toolCall": {"name": "t", "arguments": node}}]}
    field, message = refusal(spec)
    assert field == "intents.0.toolCall.arguments" and "deeper than" in message


def test_tool_schema_values_are_counted():
    parameters = {"type": "object", "enum": [[0] for _ in range(MAX_TOOL_SCHEMA_NODES)]}
    field, message = refusal({"regions": REGION, "tools": [tool(parameters)]})
    assert field == "tools.0.parameters"
    assert f"more than {MAX_TOOL_SCHEMA_NODES} values" in message


def test_tool_schemas_are_meta_validated_against_2020_12():
    parameters = {"type": "object", "properties": {"when": {"type": "strin"}}}
    field, message = refusal({"regions": REGION, "tools": [tool(parameters)]})
    assert field == "tools[0].parameters.properties.when.type"
    assert "2020-12" in message
    draft7_items = {"type": "object", "properties": {"list": {"type": "array", "items": [{"type": "string"}]}}}
    field, _ = refusal({"regions": REGION, "tools": [tool(draft7_items)]})
    assert field == "tools[0].parameters.properties.list.items"


@pytest.mark.parametrize("where, parameters", [
    ("tools[0].parameters.properties.a.$ref",
     {"type": "object", "properties": {"a": {"$ref": "http://127.0.0.1:9/x"}}}),
    ("tools[0].parameters.$ref", {"type": "object", "$ref": "other.json#/a"}),
    ("tools[0].parameters.allOf[0].$dynamicRef", {"type": "object", "allOf": [{"$dynamicRef": "https://x/y#m"}]}),
    ("tools[0].parameters.$defs.a.$id", {"type": "object", "$defs": {"a": {"$id": "https://evil.example/"}}}),
    ("tools[0].parameters.$schema", {"type": "object", "$schema": "http://json-schema.org/draft-07/schema#"}),
])
def test_references_out_of_the_schema_are_refused_naming_the_keyword(where, parameters):
    field, message = refusal({"regions": REGION, "tools": [tool(parameters)]})
    assert field == where
    assert "$" in message


def test_references_inside_the_schema_and_look_alike_data_are_accepted():
    parameters = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {"city": {"type": "string", "maxLength": 40}},
        "properties": {"from": {"$ref": "#/$defs/city"}, "to": {"$ref": "#/$defs/city"},
                       "$ref": {"type": "string"},  # a property may be called $ref
                       "note": {"const": {"$ref": "http://example.com/not-a-reference"}}},  # data, not a schema
    }
    spec = VoiceAgentSpec.model_validate({"regions": REGION, "tools": [tool(parameters)]})
    assert spec.tools[0].parameters["properties"]["from"] == {"$ref": "#/$defs/city"}

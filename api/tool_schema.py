"""The rules a tool's parameters schema (tenant JSON Schema) must follow, and a validator that never fetches.

Checked at admission in the api model, so the gateway, the operator and the worker refuse the same schemas:
- bounded shape: at most MAX_TOOL_SCHEMA_BYTES of JSON, MAX_TOOL_SCHEMA_DEPTH levels, MAX_TOOL_SCHEMA_NODES values;
- a valid JSON Schema 2020-12 document (meta-validated by jsonschema-rs: ~0.05 ms for a schema where the Python
  jsonschema takes ~25 ms, and 32 tools of 8 KiB each must not cost seconds; its regexes are RE2's to judge);
- self-contained: `$ref`/`$dynamicRef` only to a place inside the schema (`#...`), no `$id`, and `$schema` only
  the 2020-12 dialect. jsonschema's default registry would fetch any other URI over the network, from the worker,
  outside the outbound policy; `self_contained_registry` refuses every retrieval in case a schema slipped through.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import jsonschema_rs
import referencing
import referencing.exceptions
from jsonschema_specifications import REGISTRY as SPECIFICATIONS

from voxfleet.api.field_problem import FieldProblem

MAX_TOOL_SCHEMA_BYTES = 8192
MAX_TOOL_SCHEMA_DEPTH = 32
MAX_TOOL_SCHEMA_NODES = 1024
DIALECT = "https://json-schema.org/draft/2020-12/schema"

# Keywords whose values are data, not schemas: a "$ref" inside them is a value like any other.
_DATA_KEYWORDS = frozenset({"enum", "const", "default", "examples", "required", "dependentRequired", "type",
                            "title", "description", "format", "$comment", "contentMediaType",
                            "contentEncoding"})
# Keywords whose values map names to schemas: the names are anyone's (a property may be called "$ref").
_NAME_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})


def _values_with_depth(value: Any) -> Iterator[tuple[Any, int]]:
    """Every value inside a JSON value with its nesting depth (the value itself is 1), walked without recursion,
    so a caller can stop at the first excess before the rest is visited."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        yield node, depth
        if isinstance(node, dict):
            stack.extend((item, depth + 1) for item in node.values())
        elif isinstance(node, list):
            stack.extend((item, depth + 1) for item in node)


def check_shape(schema: Any) -> None:
    """Depth and number of values, stopping at the first excess (cheap enough for the request's own parse), then
    the size. Raises ValueError."""
    for nodes, (_node, depth) in enumerate(_values_with_depth(schema), start=1):
        if nodes > MAX_TOOL_SCHEMA_NODES:
            raise ValueError(f"parameters schema has more than {MAX_TOOL_SCHEMA_NODES} values (keys' values, list"
                             " items); simplify it")
        if depth > MAX_TOOL_SCHEMA_DEPTH:
            raise ValueError(f"parameters schema is nested deeper than {MAX_TOOL_SCHEMA_DEPTH} levels; flatten it")
    if len(json.dumps(schema)) > MAX_TOOL_SCHEMA_BYTES:
        raise ValueError(f"parameters schema is larger than {MAX_TOOL_SCHEMA_BYTES} bytes")


def check_nesting(value: Any, what: str, max_depth: int = MAX_TOOL_SCHEMA_DEPTH) -> None:
    """Raises ValueError when a JSON value nests deeper than max_depth."""
    if any(depth > max_depth for _node, depth in _values_with_depth(value)):
        raise ValueError(f"{what} nest deeper than {max_depth} levels; flatten them")


def _schema_positions(node: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every object in a schema position (the root, subschemas, and anything under unknown keywords), with its
    path; data keywords and the names of name maps are left out."""
    if isinstance(node, list):
        for index, item in enumerate(node):
            yield from _schema_positions(item, f"{path}[{index}]")
        return
    if not isinstance(node, dict):
        return
    yield path, node
    for key, value in node.items():
        if key in _DATA_KEYWORDS:
            continue
        if key in _NAME_MAPS and isinstance(value, dict):
            for name, subschema in value.items():
                yield from _schema_positions(subschema, f"{path}.{key}.{name}")
        else:
            yield from _schema_positions(value, f"{path}.{key}")


def check_self_contained(schema: Any, field: str) -> None:
    """Raises FieldProblem (field is the schema's own path, e.g. tools[0].parameters) at the first reference
    that leaves the schema."""
    for path, node in _schema_positions(schema, field):
        for keyword in ("$ref", "$dynamicRef"):
            if keyword in node:
                target = node[keyword]
                if not isinstance(target, str) or not target.startswith("#"):
                    raise FieldProblem(f"{path}.{keyword}", f"{keyword} may only point inside this schema (a"
                                                            " '#...' fragment such as '#/$defs/name'); put the"
                                                            " referenced schema under $defs")
        if "$id" in node:
            raise FieldProblem(f"{path}.$id", "$id is not allowed: a tool's schema is one self-contained"
                                              " document; use $anchor to name a subschema")
        if "$schema" in node and node["$schema"] != DIALECT:
            raise FieldProblem(f"{path}.$schema", f"only the JSON Schema 2020-12 dialect ({DIALECT}) is"
                                                  " supported; remove $schema or set it to that URI")


def _refuse_retrieval(uri: str) -> referencing.Resource:
    raise referencing.exceptions.NoSuchResource(ref=uri)


def self_contained_registry() -> referencing.Registry:
    """The JSON Schema specifications (local copies) and nothing else: any other URI is refused, never fetched."""
    return SPECIFICATIONS.combine(referencing.Registry(retrieve=_refuse_retrieval))  # type: ignore[call-arg]


def check_meta(schema: Any, field: str) -> None:
    """Raises FieldProblem when the schema is not a valid JSON Schema 2020-12 document. Run it after
    check_self_contained: that one leaves only the 2020-12 dialect (no $schema naming another document)."""
    try:
        jsonschema_rs.meta.validate(schema)
    except jsonschema_rs.ValidationError as error:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.instance_path)
        raise FieldProblem(f"{field}{where}", f"not a valid JSON Schema 2020-12: {error.message[:300]}") from None
    except jsonschema_rs.ReferencingError as error:
        raise FieldProblem(f"{field}.$schema", f"unknown dialect ({str(error)[:200]}); remove $schema") from None


def schema_patterns(schema: Any, field: str) -> Iterator[tuple[str, str]]:
    """(path, pattern) of every regex the schema holds: `pattern` values and `patternProperties` names."""
    for path, node in _schema_positions(schema, field):
        if isinstance(node.get("pattern"), str):
            yield f"{path}.pattern", node["pattern"]
        if isinstance(node.get("patternProperties"), dict):
            for pattern in node["patternProperties"]:
                yield f"{path}.patternProperties", pattern

"""Specs that cost the most to check, within the limits and just past them: for the budget tests, the gateway's
isolation test and bench/tenant_isolation_bench.py. Every spec is distinct per `seed`, so no cache helps."""

from __future__ import annotations

import functools
import random
from typing import Any

from voxfleet.api.tenant_regex import SPEC_PROGRAM_BUDGET, compile_pattern

REGION = "us-east"


def issue_spec(seed: str, region: str = REGION) -> dict[str, Any]:
    """Issue 16's spec: 64 intents x 16 distinct patterns of a few hundred repetitions of a Unicode class (each
    ~0.2 s to compile without a cap; ~4 min in all)."""
    intents = [{"name": f"i{i}", "patterns": [f"{seed}i{i}p{j}" + r"\pL{400}" for j in range(16)], "reply": "ok"}
               for i in range(64)]
    return {"regions": [{"name": region, "minWorkers": 0, "maxWorkers": 1}], "intents": intents}


def _heavy(seed: str, index: int, repeats: int) -> str:
    return f"{seed}h{index}" + r"\pL{%d}" % repeats


def fresh_seed() -> str:
    """Nine digits: every digit compiles to the same RE2 program size, so one layout serves every seed."""
    return str(random.randrange(10 ** 8, 10 ** 9))


@functools.lru_cache(maxsize=None)
def _heavy_layout(seed_length: int) -> tuple[int, ...]:
    """Repeat counts of the heavy patterns that fill the budget, measured once for digit seeds of this length."""
    reference = "0" * seed_length
    left = SPEC_PROGRAM_BUDGET - 64 * 16 * 40  # room for the small patterns
    layout: list[int] = []
    for index in range(64):
        for repeats in (38, 20, 10, 5, 2, 1):
            size = compile_pattern(_heavy(reference, index, repeats), case_sensitive=False).programsize
            if size <= left:
                layout.append(repeats)
                left -= size
                break
        else:
            break
    return tuple(layout)


def worst_accepted_spec(seed: str, region: str = REGION) -> dict[str, Any]:
    """The most RE2 compiling a spec may ask for: distinct patterns filling the spec's program budget (each near
    the per-pattern cap), the remaining intents and patterns filled with small distinct ones, plus tools with
    patterns in their schemas. Accepted. `seed`: digits (fresh_seed()), so the layout is measured only once."""
    assert seed.isdigit(), "digit seeds keep every pattern's program size the same"
    heavy = [_heavy(seed, index, repeats) for index, repeats in enumerate(_heavy_layout(len(seed)))]
    intents = []
    for i in range(64):
        patterns = [heavy[i]] if i < len(heavy) else []
        patterns += [f"{seed} n{i} q{j} [a-z]+" for j in range(16 - len(patterns))]
        intents.append({"name": f"i{i}", "patterns": patterns, "reply": "ok"})
    properties = {f"p{k}": {"type": "string", "maxLength": 40, "pattern": f"^{seed}[a-z]{{1,{k + 1}}}$"}
                  for k in range(12)}
    tools = [{"name": f"t{t}", "http": {"url": f"https://tools.example.com/{t}"},
              "parameters": {"type": "object", "properties": properties, "required": ["p0"]}} for t in range(4)]
    return {"regions": [{"name": region, "minWorkers": 0, "maxWorkers": 1}], "intents": intents, "tools": tools}


def over_budget_spec(seed: str, region: str = REGION) -> dict[str, Any]:
    """Within every per-field limit, but its patterns together compile past the spec's budget."""
    intents = [{"name": f"i{i}", "patterns": [_heavy(seed, i * 16 + j, 38) for j in range(16)], "reply": "ok"}
               for i in range(64)]
    return {"regions": [{"name": region, "minWorkers": 0, "maxWorkers": 1}], "intents": intents}


def largest_spec(seed: str, region: str = REGION) -> dict[str, Any]:
    """Every list at its longest and every string at its longest (what the per-field limits allow a tenant to
    write through the gateway), patterns small so the RE2 budget holds."""
    def text(n: int, tag: str) -> str:
        return (tag + "-" + "x" * n)[:n]
    params = {"type": "object", "properties": {}}
    k = 0
    while len(__import__("json").dumps(params)) < 8192 - 120:
        params["properties"][f"{seed[:8]}p{k}"] = {"type": "string", "description": "d" * 60}
        k += 1
    tools = [{"name": f"t{t}", "description": text(1024, f"{seed}t{t}"), "parameters": params,
              "http": {"url": "https://tools.example.com/" + "a" * 2000,
                       "headers": [{"name": f"h{h}", "value": "v" * 1024} for h in range(16)]},
              "filler": {"say": "s" * 300}} for t in range(32)]
    intents = [{"name": f"i{i}", "keywords": [text(100, f"k{j}") for j in range(32)],
                "patterns": [f"{seed}i{i}p{j}" + "a" * 200 for j in range(16)], "reply": text(2000, "r"),
                "toolCall": {"name": "t0", "arguments": {"a": "b" * 4000}}} for i in range(64)]
    return {"greeting": "g" * 1000, "systemPrompt": "s" * 16384, "tools": tools, "intents": intents,
            "regions": [{"name": region if r == 0 else f"r{r}", "minWorkers": 0, "maxWorkers": 1} for r in range(10)]}


def spec_of_size(seed: str, size: int, region: str = REGION) -> dict[str, Any]:
    """A cheap-to-check spec of about `size` bytes of compact JSON (long replies and keywords)."""
    import json

    spec: dict[str, Any] = {"regions": [{"name": region, "minWorkers": 0, "maxWorkers": 1}], "intents": []}
    while True:
        index = len(spec["intents"])
        intent = {"name": f"i{index}", "keywords": [f"{seed} {index} {k} " + "k" * 80 for k in range(32)],
                  "reply": "r" * 2000}
        grown = len(json.dumps(spec, separators=(",", ":"))) + len(json.dumps(intent, separators=(",", ":"))) + 1
        if grown > size or index == 63:
            break
        spec["intents"].append(intent)
    spec["systemPrompt"] = ""
    room = size - len(json.dumps(spec, separators=(",", ":")))
    spec["systemPrompt"] = "p" * max(0, min(16384, room))
    return spec

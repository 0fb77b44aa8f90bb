"""The JSON Schema of scenario files, generated from the models and checked in beside them.

    python -m voxfleet.evaluation.scenario_schema            # rewrite scenario-suite.schema.json
    python -m voxfleet.evaluation.scenario_schema --check    # exit 1 when the checked-in copy is stale

Editors pick it up from a first line `# yaml-language-server: $schema=<path or URL>` in a scenario file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from voxfleet.evaluation.scenario_models import ScenarioSuite

SCHEMA_PATH = Path(__file__).with_name("scenario-suite.schema.json")
SCHEMA_ID = "https://voxfleet.dev/schemas/scenario-suite.schema.json"


def suite_schema() -> dict[str, Any]:
    schema = _without_generated_titles(ScenarioSuite.model_json_schema(by_alias=True, mode="validation"))
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID,
            **schema, "title": "voxfleet scenario suite"}


def _without_generated_titles(node: Any) -> Any:
    """Pydantic titles every property after its name ("Atms"); descriptions say more, so editors show those."""
    if isinstance(node, dict):
        return {key: _without_generated_titles(value) for key, value in node.items()
                if not (key == "title" and isinstance(value, str))}
    if isinstance(node, list):
        return [_without_generated_titles(item) for item in node]
    return node


def render() -> str:
    return json.dumps(suite_schema(), indent=2, sort_keys=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m voxfleet.evaluation.scenario_schema", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 when the checked-in schema is stale")
    args = parser.parse_args(argv)
    if args.check:
        if not SCHEMA_PATH.exists() or SCHEMA_PATH.read_text() != render():
            print(f"{SCHEMA_PATH} is stale: run python -m voxfleet.evaluation.scenario_schema", file=sys.stderr)
            return 1
        return 0
    SCHEMA_PATH.write_text(render())
    print(f"wrote {SCHEMA_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

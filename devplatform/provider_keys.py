"""Cloud providers for `voxfleet dev` when a `.env` file holds their API keys.

The cloud examples (examples/*.yaml other than the offline demo) each carry a Secret of placeholder keys and
the VoiceAgents that use it. For each example whose provider keys are all in `.env`, the local platform applies
the example with the Secret filled in from there; an example that needs more (a key that is missing, a
self-hosted model at a private `baseUrl`) is skipped with a line that says why. Key values are never printed.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from voxfleet.api import labels

# Secret key (as the examples name them) -> the variable in .env that holds it.
PROVIDER_ENV = {
    "deepgram": "DEEPGRAM_API_KEY",
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "cartesia": "CARTESIA_API_KEY",
    "elevenlabs": "ELEVENLABS_API_KEY",
}
OFFLINE_EXAMPLES = ("offline-demo.yaml", "tenants.yaml")
MAX_ENV_FILE_BYTES = 64 * 1024
_ENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines (``export`` prefixes, comments, single or double quotes) as docker-compose and
    python-dotenv read them; a missing file is empty."""
    try:
        text = path.read_text()[:MAX_ENV_FILE_BYTES]
    except FileNotFoundError:
        return {}
    values: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _ENV_LINE.match(line)
        if not match:
            continue
        name, value = match.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[name] = value
    return values


@dataclass
class CloudExample:
    path: Path
    documents: list[dict]  # the example with its Secret filled in, ready to apply
    agents: list[tuple[str, str]] = field(default_factory=list)  # (namespace, name)

    @property
    def name(self) -> str:
        return self.path.name


def cloud_examples(examples_dir: Path, env: dict[str, str]) -> tuple[list[CloudExample], list[str]]:
    """The examples `.env` can run, and one line per example it can't (saying what is missing)."""
    runnable, skipped = [], []
    for path in sorted(examples_dir.glob("*.yaml")):
        if path.name in OFFLINE_EXAMPLES:
            continue
        documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
        agents = [d for d in documents if d.get("kind") == "VoiceAgent"]
        if not agents:
            continue
        self_hosted = sorted({stage.get("baseUrl") for agent in agents
                              for stage in (agent.get("spec", {}).get("pipeline") or {}).values()
                              if isinstance(stage, dict) and stage.get("baseUrl")})
        if self_hosted:
            skipped.append(f"{path.name}: needs a self-hosted model at {', '.join(self_hosted)}, which the local "
                           f"platform does not run")
            continue
        missing = sorted({PROVIDER_ENV[key] for d in documents if d.get("kind") == "Secret"
                          for key in (d.get("stringData") or {}) if key in PROVIDER_ENV and not env.get(PROVIDER_ENV[key])})
        if missing:
            skipped.append(f"{path.name}: add {', '.join(missing)} to .env to run it")
            continue
        for document in documents:
            if document.get("kind") == "Secret":
                # Only Secrets marked as the tenant's may be named by an agent (the examples carry the mark; it is
                # set here too, so an example edited without it still runs as the tenant's).
                document.setdefault("metadata", {}).setdefault("labels", {})[labels.TENANT_SECRET] = \
                    labels.TENANT_SECRET_VALUE
                document["stringData"] = {key: env[PROVIDER_ENV[key]] if key in PROVIDER_ENV
                                          else f"dev-{secrets.token_urlsafe(12)}"  # the example's own backends
                                          for key in (document.get("stringData") or {})}
        runnable.append(CloudExample(path=path, documents=documents,
                                     agents=[(a["metadata"]["namespace"], a["metadata"]["name"]) for a in agents]))
    return runnable, skipped

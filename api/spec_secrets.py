"""Every Secret key a VoiceAgent spec names, with the field that names it: the gateway refuses a reference to
anything but the tenant's own secrets when the spec is written, the operator when it is applied with kubectl, and
both must find the same references.
"""

from __future__ import annotations

from voxfleet.api.common import SecretKeyRef
from voxfleet.api.voiceagent import VoiceAgentSpec


def secret_references(spec: VoiceAgentSpec, *, by_name: bool = False) -> list[tuple[str, SecretKeyRef]]:
    """(field path relative to the spec, ref) for every Secret key the agent's pods would read. Paths index lists
    by position as the REST API's error details do (`tools[0].http.headers[1].secretKeyRef`), or with
    `by_name` by their map keys as a kubectl user reads the spec (`tools[lookup].http.headers[X-Key].secretKeyRef`)."""
    found: list[tuple[str, SecretKeyRef]] = []
    for stage in ("stt", "llm", "tts"):
        ref = getattr(spec.pipeline, stage).secret_ref
        if ref is not None:
            found.append((f"pipeline.{stage}.secretRef", ref))
    for t, tool in enumerate(spec.tools):
        for h, header in enumerate(tool.http.headers):
            if header.secret_key_ref is not None:
                where = (f"tools[{tool.name}].http.headers[{header.name}]" if by_name
                         else f"tools[{t}].http.headers[{h}]")
                found.append((f"{where}.secretKeyRef", header.secret_key_ref))
    for e, var in enumerate(spec.worker.env):
        if var.secret_key_ref is not None:
            found.append((f"worker.env[{var.name if by_name else e}].secretKeyRef", var.secret_key_ref))
    return found

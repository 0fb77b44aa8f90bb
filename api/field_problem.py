"""A problem with one field of a spec, found by a check that looks at more than that field.

pydantic reports a model validator's error at the model itself; raising a FieldProblem (a ValueError, so pydantic
still collects it) carries the exact field path, relative to the spec, for the gateway's 422 details and the
operator's condition. `field_problem_of` finds it again in a pydantic error.
"""

from __future__ import annotations

from typing import Any


class FieldProblem(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


def field_problem_of(error: dict[str, Any]) -> FieldProblem | None:
    """The FieldProblem behind one entry of `ValidationError.errors()`, if it was one."""
    cause = (error.get("ctx") or {}).get("error")
    return cause if isinstance(cause, FieldProblem) else None

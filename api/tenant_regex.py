"""Tenant RE2 patterns, compiled under budgets and cached by content.

RE2 matches in linear time, but compiling is not free: a few hundred repetitions of a Unicode class (`\\pL{400}`,
ten characters) make a program of ~480,000 instructions that takes ~0.2 s to build, holding the GIL. A spec may
hold 1,024 intent patterns plus the patterns of its tools' schemas, so every pattern is compiled with a small
memory cap (a huge program fails in milliseconds instead of being built) and the whole spec shares one budget of
program size. Gateway, operator and worker compile with the same options, so what admission accepts is what the
worker runs.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import re2

from voxfleet.api.field_problem import FieldProblem

# One pattern may use at most this much RE2 memory (about 48,000 instructions): a realistic pattern needs a few
# hundred; one `\pL` is ~1,200.
PATTERN_MAX_MEM = 1 << 20
# Every RE2 pattern of one spec together (intents' patterns and the tools' parameter schemas): at most this many
# instructions of compiled program (re2's programsize). Compiling the budget takes ~0.1 s on one core.
SPEC_PROGRAM_BUDGET = 200_000
# Compiled patterns kept for reuse, bounded by their total program size (~16 bytes an instruction).
CACHE_PROGRAM_SIZE = 2_000_000


class PatternRefused(ValueError):
    """The pattern is not valid RE2, or its program is larger than one pattern may be."""


def _options(case_sensitive: bool) -> Any:
    options = re2.Options()
    options.case_sensitive = case_sensitive
    options.max_mem = PATTERN_MAX_MEM
    options.log_errors = False  # RE2 would print the (tenant's) pattern on stderr
    return options


class _CompiledCache:
    """Compiled patterns (or why they failed) by (pattern, case_sensitive), least recently used out first."""

    def __init__(self, max_program_size: int):
        self.max_program_size = max_program_size
        self._entries: OrderedDict[tuple[str, bool], Any] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()  # the gateway checks specs in a thread or process pool

    def compile(self, pattern: str, case_sensitive: bool) -> Any:
        key = (pattern, case_sensitive)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                found = self._entries[key]
                if isinstance(found, PatternRefused):
                    raise found
                return found
        try:
            compiled: Any = re2.compile(pattern, _options(case_sensitive))
            size = compiled.programsize
        except re2.error as error:
            compiled, size = PatternRefused(_explain(error)), 1
        with self._lock:
            self._entries[key] = compiled
            self._size += size
            while self._size > self.max_program_size and len(self._entries) > 1:
                _, old = self._entries.popitem(last=False)
                self._size -= 1 if isinstance(old, PatternRefused) else old.programsize
        if isinstance(compiled, PatternRefused):
            raise compiled
        return compiled


def _explain(error: Exception) -> str:
    text = error.args[0] if error.args else str(error)
    text = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
    if "pattern too large" in text:
        return (f"its RE2 program is larger than one pattern may be ({PATTERN_MAX_MEM // 1024} KiB of RE2 memory);"
                " use smaller repeat counts or narrower classes (e.g. [a-z] or \\w instead of \\pL)")
    return f"not valid RE2: {text}"


_CACHE = _CompiledCache(CACHE_PROGRAM_SIZE)


def compile_pattern(pattern: str, *, case_sensitive: bool = True) -> Any:
    """The compiled pattern (cached by content); PatternRefused when it is not valid RE2 or too large."""
    return _CACHE.compile(pattern, case_sensitive)


class ProgramBudget:
    """What is left of one spec's RE2 budget; `compile` charges each pattern and names the field that broke it."""

    def __init__(self, total: int = SPEC_PROGRAM_BUDGET):
        self.total = total
        self.used = 0

    def compile(self, pattern: str, field: str, *, case_sensitive: bool = True) -> Any:
        try:
            compiled = compile_pattern(pattern, case_sensitive=case_sensitive)
        except PatternRefused as refused:
            raise FieldProblem(field, f"pattern '{pattern[:80]}': {refused}") from None
        self.used += compiled.programsize
        if self.used > self.total:
            raise FieldProblem(field, f"the spec's RE2 patterns together compile to more than {self.total}"
                                      f" instructions (this one adds {compiled.programsize}); use fewer or simpler"
                                      " patterns (\\pL alone is ~1,200 instructions, [a-z] about 10)")
        return compiled

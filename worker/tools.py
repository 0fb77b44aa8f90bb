"""HTTP tools: run the tool an LLM called, safely, and turn its result into words the agent can say.

A tool is tenant configuration and its endpoint is tenant-run, so everything here is defensive: arguments are
validated against the tool's JSON Schema (RE2 for its patterns, compiled under the spec's budget; references
resolved only inside the schema, never fetched) before anything is sent, the URL goes through
the outbound policy (checked and pinned per connection, redirects re-checked), the call has the tool's
timeout and a bounded response, and every failure becomes an apology outcome instead of an exception into the
pipeline. A non-idempotent tool never runs twice for one call id; an idempotent one may retry once when the
connection failed. Every request carries an `Idempotency-Key` (the session's call number when the session gives
one, voxfleet.worker.tool_ledger: stable across recovery), so a tool server can deduplicate too. Header secrets
come from the worker's env (read once) and are never logged.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import math
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import jsonschema
import referencing.exceptions
import structlog
from jsonschema import Draft202012Validator, ValidationError
from prometheus_client import CollectorRegistry, Counter, Histogram

from voxfleet.api import tool_schema
from voxfleet.api.common import SecretKeyRef
from voxfleet.api.field_problem import FieldProblem
from voxfleet.api.outbound import OutboundPolicy, OutboundURLRefused
from voxfleet.api.tenant_regex import ProgramBudget, compile_pattern
from voxfleet.api.voiceagent import MAX_TOOL_ARGUMENT_BYTES, Tool
from voxfleet.api.worker_config import read_secret
from voxfleet.worker.telemetry import metrics as worker_metrics

log = structlog.get_logger("voxfleet.worker.tools")

MAX_RESPONSE_BYTES = 64 * 1024
MAX_SPOKEN_CHARS = 300
MAX_REMEMBERED_CALLS = 1024
USER_AGENT = "voxfleet-tool/0.1"

APOLOGIES = {
    "timeout": "Sorry, that is taking too long right now. Please try again in a moment.",
    "invalid_arguments": "Sorry, I didn't get all the details I need for that.",
    "unknown_tool": "Sorry, I can't do that.",
}
APOLOGY = "Sorry, I couldn't complete that just now."

OnSlow = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class ToolOutcome:
    """What a tool call came to. `speakable` is always safe to say: the result read naturally, or an apology."""

    ok: bool
    speakable: str
    result: Any  # the tool's JSON (or text) for the LLM context; {"error": ..., "message": ...} on failure
    error: str | None = None  # invalid_arguments, unknown_tool, refused, timeout, unreachable, http_status,
    #                           too_large, cancelled
    status: int | None = None
    latency_s: float = 0.0


# -- arguments ---------------------------------------------------------------------------------------------------


def _re2(pattern: str) -> Any:
    # The same options and per-pattern memory cap as admission, cached by content (api/tenant_regex.py).
    return compile_pattern(pattern)


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Any:
    if validator.is_type(instance, "string") and not _re2(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(validator: Any, patterns: dict[str, Any], instance: Any, schema: Any) -> Any:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for key, value in instance.items():
            if _re2(pattern).search(key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(validator: Any, additional: Any, instance: Any, schema: Any) -> Any:
    if not validator.is_type(instance, "object"):
        return
    declared = schema.get("properties", {})
    patterns = [_re2(p) for p in schema.get("patternProperties", {})]
    extras = sorted(k for k in instance if k not in declared and not any(p.search(k) for p in patterns))
    if validator.is_type(additional, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], additional, path=extra)
    elif not additional and extras:
        yield ValidationError(f"unexpected properties: {', '.join(map(repr, extras))}")


# Tenant schemas are hostile: their regexes run on RE2 (linear time), never on Python's backtracking `re`.
ToolArgumentsValidator = jsonschema.validators.extend(Draft202012Validator, {
    "pattern": _pattern, "patternProperties": _pattern_properties, "additionalProperties": _additional_properties})


def _walk_keys(node: Any) -> set[str]:
    keys: set[str] = set()
    if isinstance(node, dict):
        keys.update(node)
        for value in node.values():
            keys |= _walk_keys(value)
    elif isinstance(node, list):
        for value in node:
            keys |= _walk_keys(value)
    return keys


def argument_validator(schema: dict[str, Any]) -> Any:
    """A validator for the schema whose references resolve only inside it (and the JSON Schema specifications):
    jsonschema's default registry would fetch any other URI, unbounded and outside the outbound policy."""
    return ToolArgumentsValidator(schema, registry=tool_schema.self_contained_registry())


def build_validator(tool: Tool, budget: ProgramBudget | None = None) -> Any:
    """The tool's argument validator; a clear ValueError when its schema is not usable. Admission refuses such
    schemas already; this is the worker's own check for one that got past it (e.g. admitted by an older
    release). `budget` is the spec's RE2 budget, shared by the runner's tools."""
    try:
        tool_schema.check_shape(tool.parameters)
        tool_schema.check_self_contained(tool.parameters, "parameters")
        tool_schema.check_meta(tool.parameters, "parameters")
    except ValueError as error:
        raise ValueError(f"tool {tool.name!r}: {error}") from None
    keys = _walk_keys(tool.parameters)
    if "unevaluatedProperties" in keys and "patternProperties" in keys:
        # jsonschema evaluates that pair with Python's re; refuse rather than run tenant regexes on it.
        raise ValueError(f"tool {tool.name!r}: unevaluatedProperties together with patternProperties is not"
                         " supported")
    budget = budget or ProgramBudget()
    for path, pattern in tool_schema.schema_patterns(tool.parameters, "parameters"):
        try:
            budget.compile(pattern, path)
        except FieldProblem as problem:
            raise ValueError(f"tool {tool.name!r}: {problem}") from None
    return argument_validator(tool.parameters)


def _normalise_arguments(arguments: Mapping[str, Any] | str | None) -> dict[str, Any]:
    """Arguments as a plain JSON object (from the LLM's mapping or its JSON text), bounded in size."""
    if arguments is None:
        return {}
    text = arguments if isinstance(arguments, str) else json.dumps(dict(arguments), default=str)
    if len(text.encode()) > MAX_TOOL_ARGUMENT_BYTES:
        raise ValueError(f"arguments are larger than {MAX_TOOL_ARGUMENT_BYTES} bytes")
    try:
        value = json.loads(text) if text.strip() else {}
    except ValueError as error:
        raise ValueError(f"arguments are not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise ValueError("arguments must be a JSON object")
    return value


def _query_params(arguments: dict[str, Any]) -> list[tuple[str, str]]:
    """GET/DELETE arguments as a query string: scalars as text, lists repeated, objects as JSON."""
    params: list[tuple[str, str]] = []
    for name, value in arguments.items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, bool):
                params.append((name, "true" if item else "false"))
            elif item is None:
                params.append((name, ""))
            elif isinstance(item, (dict, list)):
                params.append((name, json.dumps(item, separators=(",", ":"))))
            else:
                params.append((name, str(item)))
    return params


# -- results made speakable --------------------------------------------------------------------------------------

_SPEECH_KEYS = ("speech", "say", "spoken", "speakable", "message", "text", "answer", "summary", "result")
_URL = re.compile(r"(?:https?|ftp|wss?)://\S+|www\.\S+", re.IGNORECASE)
_ISO_DATETIME = re.compile(r"\b(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2})(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?\b")
_UNSPEAKABLE = re.compile(r"[{}\[\]<>\"`*#|\\^~]+")
_SPACES = re.compile(r"\s+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def _words_for_key(key: str) -> str:
    return _CAMEL.sub(" ", str(key)).replace("_", " ").replace("-", " ").strip().lower()


def _number(value: int | float) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            return ""
        if value.is_integer():
            return str(int(value))
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return str(value)


def _join(items: list[str]) -> str:
    items = [item for item in items if item]
    if len(items) > 6:
        items = items[:5] + [f"{len(items) - 5} more"]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _clean_text(text: str) -> str:
    text = text[: MAX_SPOKEN_CHARS * 4]
    text = _URL.sub("", text)
    text = _ISO_DATETIME.sub(r"\1 at \2", text)
    text = _UNSPEAKABLE.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def _spoken(value: Any, depth: int = 0) -> str:
    if depth > 4 or value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return _number(value)
    if isinstance(value, str):
        return _clean_text(value)
    if isinstance(value, list):
        return _join([_spoken(item, depth + 1) for item in value[:50]])
    if isinstance(value, dict):
        for key in _SPEECH_KEYS:
            if isinstance(value.get(key), (str, int, float)) and not isinstance(value.get(key), bool):
                return _spoken(value[key], depth + 1)
        parts = []
        for key, item in list(value.items())[:20]:
            words = _spoken(item, depth + 1)
            if words:
                parts.append(f"{_words_for_key(key)} {words}" if isinstance(item, (dict, list))
                             else f"{_words_for_key(key)} is {words}")
        return _join(parts)
    return _clean_text(str(value))


def speakable(result: Any, limit: int = MAX_SPOKEN_CHARS) -> str:
    """A tool result as a short sentence: no braces or URLs, lists read as "a, b and c", bounded length."""
    text = _spoken(result)
    if len(text) <= limit:
        return text
    cut = text[:limit]
    sentence_end = max(cut.rfind(". "), cut.rfind("! "), cut.rfind("? "))
    if sentence_end >= limit // 2:
        return cut[: sentence_end + 1]
    return cut.rsplit(" ", 1)[0].rstrip(",;:") + "."


# -- metrics -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolMetrics:
    calls: Counter
    seconds: Histogram


@functools.lru_cache(maxsize=None)
def tool_metrics(registry: CollectorRegistry = worker_metrics.REGISTRY) -> ToolMetrics:
    """The tool metrics in a registry (the worker's own by default, where the latency histogram lives)."""
    labels = (*worker_metrics.LABELS, "tool")
    seconds = worker_metrics.TOOL_CALL if registry is worker_metrics.REGISTRY else Histogram(
        "voxfleet_worker_tool_call_seconds", "HTTP tool call duration.", labels, registry=registry,
        buckets=worker_metrics.LATENCY_BUCKETS)
    calls = Counter("voxfleet_worker_tool_calls_total", "Tool calls by result (ok or the error code).",
                    (*labels, "result"), registry=registry)
    return ToolMetrics(calls=calls, seconds=seconds)


# -- the runner --------------------------------------------------------------------------------------------------


@dataclass
class _PreparedTool:
    tool: Tool
    validator: Any
    headers: dict[str, str]
    refusal: OutboundURLRefused | None


@dataclass
class ToolLabels:
    tenant: str = ""
    agent: str = ""
    region: str = ""

    def for_tool(self, tool: str) -> dict[str, str]:
        return {"tenant": self.tenant, "agent": self.agent, "region": self.region, "tool": tool}


_RETRYABLE = (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError)


class _ToolFailed(Exception):
    def __init__(self, error: str, message: str, status: int | None = None) -> None:
        self.error, self.message, self.status = error, message, status
        super().__init__(message)


class ToolRunner:
    """Runs a spec's HTTP tools. Build once per worker (or session) and share; `aclose()` when done."""

    def __init__(self, tools: Sequence[Tool], *, policy: OutboundPolicy, labels: ToolLabels | None = None,
                 secret_reader: Callable[[SecretKeyRef], str] = read_secret,
                 registry: CollectorRegistry = worker_metrics.REGISTRY,
                 max_response_bytes: int = MAX_RESPONSE_BYTES) -> None:
        self._policy = policy
        self._labels = labels or ToolLabels()
        self._metrics = tool_metrics(registry)
        self._max_response_bytes = max_response_bytes
        self._tools: dict[str, _PreparedTool] = {}
        budget = ProgramBudget()  # one RE2 budget for all the spec's tool schemas, as at admission
        for tool in tools:
            headers = {"User-Agent": USER_AGENT}
            for header in tool.http.headers:
                headers[header.name] = (header.value if header.secret_key_ref is None
                                        else secret_reader(header.secret_key_ref))
            refusal = None
            try:
                policy.check_url(tool.http.url)
            except OutboundURLRefused as refused:
                refusal = refused
                log.warning("tool URL refused by the outbound policy", tool=tool.name, reason=refused.reason,
                            url=refused.url)
            self._tools[tool.name] = _PreparedTool(tool, build_validator(tool, budget), headers, refusal)
        self._client = policy.httpx_client(timeout=None, limits=httpx.Limits(max_connections=32,
                                                                             max_keepalive_connections=8))
        self._calls: OrderedDict[tuple[str, str, str, str], asyncio.Task[ToolOutcome]] = OrderedDict()

    @property
    def tools(self) -> dict[str, Tool]:
        return {name: prepared.tool for name, prepared in self._tools.items()}

    async def aclose(self) -> None:
        await self._client.aclose()

    async def run(self, tool: Tool | str, arguments: Mapping[str, Any] | str | None, *, call_id: str,
                  on_slow: OnSlow | None = None, scope: str = "", idempotency_key: str | None = None) -> ToolOutcome:
        """Run one tool call. Never raises for the tool's failures; cancelled only by the caller (barge-in on
        an interruptible tool). `on_slow` is awaited once when the call outlasts the tool's filler.afterMs.

        A non-idempotent call runs at most once per (scope, tool, call id, arguments): pass the session id as
        `scope` when the runner serves several sessions, since some OpenAI-compatible servers reuse call ids.
        `idempotency_key` is the request's `Idempotency-Key` (default: the call id)."""
        name = tool if isinstance(tool, str) else tool.name
        prepared = self._tools.get(name)
        header_key = idempotency_key or call_id
        if prepared is None:
            return self._finish(name, call_id, 0.0, _ToolFailed("unknown_tool", f"no tool named {name!r}"))
        if prepared.tool.idempotent:
            return await self._run_once(prepared, arguments, call_id, on_slow, header_key)
        key = (scope, name, call_id, _fingerprint(arguments))
        running = self._calls.get(key)
        if running is not None:
            # The same call again (an LLM or pipeline retry): never send it twice, answer with the first outcome.
            log.info("tool call deduplicated", tool=name, call_id=call_id)
            if running.cancelled():
                return self._outcome_for(_ToolFailed("cancelled", "the call was cancelled"), 0.0)
            return await asyncio.shield(running)
        task = asyncio.ensure_future(self._run_once(prepared, arguments, call_id, on_slow, header_key))
        self._calls[key] = task
        while len(self._calls) > MAX_REMEMBERED_CALLS:
            self._calls.popitem(last=False)
        return await task

    async def _run_once(self, prepared: _PreparedTool, arguments: Mapping[str, Any] | str | None, call_id: str,
                        on_slow: OnSlow | None, idempotency_key: str) -> ToolOutcome:
        tool = prepared.tool
        started = time.monotonic()
        filler = _Filler(on_slow, tool.filler.after_ms / 1000, tool.name, call_id) if on_slow else None
        try:
            try:
                values = _normalise_arguments(arguments)
                errors = sorted(prepared.validator.iter_errors(values), key=lambda e: list(e.path))
            except (ValueError, TypeError) as error:
                raise _ToolFailed("invalid_arguments", str(error)) from None
            except referencing.exceptions.Unresolvable as error:  # a reference out of the schema: never fetched
                raise _ToolFailed("invalid_arguments", f"the tool's schema has an unresolvable reference ({error})"
                                  [:500]) from None
            except RecursionError:  # a schema whose $ref leads back to itself without consuming the arguments
                raise _ToolFailed("invalid_arguments", "the tool's schema refers to itself without end") from None
            if errors:
                where = "/".join(map(str, errors[0].absolute_path)) or "(arguments)"
                raise _ToolFailed("invalid_arguments", f"{where}: {errors[0].message}"[:500])
            if prepared.refusal is not None:
                raise _ToolFailed("refused", str(prepared.refusal))
            async with asyncio.timeout(tool.http.timeout_ms / 1000):
                status, result = await self._send(prepared, values, call_id, idempotency_key)
            failure = None
        except _ToolFailed as failed:
            failure, status, result = failed, failed.status, None
        except TimeoutError:
            failure, status, result = _ToolFailed("timeout", f"no answer within {tool.http.timeout_ms} ms"), None, None
        except asyncio.CancelledError:
            self._finish(tool.name, call_id, time.monotonic() - started,
                         _ToolFailed("cancelled", "the call was cancelled"))
            raise
        finally:
            if filler:
                filler.stop()
        return self._finish(tool.name, call_id, time.monotonic() - started, failure, status, result)

    async def _send(self, prepared: _PreparedTool, values: dict[str, Any], call_id: str,
                    idempotency_key: str) -> tuple[int, Any]:
        tool = prepared.tool
        # Ours last: a spec header of the same name must not take the key a tool server deduplicates on.
        headers = {name: value for name, value in prepared.headers.items() if name.lower() != "idempotency-key"}
        headers["Idempotency-Key"] = idempotency_key
        request = {"params": _query_params(values)} if tool.http.method in ("GET", "DELETE") else {"json": values}
        attempts = 2 if tool.idempotent else 1
        for attempt in range(attempts):
            try:
                async with self._client.stream(tool.http.method, tool.http.url, headers=headers, **request) as reply:
                    body = await self._read_bounded(reply)
                    result = _decode(body, reply.headers.get("content-type", ""))
                    if not reply.is_success:
                        raise _ToolFailed("http_status", f"the tool answered HTTP {reply.status_code}",
                                          reply.status_code)
                    return reply.status_code, result
            except OutboundURLRefused as refused:
                raise _ToolFailed("refused", str(refused)) from None
            except _RETRYABLE as error:
                if attempt + 1 < attempts:
                    log.info("retrying idempotent tool after a connection error", tool=tool.name, call_id=call_id,
                             error=type(error).__name__)
                    continue
                raise _ToolFailed("unreachable", f"could not reach the tool ({type(error).__name__})") from None
            except httpx.TooManyRedirects:
                raise _ToolFailed("unreachable", "the tool redirected too many times") from None
            except httpx.HTTPError as error:
                raise _ToolFailed("unreachable", f"the tool call failed ({type(error).__name__})") from None
        raise AssertionError("unreachable")

    async def _read_bounded(self, reply: httpx.Response) -> bytes:
        declared = reply.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self._max_response_bytes:
            raise _ToolFailed("too_large", f"the response is larger than {self._max_response_bytes} bytes",
                              reply.status_code)
        chunks: list[bytes] = []
        size = 0
        async for chunk in reply.aiter_bytes():
            size += len(chunk)
            if size > self._max_response_bytes:
                raise _ToolFailed("too_large", f"the response is larger than {self._max_response_bytes} bytes",
                                  reply.status_code)
            chunks.append(chunk)
        return b"".join(chunks)

    def _outcome_for(self, failure: _ToolFailed, latency_s: float) -> ToolOutcome:
        return ToolOutcome(ok=False, speakable=APOLOGIES.get(failure.error, APOLOGY),
                           result={"error": failure.error, "message": failure.message}, error=failure.error,
                           status=failure.status, latency_s=latency_s)

    def _finish(self, name: str, call_id: str, latency_s: float, failure: _ToolFailed | None,
                status: int | None = None, result: Any = None) -> ToolOutcome:
        labels = self._labels.for_tool(name)
        outcome_label = "ok" if failure is None else failure.error
        self._metrics.calls.labels(**labels, result=outcome_label).inc()
        if failure is None or failure.error not in ("invalid_arguments", "unknown_tool"):
            self._metrics.seconds.labels(**labels).observe(latency_s)
        # Never log arguments, results or headers: they may carry what the caller said, or secrets.
        log.info("tool call finished", tool=name, call_id=call_id, result=outcome_label, status=status,
                 latency_ms=round(latency_s * 1000, 1))
        if failure is not None:
            return self._outcome_for(failure, latency_s)
        return ToolOutcome(ok=True, speakable=speakable(result), result=result, status=status, latency_s=latency_s)


def _fingerprint(arguments: Mapping[str, Any] | str | None) -> str:
    """The arguments' identity for deduplication: canonical JSON when they parse, their text otherwise."""
    try:
        text = json.dumps(_normalise_arguments(arguments), sort_keys=True, separators=(",", ":"))
    except (ValueError, TypeError):
        text = repr(arguments)[:MAX_TOOL_ARGUMENT_BYTES * 2]
    return hashlib.sha256(text.encode()).hexdigest()


def _decode(body: bytes, content_type: str) -> Any:
    text = body.decode("utf-8", errors="replace")
    if "json" in content_type or text[:1] in ("{", "["):
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


@dataclass
class _Filler:
    """Awaits `on_slow` once if the call is still running after `after_s` seconds."""

    on_slow: OnSlow
    after_s: float
    tool: str
    call_id: str
    _fired: bool = False
    _task: asyncio.Task[None] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self._task = asyncio.ensure_future(self._wait())

    async def _wait(self) -> None:
        await asyncio.sleep(self.after_s)
        self._fired = True
        try:
            await self.on_slow()
        except Exception:  # the filler is a courtesy; its failure must not fail the tool
            log.exception("filler hook failed", tool=self.tool, call_id=self.call_id)

    def stop(self) -> None:
        if self._task is not None and not self._fired:
            self._task.cancel()

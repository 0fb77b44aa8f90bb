"""One logging setup for every voxfleet process: gateway, operator, worker and the local tools (`voxfleet dev`,
`call`, `eval`, `cluster`).

- One stream, one format: structlog events and every stdlib logger (uvicorn, httpx, aiohttp, the LiveKit
  SDK) go through the same processors to one stderr handler; Pipecat's loguru lines are forwarded into it.
  JSON lines in clusters (``log_format="json"``), readable lines on a terminal (``"console"``).
- Correlation: every line carries ``trace_id``/``span_id`` of the current OpenTelemetry span (when there is
  one), the structlog context variables (the worker binds ``session_id`` for a session's task and every task
  it starts, see ``bind_call``) and the process's fixed fields (component, pod, region).
- Errors carry their traceback (``exception``), as plain text: never a rendering with local variables, which
  may hold credentials.
- Redaction is the last step before rendering, so it also covers tracebacks and third-party lines: values of
  fields named like a credential, API keys (``vfk_...``), bearer credentials and JSON Web Tokens (LiveKit
  access tokens) found anywhere in a line.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
from collections.abc import Mapping
from typing import Any, Literal, TextIO

import structlog
from opentelemetry import trace

LogFormat = Literal["json", "console"]

REDACTED = "[redacted]"
# Field names that hold credentials. Only text is blanked: a number under such a name is a count
# (prompt_tokens), never a credential.
SECRET_FIELD_NAMES = re.compile(r"authorization|api[_-]?key|secret|token|password|credential|cookie", re.IGNORECASE)
# Credential shapes found inside any text (a message, an exception, a third-party line).
SECRET_SHAPES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"vfk_[a-z2-7]{12}_[A-Za-z0-9_-]{43}"), "vfk_[redacted]"),  # tenant API keys
    (re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE), r"\1 [redacted]"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), "[redacted jwt]"),
)
ANY_SECRET_SHAPE = re.compile("|".join(f"(?:{shape.pattern})" for shape, _ in SECRET_SHAPES), re.IGNORECASE)
SHORTEST_SHAPE = 14  # "Basic " + 8 characters; the other shapes are longer
MAX_NESTING = 6
LEAD_FIELDS = ("timestamp", "level", "logger", "event", "component")

# Third-party loggers that are chatty or see request details at DEBUG (connection setup, frames, raw headers):
# they never go below INFO, whatever the process's level.
NEVER_DEBUG = ("asyncio", "httpcore", "httpx", "hpack", "h2", "websockets", "urllib3", "aiohttp", "uvicorn",
               "livekit", "grpc", "opentelemetry", "kubernetes", "multipart", "watchfiles")
# Loggers that libraries may have given handlers of their own (a uvicorn.Config with its default log_config).
OWN_HANDLERS = ("uvicorn", "uvicorn.error", "uvicorn.access")
# aiohttp logs every request it serves at INFO: only its warnings and errors, unless the level is debug.
QUIET_UNLESS_DEBUG = ("aiohttp.access",)
# Pipecat (loguru) logs at DEBUG by default and sometimes with conversation content (what the caller said, the
# LLM's messages): only its warnings and errors reach the logs. Call content goes to spans, under the agent's
# recordTranscripts switch, never to logs.
LOGURU_MIN_LEVEL = logging.WARNING
LOGURU_MAX_MESSAGE = 2000

_configured_handler: logging.Handler | None = None


def configure_logging(component: str, *, log_format: LogFormat = "json", level: str = "info",
                      stream: TextIO | None = None, **fixed_fields: str | None) -> None:
    """Set up logging for this process (call once, early; calling again replaces the previous setup).

    ``component`` and ``fixed_fields`` (pod, region, ...) are added to every line; ``None`` values are left out.
    """
    global _configured_handler
    numeric = level_number(level)
    stream = stream or sys.stderr
    fixed = {"component": component, **{k: v for k, v in fixed_fields.items() if v is not None}}
    before_render = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _FixedFields(fixed),
        add_trace_context,
    ]
    render = [structlog.processors.format_exc_info,  # the traceback as text, so redaction sees it
              redact,
              _renderer(log_format, stream)]
    handler = logging.StreamHandler(stream)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=before_render,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *render]))
    root = logging.getLogger()
    if _configured_handler in root.handlers:
        root.removeHandler(_configured_handler)
    # Handlers others installed (logging.basicConfig, a library's own) would print the same record twice, in
    # another format.
    for other in list(root.handlers):
        if isinstance(other, logging.StreamHandler) and getattr(other, "stream", None) in (sys.stderr, sys.stdout):
            root.removeHandler(other)
    root.addHandler(handler)
    root.setLevel(numeric)
    _configured_handler = handler
    for name in OWN_HANDLERS:  # uvicorn's default config gives its loggers their own plain-text handlers
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    for name in NEVER_DEBUG:
        logging.getLogger(name).setLevel(max(numeric, logging.INFO))
    for name in QUIET_UNLESS_DEBUG:
        logging.getLogger(name).setLevel(numeric if numeric <= logging.DEBUG else max(numeric, logging.WARNING))
    logging.captureWarnings(True)

    # structlog events are rendered by structlog itself and written through the same handler (its stream, its
    # lock): no stdlib record per line, which costs several times the rest (see _HandlerWriter).
    structlog.configure(
        processors=[*before_render, *render],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=_HandlerWriterFactory(handler),
        cache_logger_on_first_use=True,
    )
    _forward_loguru(max(numeric, LOGURU_MIN_LEVEL))


def level_number(level: str) -> int:
    """'info' -> logging.INFO; an unknown name is INFO (a typo in a setting must not silence the logs)."""
    return logging.getLevelNamesMapping().get(str(level).upper(), logging.INFO)


def bind_call(**fields: Any) -> None:
    """Bind fields (session_id, tenant, agent) to every line logged from now on by the current task and the
    tasks it starts; a task started earlier, or a sibling, keeps its own context."""
    structlog.contextvars.bind_contextvars(**fields)


def add_trace_context(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """trace_id/span_id of the current OpenTelemetry span (W3C hex), so a line can be found from its trace and
    the other way round. Nothing when no span is current."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event.setdefault("trace_id", format(context.trace_id, "032x"))
        event.setdefault("span_id", format(context.span_id, "016x"))
    return event


def redact(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """Blank credentials: text under a credential-like field name (at any depth), and credential shapes in any
    text. The last processor before the renderer, so nothing added earlier escapes it."""
    for name, value in event.items():
        if name not in WRITTEN_BY_THE_SETUP:
            event[name] = _redacted(name, value, 0)
    return event


PLAIN = (int, float, bool, type(None))
# Fields the processors above write from trusted values (a clock, a level name, a span): nothing to look for.
WRITTEN_BY_THE_SETUP = frozenset({"timestamp", "level", "trace_id", "span_id"})


def _redacted(name: Any, value: Any, depth: int) -> Any:
    if isinstance(value, PLAIN):  # a number under a credential-like name is a count (prompt_tokens)
        return value
    if name is not None and _credential_name(str(name)):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if depth >= MAX_NESTING:
        return REDACTED
    if isinstance(value, Mapping):
        return {key: _redacted(key, item, depth + 1) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_redacted(None, item, depth + 1) for item in value]
    return redact_text(str(value))  # rendered as text anyway: check that text


@functools.lru_cache(maxsize=4096)  # field names repeat: decide each once
def _credential_name(name: str) -> bool:
    return SECRET_FIELD_NAMES.search(name) is not None


def redact_text(text: str) -> str:
    if len(text) < SHORTEST_SHAPE or not ANY_SECRET_SHAPE.search(text):  # almost every value: one search at most
        return text
    for shape, replacement in SECRET_SHAPES:
        text = shape.sub(replacement, text)
    return text


class _HandlerWriter:
    """structlog's end of the one stream: a rendered line written through the stdlib handler's stream under its
    lock, so structlog and stdlib lines never interleave. ``name`` is what structlog.get_logger(name) was given
    (the ``logger`` field)."""

    def __init__(self, handler: logging.StreamHandler, name: str):
        self._handler = handler
        self.name = name

    def msg(self, line: str) -> None:
        with self._handler.lock:
            try:
                self._handler.stream.write(line + "\n")
                self._handler.stream.flush()
            except (OSError, ValueError):  # a closed or broken stream: as logging's handlers do, never raise
                pass

    log = debug = info = warn = warning = error = err = critical = exception = fatal = failure = msg


class _HandlerWriterFactory:
    def __init__(self, handler: logging.StreamHandler):
        self._handler = handler

    def __call__(self, *args: Any) -> _HandlerWriter:
        return _HandlerWriter(self._handler, args[0] if args and isinstance(args[0], str) else "voxfleet")


class _FixedFields:
    """The process's own fields (component, pod, region) on every line, from every thread."""

    def __init__(self, fields: Mapping[str, str]):
        self._fields = dict(fields)

    def __call__(self, _: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
        for name, value in self._fields.items():
            event.setdefault(name, value)
        return event


def _lead_fields_first(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """JSON lines read left to right: when, how bad, who, what; then the rest."""
    lead = {name: event.pop(name) for name in LEAD_FIELDS if name in event}
    return {**lead, **event}


def _renderer(log_format: LogFormat, stream: TextIO) -> Any:
    if log_format == "json":
        render = structlog.processors.JSONRenderer()
        return lambda logger, name, event: render(logger, name, _lead_fields_first(logger, name, event))
    # plain_traceback: rich's default rendering shows each frame's local variables, which may hold credentials.
    return structlog.dev.ConsoleRenderer(colors=_is_terminal(stream),
                                         exception_formatter=structlog.dev.plain_traceback)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _forward_loguru(min_level: int) -> None:
    """Pipecat's loguru lines into the stdlib stream (same format, context and redaction), from min_level up."""
    try:
        from loguru import logger as loguru_logger
    except ImportError:  # a component without Pipecat
        return

    def forward(message: Any) -> None:
        record = message.record
        exception = record["exception"]
        exc_info = (exception.type, exception.value, exception.traceback) if exception else None
        logger = logging.getLogger(record["name"] or "loguru")
        # loguru's own levels (TRACE, SUCCESS) as the nearest stdlib one
        level = logging.getLevelNamesMapping().get(record["level"].name, record["level"].no)
        if not logger.isEnabledFor(level):
            return
        logger.handle(logger.makeRecord(logger.name, level, record["file"].path, record["line"],
                                        record["message"][:LOGURU_MAX_MESSAGE], None, exc_info,
                                        func=record["function"]))

    loguru_logger.remove()
    loguru_logger.add(forward, level=logging.getLevelName(min_level), format="{message}")

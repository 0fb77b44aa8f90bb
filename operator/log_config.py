"""structlog for the operator: JSON lines in a cluster (console lines on a terminal), kopf's stdlib logging routed
through the same renderer, and a last processor that blanks anything named like a credential."""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

_SECRET_NAMES = re.compile(r"(authorization|token|secret|password|api[_-]?key)", re.IGNORECASE)


def _redact(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    for name in list(event):
        if _SECRET_NAMES.search(name):
            event[name] = "[redacted]"
    return event


def configure(log_format: str = "json", level: str = "info") -> None:
    numeric = logging.getLevelName(level.upper())
    numeric = numeric if isinstance(numeric, int) else logging.INFO
    renderer: Any = structlog.processors.JSONRenderer() if log_format == "json" else structlog.dev.ConsoleRenderer()
    shared = [structlog.contextvars.merge_contextvars, structlog.processors.add_log_level,
              structlog.processors.TimeStamper(fmt="iso", utc=True), _redact]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer]))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # kopf logs every watch (re)connection at INFO; its warnings and errors still come through (all at debug).
    logging.getLogger("kopf").setLevel(numeric if numeric <= logging.DEBUG else max(numeric, logging.WARNING))
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)

"""structlog set-up for the gateway: JSON lines in clusters, readable lines on a terminal.

A last processor drops anything that looks like a credential (Authorization headers, API keys, tokens), so a
careless log call cannot put a key into the logs.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

_SECRET_KEYS = re.compile(r"(authorization|api[_-]?key|secret|token|password)", re.IGNORECASE)
_KEY_SHAPE = re.compile(r"vfk_[a-z2-7]{12}_[A-Za-z0-9_-]{43}")


def _redact(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    for name, value in list(event.items()):
        if _SECRET_KEYS.search(name):
            event[name] = "[redacted]"
        elif isinstance(value, str) and "vfk_" in value:
            event[name] = _KEY_SHAPE.sub("vfk_[redacted]", value)
    return event


def configure(log_format: str = "json", level: str = "info") -> None:
    numeric = logging.getLevelName(level.upper()) if isinstance(logging.getLevelName(level.upper()), int) \
        else logging.INFO
    renderer = structlog.processors.JSONRenderer() if log_format == "json" else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, structlog.processors.add_log_level,
                    structlog.processors.TimeStamper(fmt="iso", utc=True), _redact,
                    structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=numeric, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")

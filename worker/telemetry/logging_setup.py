"""structlog for the worker: JSON lines in clusters (console when asked), session ids bound per session.

Pipecat logs through loguru, at DEBUG by default and sometimes with conversation content; it is capped at
WARNING and routed into the same structlog stream, so one process writes one format.
"""

from __future__ import annotations

import logging
import sys

import structlog
from loguru import logger as loguru_logger


def configure_logging(*, log_format: str = "json", level: str = "info", **context: str) -> None:
    renderer = (structlog.processors.JSONRenderer() if log_format == "json"
                else structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, structlog.processors.add_log_level,
                    structlog.processors.TimeStamper(fmt="iso", utc=True),
                    structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True)
    structlog.contextvars.bind_contextvars(component="worker", **context)
    pipecat_log = structlog.get_logger("pipecat")

    def forward(message) -> None:
        record = message.record
        method = getattr(pipecat_log, record["level"].name.lower(), pipecat_log.warning)
        method(record["message"][:2000], source=f"{record['name']}:{record['line']}")

    loguru_logger.remove()
    loguru_logger.add(forward, level="WARNING")

"""JSON log lines that carry the current trace and span ids."""

from __future__ import annotations

import logging
import sys
from typing import IO

from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter


class _TraceContextFilter(logging.Filter):
    """Adds ``trace_id`` / ``span_id`` of the current span to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = format(context.trace_id, "032x")
            record.span_id = format(context.span_id, "016x")
        return True


class _BoundValuesFilter(logging.Filter):
    """Drops aiosqlite's DEBUG records: each echoes a statement with its bound
    values (callback URLs that may carry a partner's token, e-mail addresses),
    which the engine's ``hide_parameters`` cannot reach."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno < logging.INFO and record.name.startswith("aiosqlite"))


def log_handler(stream: IO[str], fmt: str = "json") -> logging.Handler:
    """A handler writing one JSON object per line (``fmt="text"`` for humans),
    with the trace and span ids whenever a span is active."""
    handler = logging.StreamHandler(stream)
    if fmt == "text":
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s [%(process)d] %(name)s %(message)s")
        )
    else:
        handler.setFormatter(
            JsonFormatter(
                # The pid tells the workers of `serve --workers N` apart.
                "{asctime}{levelname}{name}{process}{message}",
                style="{",
                rename_fields={
                    "asctime": "time",
                    "levelname": "level",
                    "name": "logger",
                    "process": "pid",
                },
                datefmt="%Y-%m-%dT%H:%M:%S%z",
            )
        )
    handler.addFilter(_BoundValuesFilter())
    handler.addFilter(_TraceContextFilter())
    return handler


def setup_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Sends every log record to stderr through :func:`log_handler`,
    replacing any earlier handlers of the root logger."""
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(log_handler(sys.stderr, fmt))
    root.setLevel(level.upper())

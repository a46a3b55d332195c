"""Structured logging with structlog: JSON lines in production, colourless console for people.

The production set-up follows structlog's performance notes: events rendered straight to bytes
by orjson, written by a ``BytesLoggerFactory`` logger, level filtering done by a bound-logger
class built once (``make_filtering_bound_logger``), loggers cached on first use, and context
carried in ``contextvars`` so a worker binds ``worker``/``stream``/``partition`` once per task.

Secrets never reach a log line: a processor replaces the password of any URL-looking string
value with ``***`` (``redact_url``), whatever key it was logged under.
"""

from __future__ import annotations

import logging
import sys
from typing import IO, Any, BinaryIO, TextIO, cast

import orjson
import structlog
from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

from common.settings import CommonSettings, redact_url

__all__ = [
    "bind_context",
    "clear_context",
    "configure_logging",
    "get_logger",
    "redact_secrets",
]

_LEVELS = {
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
    "CRITICAL": logging.CRITICAL,
}


def redact_secrets(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Replace the password in any ``scheme://user:pass@host`` string value with ``***``."""
    for key, value in event_dict.items():
        if isinstance(value, str) and "://" in value and "@" in value:
            event_dict[key] = redact_url(value)
    return event_dict


def _orjson_dumps(obj: Any, default: Any = None) -> bytes:
    return orjson.dumps(obj, default=default or repr)


def configure_logging(
    settings: CommonSettings | None = None,
    *,
    level: str | None = None,
    fmt: str | None = None,
    stream: IO[Any] | None = None,
) -> None:
    """Configure structlog for the whole process (safe to call again, e.g. in tests).

    ``level``/``fmt`` override the settings' ``LOG_LEVEL``/``LOG_FORMAT``. JSON goes to
    ``stream`` (default: stderr's binary buffer); the console form to ``stream`` (default stderr).
    """
    lvl = (level or (settings.log_level if settings else "INFO")).upper()
    form = fmt or (settings.log_format if settings else "json")
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]
    if form == "console":
        processors: list[Processor] = [
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.dev.ConsoleRenderer(colors=False),
        ]
        factory: Any = structlog.PrintLoggerFactory(file=cast(TextIO, stream or sys.stderr))
    else:
        processors = [
            *shared,
            structlog.processors.dict_tracebacks,
            structlog.processors.JSONRenderer(serializer=_orjson_dumps),
        ]
        out = stream if stream is not None else sys.stderr.buffer
        factory = structlog.BytesLoggerFactory(file=cast(BinaryIO, out))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(lvl, logging.INFO)),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )


def get_logger(name: str | None = None, **bound: Any) -> FilteringBoundLogger:
    """A logger with ``component=name`` and ``bound`` key/values on every event.

    It stays a lazy proxy until its first event (``bind`` would materialize it now), so a
    module-level logger made at import time still follows the configuration that
    ``configure_logging`` installs later in ``main()``. (The key is not ``logger``: that name
    is taken by structlog's own ``get_logger`` parameters.)
    """
    if name:
        bound = {"component": name, **bound}
    log: FilteringBoundLogger = structlog.get_logger(**bound)
    return log


def bind_context(**values: Any) -> None:
    """Bind ``values`` to every event logged from this task (and tasks it starts) onwards."""
    structlog.contextvars.bind_contextvars(**values)


def clear_context() -> None:
    """Drop everything ``bind_context`` bound in this context."""
    structlog.contextvars.clear_contextvars()

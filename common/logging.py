"""Structured logging with structlog: JSON lines in production, colourless console for people.

The production set-up follows structlog's performance notes: events rendered straight to bytes
by orjson, written by a ``BytesLoggerFactory`` logger, level filtering done by a bound-logger
class built once (``make_filtering_bound_logger``), loggers cached on first use, and context
carried in ``contextvars`` so a worker binds ``worker``/``stream``/``partition`` once per task.

Secrets never reach a log line. Tracebacks keep file, line and function of every frame but
never the frames' local variables (a client library's locals hold the password it sends), and
the last processor before rendering, ``redact_secrets``, turns every value of the event —
nested dicts and lists, exception messages, reprs of any object — into scrubbed text
(``common.secrets.scrub``: registered secrets and URL passwords become ``***``). Records of
the standard ``logging`` module (libraries' warnings) go through the same scrubbing.
"""

from __future__ import annotations

import logging
import sys
from typing import IO, Any, BinaryIO, TextIO, cast

import orjson
import structlog
from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

from common.secrets import scrub
from common.settings import CommonSettings

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


def _scrubbed(value: Any) -> Any:
    """``value`` with every string scrubbed, recursively. Other objects are first turned into
    what the JSON renderer would have written for them — orjson's own form (dataclasses,
    datetimes, enums, UUIDs), else their ``repr`` — so nothing escapes as an opaque object."""
    if isinstance(value, str):
        return scrub(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict):
        return {scrub(str(k)): _scrubbed(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrubbed(v) for v in value]
    try:
        native = orjson.loads(orjson.dumps(value))
    except TypeError:  # orjson.JSONEncodeError: no JSON form
        return scrub(repr(value))
    return _scrubbed(native)


def redact_secrets(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Mask every secret in every value of the event (runs after tracebacks are rendered).

    Top-level keys are the code's own keyword names and stay as they are."""
    return {key: _scrubbed(value) for key, value in event_dict.items()}


class _ScrubbingFormatter(logging.Formatter):
    """Standard-library records (libraries' own warnings), scrubbed like structlog's."""

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


def _scrub_stdlib_logging() -> None:
    """Libraries' own records (WARNING and up: what logging's handler of last resort prints
    on stderr when nothing else is configured) are scrubbed like every structlog event."""
    if logging.lastResort is not None:
        logging.lastResort.setFormatter(_ScrubbingFormatter())


# structlog's ``dict_tracebacks`` without the frames' local variables.
_DICT_TRACEBACKS = structlog.processors.ExceptionRenderer(
    structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
)


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
        structlog.processors.StackInfoRenderer(),
    ]
    if form == "console":
        processors: list[Processor] = [
            *shared,
            structlog.processors.format_exc_info,  # a plain traceback: no locals
            redact_secrets,
            structlog.dev.ConsoleRenderer(colors=False),
        ]
        factory: Any = structlog.PrintLoggerFactory(file=cast(TextIO, stream or sys.stderr))
    else:
        processors = [
            *shared,
            _DICT_TRACEBACKS,
            redact_secrets,
            structlog.processors.JSONRenderer(serializer=_orjson_dumps),
        ]
        out = stream if stream is not None else sys.stderr.buffer
        factory = structlog.BytesLoggerFactory(file=cast(BinaryIO, out))
    _scrub_stdlib_logging()
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

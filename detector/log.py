"""Structured logging: JSON lines in production, readable console output on a terminal.

Every line carries ``timestamp`` (ISO 8601, UTC), ``level`` and ``event``, plus whatever is
bound: bind per-partition or per-model context with structlog's context variables and it
appears as top-level keys of every line logged inside::

    with structlog.contextvars.bound_contextvars(partition=3, model="churn"):
        log.warning("drift", feature="age")

Values of keys that look secret (``password``, ``secret``, ``token``, ``webhook_url``,
``routing_key``, ``sasl.password``, ... see :func:`detector.ops.secrets.is_secret_key`) are
replaced with ``"***"``, also inside nested mappings, as a second line of defence.

Records of the standard :mod:`logging` module (for instance librdkafka's, when a Kafka
client is given ``"logger": logging.getLogger("librdkafka")``) go through the same
processors and renderer.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any, TextIO, cast

import orjson
import structlog
from structlog._config import BoundLoggerLazyProxy
from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

from detector.config import LogSettings
from detector.ops.secrets import REDACTED, is_secret_key

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def redact_secrets(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: replace the values of secret-looking keys with ``"***"``."""
    for key, value in event_dict.items():
        if is_secret_key(key):
            event_dict[key] = REDACTED
        elif isinstance(value, Mapping):
            event_dict[key] = _redact_mapping(value)
    return event_dict


def _redact_mapping(mapping: Mapping[Any, Any], depth: int = 0) -> Any:
    if depth > 8:
        return REDACTED
    redacted: dict[Any, Any] = {}
    for key, value in mapping.items():
        if isinstance(key, str) and is_secret_key(key):
            redacted[key] = REDACTED
        elif isinstance(value, Mapping):
            redacted[key] = _redact_mapping(value, depth + 1)
        else:
            redacted[key] = value
    return redacted


def _dumps(obj: Any, **_kwargs: Any) -> str:
    option = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
    return orjson.dumps(obj, default=repr, option=option).decode()


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        redact_secrets,
    ]


class _Stderr:
    """``sys.stderr`` as it is at each write, not when logging was configured (a test's
    capture, or a command that swaps it, is followed)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return _is_tty(sys.stderr)


def default_to_stderr() -> None:
    """Until :func:`configure_logging` is called, log to standard error, not structlog's
    default standard output: the commands that do not configure logging (``detector
    review``, ``audit``, ``reproduce``) print their answer on standard output alone."""
    if not structlog.is_configured():
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(cast(TextIO, _Stderr())))


class _OurHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the stdlib handler installed here, so reconfiguring replaces only it."""


def configure_logging(settings: LogSettings, stream: TextIO | None = None) -> str:
    """Configure structlog (and the standard logging root logger) from ``settings``.

    ``stream`` defaults to ``sys.stderr``. Format ``json``, or ``auto`` when the stream is not
    a terminal, writes one JSON object per line; ``console``, or ``auto`` on a terminal,
    writes structlog's console format (coloured on a terminal). Events below
    ``settings.level`` are dropped. Returns the format chosen: ``"json"`` or ``"console"``.
    Safe to call again (tests do); loggers obtained before pick up the new configuration.
    """
    out = sys.stderr if stream is None else stream
    tty = _is_tty(out)
    fmt = settings.format
    if fmt == "auto":
        fmt = "console" if tty else "json"
    level = _LEVELS[settings.level]

    renderer: list[Processor]
    if fmt == "json":
        renderer = [
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=_dumps),
        ]
    else:
        renderer = [structlog.dev.ConsoleRenderer(colors=tty)]

    structlog.configure(
        processors=[*_shared_processors(), *renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        context_class=dict,
        # Not cached, so a reconfiguration reaches module-level loggers; logging is per
        # batch or rarer, so the small per-call cost does not matter.
        cache_logger_on_first_use=False,
    )

    handler = _OurHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_logger_name,
                structlog.stdlib.ExtraAdder(),
                *_shared_processors(),
            ],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _OurHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return fmt


def get_logger(name: str | None = None, **initial: Any) -> FilteringBoundLogger:
    """A structlog logger, with ``name`` bound as ``logger`` when given.

    Lazy: safe at module level before :func:`configure_logging`; every call goes through
    the configuration current at the time.
    """
    values = dict(initial)
    if name is not None:
        values["logger"] = name
    # structlog.get_logger(logger=...) clashes with wrap_logger's own ``logger`` parameter.
    return cast(FilteringBoundLogger, BoundLoggerLazyProxy(None, initial_values=values))

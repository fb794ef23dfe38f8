"""Logging as one pipeline of small processors (design §5).

Every line is one JSON object on stdout: ``timestamp`` (RFC 3339 UTC), ``level``, ``logger``,
``message``, ``service``, ``trace_id``/``span_id`` inside a span, plus structured extras.
Records from the standard library (uvicorn, alembic, ...) go through the same processors.
``format: console`` renders the same events for humans, in colour only on a terminal (see
:func:`use_colors`). Secrets are redacted on the way out; enum members are written as their
values (``status=503``, never ``<HTTPStatus.SERVICE_UNAVAILABLE: 503>``) in both formats.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import Callable, Mapping, MutableMapping
from enum import Enum
from typing import Any, TextIO

import orjson
import structlog
from opentelemetry import trace
from structlog.typing import EventDict, Processor, WrappedLogger

from chassis.config import LoggingSection
from chassis.private_apis import structlog_configuration

REDACTED = "[REDACTED]"
SECRET_KEY = re.compile(
    r"(?i)(password|passwd|secret|token|authorization|api[_-]?key|cookie|credential)"
)
URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]+):[^@/\s]+@")
BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[a-z0-9._~+/=-]+")
SECRET_ASSIGNMENT = re.compile(
    r"(?i)\b(password|passwd|pwd|secret|token|api[_-]?key)(\s*[=:]\s*)(['\"]?)[^\s'\",;&]+"
)


def redact_secrets(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Masks values under secret-looking keys and credentials inside strings.

    On the same walk over the values, an enum member becomes its value, as the JSON renderer
    writes it, so that the console shows the same (``status=503``)."""
    return _redact_mapping(event_dict)


_secret_keys: dict[str, bool] = {}


def _is_secret_key(key: str) -> bool:
    """Remembered: the same dozen keys come by on every line (one regex search each was ~40%
    of this processor's time on an access-log line)."""
    secret = _secret_keys.get(key)
    if secret is None:
        if len(_secret_keys) >= 4096:
            _secret_keys.clear()
        secret = _secret_keys[key] = SECRET_KEY.search(key) is not None
    return secret


def _redact_mapping(mapping: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in mapping.items():
        if _is_secret_key(key):
            mapping[key] = REDACTED
        elif type(value) is str:
            # The common case inline: a plain string with none of the characters that every
            # pattern needs is left as it is.
            if "://" in value or " " in value or "=" in value or ":" in value:
                mapping[key] = _redact_string(value)
        elif type(value) not in _PLAIN:
            mapping[key] = _redact_value(value)
    return mapping


_PLAIN = frozenset({int, float, bool, type(None)})


def _redact_value(value: Any) -> Any:
    if type(value) in _PLAIN:
        return value
    if isinstance(value, Enum):  # before str: a StrEnum is one
        return _redact_value(value.value)
    if isinstance(value, str):
        return _redact_string(value)
    if isinstance(value, dict):
        return _redact_mapping(dict(value))
    if isinstance(value, list | tuple):
        return [_redact_value(item) for item in value]
    return value


def _redact_string(value: str) -> str:
    if "://" in value:
        value = URL_CREDENTIALS.sub(r"\g<scheme>\g<user>:" + REDACTED + "@", value)
    if " " in value:
        value = BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", value)
    if "=" in value or ":" in value:  # password=..., token: ... in messages and tracebacks
        value = SECRET_ASSIGNMENT.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", value)
    return value


def format_exc_info(logger: WrappedLogger, name: str, event_dict: EventDict) -> EventDict:
    """structlog's ``format_exc_info``, skipped on the lines (almost all) that have no
    ``exc_info`` to format."""
    if "exc_info" not in event_dict:
        return event_dict
    return structlog.processors.format_exc_info(logger, name, event_dict)


def drop_color_message(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """uvicorn attaches an ANSI-coloured copy of its messages; one message is enough."""
    event_dict.pop("color_message", None)
    return event_dict


def add_trace_ids(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict["trace_id"] = format(context.trace_id, "032x")
        event_dict["span_id"] = format(context.span_id, "016x")
    return event_dict


def add_logger_name(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    record = event_dict.get("_record")
    if record is not None:
        event_dict["logger"] = record.name
    elif "logger_name" in event_dict:  # bound by get_logger(); "logger" is reserved by structlog
        event_dict["logger"] = event_dict.pop("logger_name")
    return event_dict


_second: tuple[int, str] = (-1, "")


def add_timestamp(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """``timestamp``: RFC 3339 in UTC with microseconds, exactly as structlog's
    ``TimeStamper(fmt="iso", utc=True)`` writes it (``datetime.now(UTC).isoformat()``, ``Z`` for
    ``+00:00``), with the date and time of day formatted once a second rather than per line."""
    global _second
    seconds, micros = divmod(time.time_ns() // 1000, 1_000_000)
    second, prefix = _second
    if seconds != second:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        _second = (seconds, prefix)
    # isoformat() leaves the fraction out when it is zero
    event_dict["timestamp"] = f"{prefix}.{micros:06d}Z" if micros else f"{prefix}Z"
    return event_dict


def add_service(service: str) -> Processor:
    def processor(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
        event_dict.setdefault("service", service)
        return event_dict

    return processor


def shared_processors(service: str) -> list[Processor]:
    """The pipeline every event passes, from structlog or the standard library."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        add_logger_name,
        add_service(service),
        add_trace_ids,
        format_exc_info,
        drop_color_message,
        redact_secrets,
        add_timestamp,  # after redaction: nothing to find in it
        structlog.processors.EventRenamer("message"),
    ]


LEADING_KEYS = ("timestamp", "level", "logger", "message", "service", "trace_id", "span_id")


def _ordered(event_dict: EventDict) -> dict[str, Any]:
    """The design §5 fields first, so lines read the same way every time."""
    ordered = {key: event_dict.pop(key) for key in LEADING_KEYS if key in event_dict}
    ordered.update(event_dict)
    return ordered


def _render_json(_: WrappedLogger, __: str, event_dict: EventDict) -> bytes:
    return orjson.dumps(_ordered(event_dict), default=str)


def use_colors(stream: TextIO, environ: Mapping[str, str] = os.environ) -> bool:
    """Whether console lines written to ``stream`` get ANSI colours: never with ``NO_COLOR``
    set (https://no-color.org; it wins), always with ``FORCE_COLOR`` set (a supervisor that
    shows its children's output on a terminal, e.g. honcho, asks for it), otherwise only when
    ``stream`` is a terminal, so that a file or pipe gets plain text. Empty values count as
    unset."""
    if environ.get("NO_COLOR"):
        return False
    if environ.get("FORCE_COLOR"):
        return True
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no such method, or a closed stream
        return False


def _console_renderer(colors: bool) -> Processor:
    return structlog.dev.ConsoleRenderer(
        event_key="message",
        colors=colors,
        # Exceptions arrive formatted (format_exc_info); should one not, a plain traceback, as
        # the default (rich) one would colour it anyway.
        exception_formatter=(
            structlog.dev.default_exception_formatter if colors else structlog.dev.plain_traceback
        ),
    )


def configure_logging(service: str, section: LoggingSection) -> None:
    """Configures structlog and the standard library once for this process (idempotent)."""
    level = logging.getLevelNamesMapping()[section.level.upper()]
    processors = shared_processors(service)
    console = section.format == "console"
    colors = console and use_colors(sys.stdout)
    renderer: Processor = _console_renderer(colors) if console else _render_json
    factory: Callable[..., WrappedLogger] = (
        structlog.PrintLoggerFactory(sys.stdout)
        if console
        else structlog.BytesLoggerFactory(sys.stdout.buffer)
    )
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=factory,
        cache_logger_on_first_use=False,
    )
    _configure_stdlib(processors, level, console, colors)


def _configure_stdlib(processors: list[Processor], level: int, console: bool, colors: bool) -> None:
    final: Processor = (
        _console_renderer(colors)
        if console
        else structlog.processors.JSONRenderer(
            serializer=lambda d, **_: orjson.dumps(_ordered(d), default=str).decode()
        )
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *processors],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, final],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    handler.set_name("chassis")
    root = logging.getLogger()
    for existing in [h for h in root.handlers if h.get_name() == "chassis"]:
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # Servers and libraries keep their own handlers otherwise; route them through ours.
    for name in ("uvicorn", "uvicorn.error", "alembic", "connexion"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # the chassis writes its own access log
    logging.getLogger("httpx").setLevel(logging.WARNING)  # client calls have spans and metrics


def get_logger(name: str) -> Any:
    """A structured logger; ``log.info("message", key=value)``."""
    return structlog.get_logger(logger_name=name)


class CachedLogger:
    """``get_logger(name)`` for a hot path: assembled once per structlog configuration.

    The proxy ``get_logger`` returns assembles a new logger (context, output and wrapper) on
    every call, so that loggers made at import time follow a later ``configure_logging`` and
    ``capture_logs``; that was a fifth of an access-log line's cost. This one keeps the
    assembled logger until the configuration changes, then assembles it again.
    """

    def __init__(self, name: str) -> None:
        self._proxy = get_logger(name)
        self._made_for: tuple[Any, Any, Any, Any] = (None, None, None, None)
        self._logger: Any = None

    def get(self) -> Any:
        now = _structlog_configuration()
        made_for = self._made_for
        if (
            now[0] is not made_for[0]
            or now[1] is not made_for[1]
            or now[2] is not made_for[2]
            or now[3] is not made_for[3]
        ):
            self._logger = self._proxy.bind()
            self._made_for = now
        return self._logger


def _structlog_configuration() -> tuple[Any, Any, Any, Any]:
    """What an assembled logger depends on: structlog's defaults, read where ``configure``
    writes them (``get_config()`` builds a dict per call; it is the fallback)."""
    config = _STRUCTLOG_CONFIG
    if config is None:
        public = structlog.get_config()
        return (
            public["processors"],
            public["wrapper_class"],
            public["logger_factory"],
            public["context_class"],
        )
    return (
        config.default_processors,
        config.default_wrapper_class,
        config.logger_factory,
        config.default_context_class,
    )


_STRUCTLOG_CONFIG = structlog_configuration()

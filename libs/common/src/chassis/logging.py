"""Logging as one pipeline of small processors (DESIGN §5).

Every line is one JSON object on stdout: ``timestamp`` (RFC 3339 UTC), ``level``, ``logger``,
``message``, ``service``, ``trace_id``/``span_id`` inside a span, plus structured extras.
Records from the standard library (uvicorn, alembic, ...) go through the same processors.
``format: console`` renders the same events for humans. Secrets are redacted on the way out.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
from collections.abc import Callable, MutableMapping
from typing import Any

import orjson
import structlog
from opentelemetry import trace
from structlog.typing import EventDict, Processor, WrappedLogger

from chassis.config import LoggingSection

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
    """Masks values under secret-looking keys and credentials inside strings."""
    return _redact_mapping(event_dict)


@functools.lru_cache(maxsize=4096)
def _is_secret_key(key: str) -> bool:
    """Cached: the same dozen keys come by on every line (one regex search each was ~40% of
    this processor's time on an access-log line)."""
    return SECRET_KEY.search(key) is not None


def _redact_mapping(mapping: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in mapping.items():
        if _is_secret_key(key):
            mapping[key] = REDACTED
        else:
            mapping[key] = _redact_value(value)
    return mapping


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        if "://" in value:
            value = URL_CREDENTIALS.sub(r"\g<scheme>\g<user>:" + REDACTED + "@", value)
        if " " in value:
            value = BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", value)
        if "=" in value or ":" in value:  # password=..., token: ... in messages and tracebacks
            value = SECRET_ASSIGNMENT.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", value)
        return value
    if isinstance(value, dict):
        return _redact_mapping(dict(value))
    if isinstance(value, list | tuple):
        return [_redact_value(item) for item in value]
    return value


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
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        add_service(service),
        add_trace_ids,
        structlog.processors.format_exc_info,
        drop_color_message,
        redact_secrets,
        structlog.processors.EventRenamer("message"),
    ]


LEADING_KEYS = ("timestamp", "level", "logger", "message", "service", "trace_id", "span_id")


def _ordered(event_dict: EventDict) -> dict[str, Any]:
    """The DESIGN §5 fields first, so lines read the same way every time."""
    ordered = {key: event_dict.pop(key) for key in LEADING_KEYS if key in event_dict}
    ordered.update(event_dict)
    return ordered


def _render_json(_: WrappedLogger, __: str, event_dict: EventDict) -> bytes:
    return orjson.dumps(_ordered(event_dict), default=str)


def configure_logging(service: str, section: LoggingSection) -> None:
    """Configures structlog and the standard library once for this process (idempotent)."""
    level = logging.getLevelNamesMapping()[section.level.upper()]
    processors = shared_processors(service)
    console = section.format == "console"
    renderer: Processor = (
        structlog.dev.ConsoleRenderer(event_key="message") if console else _render_json
    )
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
    _configure_stdlib(processors, level, console)


def _configure_stdlib(processors: list[Processor], level: int, console: bool) -> None:
    final: Processor = (
        structlog.dev.ConsoleRenderer(event_key="message")
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

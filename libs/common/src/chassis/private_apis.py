"""The private names of other packages the chassis reaches into.

A private name can change in any release without notice. The lint refuses them outside this
module (ruff's PLC2701 for imports, SLF001 for attributes); here each is reached through one
function saying why it is used and what happens without it. Two subclasses override connexion
methods that are private too (chassis.validation, chassis.middleware.api_docs): the lint cannot
see those, so they are listed at the end. tests/test_private_apis.py checks every one against
the installed versions and fails naming the package, its version and the name: an upgrade that
removes one breaks the build, not silently the service.

- threading._register_atexit: run before the interpreter joins non-daemon threads at exit (as
  concurrent.futures does for its own pools); atexit runs after, too late for idle workers.
- the OTLP/HTTP span exporter's size check (``_common._is_request_too_large``) and its own
  HTTP client, export metrics, size limit and shutdown flag: chassis.otlp encodes the request
  body itself and hands it to the exporter's own client, so retries, limits and metrics stay
  the SDK's.
- structlog's configuration object (``_config._CONFIG``): chassis.logging reads the defaults
  from it on every cached logger's check; ``structlog.get_config()`` builds a dict per call.
- connexion: a request's parsed query, given as empty when there is no query string, so that
  the parameter validator does not parse nothing.

Overridden or inherited by subclasses (not reached through this module):
- chassis.validation: RequestValidationOperation's ``_operation`` and ``_validator_map``;
  JSONRequestBodyValidator's ``_validate`` and ``_required``.
- chassis.middleware.api_docs: SwaggerUIAPI's ``_spec_for_prefix`` and
  ``_get_swagger_ui_home``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog


def register_before_thread_join(callback: Callable[[], None]) -> bool:
    """Run ``callback`` at exit before non-daemon threads are joined; False where this Python
    has no such hook (then the caller's threads must be daemons)."""
    register = getattr(threading, "_register_atexit", None)
    if register is None:
        return False
    register(callback)
    return True


def is_request_too_large(data: bytes, limit: int) -> bool:
    """The OTLP/HTTP exporter's own test of a request body against its max_request_size."""
    # Imported here: the one-shot commands (migrate, seed) import this module, not the exporter.
    from opentelemetry.exporter.otlp.proto.http import _common  # noqa: PLC2701

    return bool(_common._is_request_too_large(data, limit))  # noqa: SLF001


def request_too_large_error(message: str) -> Exception:
    """The exporter's own error for a body over max_request_size (public, in that private
    module)."""
    from opentelemetry.exporter.otlp.proto.http import _common  # noqa: PLC2701

    return _common.RequestPayloadTooLargeError(message)


def structlog_configuration() -> Any | None:
    """structlog's live configuration (``default_processors``, ``default_wrapper_class``,
    ``logger_factory``, ``default_context_class``); None when this structlog has none there."""
    return getattr(getattr(structlog, "_config", None), "_CONFIG", None)


@dataclass(frozen=True)
class ExporterInternals:
    """What chassis.otlp needs of an OTLP/HTTP span exporter to send a body it encoded."""

    client: Any  # .export(data) -> outcome with .success, .error, .status_code
    metrics: Any  # .export_operation(count): a context manager yielding a result
    max_request_size: int
    shut_down: bool


def exporter_internals(exporter: object) -> ExporterInternals | None:
    """The exporter's client, metrics, size limit and shutdown flag; None for an SDK that has
    not all of them (chassis.otlp then leaves the export to the SDK)."""
    client = getattr(exporter, "_client", None)
    metrics = getattr(exporter, "_metrics", None)
    limit = getattr(exporter, "_max_request_size", None)
    shut_down = getattr(exporter, "_shutdown", None)
    if client is None or metrics is None or limit is None or shut_down is None:
        return None
    return ExporterInternals(client, metrics, int(limit), bool(shut_down))


def set_parsed_query(request: Any, parameters: dict[str, Any]) -> None:
    """What connexion's request would parse its query string into, given beforehand."""
    request._query_params = parameters  # noqa: SLF001

"""Every private name of another package the chassis relies on, and nowhere else.

A private name can change in any release without notice. The lint refuses them outside this
module (ruff's PLC2701 for imports, SLF001 for attributes); here each is reached through one
function saying why it is used and what happens without it. tests/test_private_apis.py checks
every one against the installed versions and fails naming the package, its version and the
name: an upgrade that removes one breaks the build, not silently the service.

- threading._register_atexit: run before the interpreter joins non-daemon threads at exit (as
  concurrent.futures does for its own pools); atexit runs after, too late for idle workers.
- the OTLP/HTTP span exporter's size check (``_common._is_request_too_large``) and its own
  HTTP client, export metrics, size limit and shutdown flag: chassis.otlp encodes the request
  body itself and hands it to the exporter's own client, so retries, limits and metrics stay
  the SDK's.
- connexion: a request's parsed query, given as empty when there is no query string, so that
  the parameter validator does not parse nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opentelemetry.exporter.otlp.proto.http import _common as otlp_http  # noqa: PLC2701

# A public name, but only in that private module.
RequestPayloadTooLargeError = otlp_http.RequestPayloadTooLargeError


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
    return bool(otlp_http._is_request_too_large(data, limit))  # noqa: SLF001


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

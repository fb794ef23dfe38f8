"""The books app factory: settings -> chassis -> API."""

from __future__ import annotations

from collections.abc import Iterable

from opentelemetry.sdk.trace import SpanProcessor

from books import handlers
from books.persistence import install_sql_functions
from books.settings import SERVICE_DIR, BooksSettings, load
from chassis import Service


def create_service(
    settings: BooksSettings | None = None, *, span_processors: Iterable[SpanProcessor] = ()
) -> Service:
    service = Service(
        settings or load(),
        spec=SERVICE_DIR / "openapi.yaml",
        handlers=handlers,
        span_processors=span_processors,
    )
    install_sql_functions(service.database.engine)
    return service

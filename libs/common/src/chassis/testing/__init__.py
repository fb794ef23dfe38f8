"""Test helpers a service reuses: settings without the environment, captured spans, parsed
metrics, captured logs, problem+json checks, services as real child processes
(``chassis.testing.processes``) and (via the pytest plugin) a real PostgreSQL.

    recorder = SpanRecorder()
    service = create_service(hermetic_settings(BooksSettings, SERVICE_DIR, database_url=url),
                             span_processors=[recorder.processor])
    with service_client(service) as client:
        client.get("/books/1")
    assert recorder.names() == ["GET /books/{book_id}", ...]
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import structlog
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient
from structlog import testing as structlog_testing

from chassis.config import Settings, load_settings
from chassis.logging import add_trace_ids
from chassis.service import Service
from chassis.testing.processes import (
    ServiceProcess,
    ServiceProcesses,
    clean_environment,
    console_script,
    free_port,
    is_machine_variable,
    load_script,
)

if TYPE_CHECKING:
    import pytest

SettingsT = TypeVar("SettingsT", bound=Settings)
PROBLEM_JSON = "application/problem+json"
TRACE_ID = re.compile(r"[0-9a-f]{32}")

__all__ = [
    "MetricsSnapshot",
    "ServiceProcess",
    "ServiceProcesses",
    "SpanRecorder",
    "assert_problem",
    "capture_logs",
    "clean_environment",
    "console_script",
    "free_port",
    "hermetic_environment",
    "hermetic_settings",
    "load_script",
    "reset_logging",
    "service_client",
]


def hermetic_settings(
    settings_class: type[SettingsT],
    config_dir: Path,
    *,
    database_url: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> SettingsT:
    """The service's own config files, but none of the process environment (tests stay
    hermetic); ``environ`` adds variables as the environment would."""
    variables = {"LOGGING__ACCESS_LOG": "true", "HTTP__VALIDATE_RESPONSES": "true"}
    if database_url:
        variables["DATABASE_URL"] = database_url
    variables.update(environ or {})
    return load_settings(settings_class, config_dir, environ=variables)


class SpanRecorder:
    """Keeps every finished span in memory; pass ``processor`` to the service."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.processor = SimpleSpanProcessor(self.exporter)

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        finished = list(self.exporter.get_finished_spans())
        return [s for s in finished if name is None or s.name == name]

    def names(self) -> list[str]:
        return [span.name for span in self.spans()]

    def clear(self) -> None:
        self.exporter.clear()


class MetricsSnapshot:
    """A parsed ``/metrics`` page: ``snapshot.value("http_server_active_requests", ...)``."""

    def __init__(self, exposition: str) -> None:
        self.samples: list[tuple[str, dict[str, str], float]] = [
            (sample.name, dict(sample.labels), sample.value)
            for family in text_string_to_metric_families(exposition)
            for sample in family.samples
        ]

    def value(self, name: str, **labels: str) -> float:
        """Sum of the samples named ``name`` whose labels include ``labels``; NaN if none."""
        matching = [
            value
            for sample_name, sample_labels, value in self.samples
            if sample_name == name and labels.items() <= sample_labels.items()
        ]
        return sum(matching) if matching else math.nan

    def label_values(self, name: str, label: str) -> set[str]:
        return {labels[label] for n, labels, _ in self.samples if n == name and label in labels}


@contextmanager
def capture_logs() -> Iterator[list[MutableMapping[str, Any]]]:
    """Every structlog event of the block, as dicts, with ``trace_id``/``span_id`` inside spans."""
    with structlog_testing.capture_logs(processors=[add_trace_ids]) as events:
        yield events


@contextmanager
def service_client(service: Service, **options: Any) -> Iterator[TestClient]:
    """A test client that runs the service's start-up and shutdown around the block."""
    with TestClient(service, raise_server_exceptions=False, **options) as client:
        yield client


def assert_problem(
    response: httpx.Response, status: int, field: str | None = None
) -> dict[str, Any]:
    """An RFC 9457 answer with ``status``, a title and a trace id, whose detail names ``field``
    (as a whole word); returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["title"]
    assert TRACE_ID.fullmatch(body["trace_id"] or ""), body
    if field is not None:
        assert re.search(rf"\b{re.escape(field)}\b", body["detail"]), body["detail"]
    return body


def hermetic_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """For one test: no machine variables in ``os.environ`` (see ``is_machine_variable``) and
    no span export; ``monkeypatch`` puts the environment back afterwards."""
    for name in [name for name in os.environ if is_machine_variable(name)]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")


def reset_logging() -> None:
    """Undoes what a service's logging set up: structlog defaults and context, and the
    chassis handler on the root logger."""
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == "chassis"]:
        root.removeHandler(handler)

"""The tiny service end to end through the chassis test client."""

import asyncio
import json
import platform
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from importlib.metadata import version
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from chassis import (
    DEGRADED,
    DOWN,
    UP,
    CheckResult,
    FunctionCheck,
    Service,
    SetupLockedError,
    current_service,
)
from chassis.middleware.telemetry import PROBE_ROUTES
from chassis.testing import (
    MetricsSnapshot,
    SpanRecorder,
    capture_logs,
    hermetic_settings,
    service_client,
)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
DURATION = "http_server_request_duration_seconds_count"
JSON_CONTENT = {"Content-Type": "application/json"}
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
MakeService = Callable[..., Service]


def server_spans(recorder: SpanRecorder) -> list[ReadableSpan]:
    return [span for span in recorder.spans() if span.kind == SpanKind.SERVER]


def trace_id(span: ReadableSpan) -> str:
    return format(span.context.trace_id, "032x")


def json_lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


# -- the endpoints every service exposes ------------------------------------------------------


def test_liveness_never_looks_at_dependencies(service: Service) -> None:
    service.add_check(FunctionCheck("database-2", lambda: CheckResult(DOWN), critical=True))

    with service_client(service) as client:
        response = client.get("/health/live")

    assert response.status_code == 200
    assert response.json() == {"status": "UP"}


@pytest.mark.parametrize("path", ["/health/ready", "/healthcheck"])
def test_readiness_reports_the_database(service: Service, path: str) -> None:
    with service_client(service) as client:
        response = client.get(path)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["status"] == UP
    assert body["checks"]["database"]["status"] == UP
    assert body["checks"]["database"]["critical"] is True
    assert body["checks"]["database"]["dialect"] == "sqlite"


def test_a_failing_neighbour_degrades_readiness_but_keeps_200(service: Service) -> None:
    service.add_check(FunctionCheck("books", lambda: CheckResult(DOWN, {"breaker": "open"})))

    with service_client(service) as client:
        response = client.get("/health/ready")

    assert response.status_code == 200
    assert response.json()["status"] == DEGRADED
    assert response.json()["checks"]["books"] == {
        "status": DOWN,
        "critical": False,
        "duration_ms": response.json()["checks"]["books"]["duration_ms"],
        "breaker": "open",
    }


def test_a_failing_critical_check_makes_readiness_503(service: Service) -> None:
    async def broken() -> CheckResult:
        raise ConnectionError("s3cret host")

    service.add_check(FunctionCheck("queue", broken, critical=True))

    with service_client(service) as client:
        response = client.get("/healthcheck")

    assert response.status_code == 503
    assert response.json()["status"] == DOWN
    assert response.json()["checks"]["queue"]["error"] == "ConnectionError"
    assert "s3cret" not in response.text


def test_readiness_is_503_once_shutdown_began(service: Service) -> None:
    with service_client(service) as client:
        service.shutdown.begin()
        ready = client.get("/health/ready")
        live = client.get("/health/live")

    assert ready.status_code == 503
    assert ready.json()["status"] == DOWN
    assert ready.json()["checks"]["shutdown"]["status"] == DOWN
    assert live.status_code == 200


def test_info_describes_the_process(
    make_service: MakeService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_COMMIT", "0123abcd")
    service = make_service()

    with service_client(service) as client:
        info = client.get("/info").json()

    assert info["service"] == "tiny"
    assert info["version"] == "1.2.3"
    assert info["commit"] == "0123abcd"
    assert info["environment"] == "development"
    assert RFC3339_UTC.match(info["started_at"])
    assert info["python_version"] == platform.python_version()
    assert info["chassis_version"] == version("chassis")


def test_metrics_are_exposed_in_both_formats(service: Service) -> None:
    with service_client(service) as client:
        client.get("/items/count")
        text = client.get("/metrics")
        openmetrics = client.get(
            "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )

    assert text.headers["content-type"].startswith("text/plain")
    assert text.headers["cache-control"] == "no-store"
    assert MetricsSnapshot(text.text).value(DURATION, http_route="/items/count") == 1
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.text.rstrip().endswith("# EOF")


def test_the_exemplar_is_the_trace_id_of_the_request(
    service: Service, recorder: SpanRecorder
) -> None:
    with service_client(service) as client:
        client.get("/items/count")
        page = client.get(
            "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        ).text

    (span,) = [s for s in server_spans(recorder) if s.name == "GET /items/count"]
    (bucket,) = [
        line
        for line in page.splitlines()
        if line.startswith("http_server_request_duration_seconds_bucket") and " # {" in line
    ]
    assert 'http_route="/items/count"' in bucket
    assert f'trace_id="{trace_id(span)}"' in bucket


def test_head_is_answered_without_a_body(service: Service) -> None:
    with service_client(service) as client:
        response = client.head("/health/live")

    assert response.status_code == 200
    assert response.content == b""


def test_the_openapi_document_and_swagger_ui_are_served(service: Service) -> None:
    with service_client(service) as client:
        document = client.get("/openapi.json")
        ui = client.get("/ui/")

    assert document.status_code == 200
    assert document.json()["info"]["title"] == "tiny"
    assert "/items/{item_id}" in document.json()["paths"]
    assert ui.status_code == 200
    assert "swagger-ui" in ui.text


# -- telemetry for every request ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "options", "status", "template"),
    [
        ("GET", "/items/count", {}, 200, "/items/count"),
        ("GET", "/items/7", {}, 404, "/items/{item_id}"),  # answered by the handler
        ("POST", "/items", {"json": {"nam": "typo"}}, 400, "/items"),  # connexion validation
        ("GET", "/items/0", {}, 400, "/items/{item_id}"),  # connexion parameter validation
        ("DELETE", "/items/7", {}, 405, "/items/{item_id}"),  # connexion routing
        ("PURGE", "/items/7", {}, 405, "/items/{item_id}"),
        ("GET", "/no/such/path", {}, 404, "NOT_FOUND"),  # connexion routing
        ("GET", "/boom", {}, 500, "/boom"),  # unhandled exception
        ("GET", "/health/ready", {}, 200, "/health/ready"),  # chassis endpoint
        ("GET", "/openapi.json", {}, 200, "/openapi.json"),
    ],
)
def test_every_request_gets_one_span_one_sample_and_one_access_log_line(
    service: Service,
    recorder: SpanRecorder,
    method: str,
    path: str,
    options: dict[str, Any],
    status: int,
    template: str,
) -> None:
    label_method = "_OTHER" if method == "PURGE" else method
    with service_client(service) as client:
        recorder.clear()
        with capture_logs() as events:
            response = client.request(method, path, **options)
        spans = server_spans(recorder)
        page = client.get("/metrics").text

    assert response.status_code == status
    (span,) = spans
    assert span.name == f"{label_method} {template}"
    assert (span.attributes or {})["http.response.status_code"] == status
    samples = MetricsSnapshot(page)
    labels = {"http_request_method": label_method, "http_route": template}
    assert samples.value(DURATION, **labels, http_response_status_code=str(status)) == 1
    assert path not in samples.label_values(DURATION, "http_route") or path == template
    access = [(e["method"], e["route"], e["status"]) for e in events if e["event"] == "request"]
    # A probe's line is DEBUG, below the service's INFO level; it is traced and measured alike.
    assert access == ([] if template in PROBE_ROUTES else [(label_method, template, status)])


def test_an_incoming_traceparent_is_honoured_in_span_log_and_problem(
    make_service: MakeService, recorder: SpanRecorder, capsys: pytest.CaptureFixture[str]
) -> None:
    service = make_service()

    with service_client(service) as client:
        response = client.get("/items/999", headers={"traceparent": TRACEPARENT})

    (span,) = server_spans(recorder)
    assert trace_id(span) == TRACE_ID
    assert response.status_code == 404
    assert response.json()["trace_id"] == TRACE_ID
    assert response.json()["detail"] == "item_id: no item 999"
    (access,) = [
        line for line in json_lines(capsys.readouterr().out) if line["logger"] == "chassis.access"
    ]
    assert access["trace_id"] == TRACE_ID
    assert access["span_id"] == format(span.context.span_id, "016x")
    assert (access["route"], access["status"]) == ("/items/{item_id}", 404)


def test_sql_spans_nest_inside_the_request_span(service: Service, recorder: SpanRecorder) -> None:
    with service_client(service) as client:
        recorder.clear()
        client.get("/items/count")

    (server,) = server_spans(recorder)
    sql = [span for span in recorder.spans() if span.kind == SpanKind.CLIENT]
    assert sql
    assert all(span.name.startswith("SELECT") for span in sql)
    assert all(span.parent and span.parent.span_id == server.context.span_id for span in sql)


# -- errors ------------------------------------------------------------------------------------


def test_an_unhandled_exception_is_a_500_problem_without_internals_and_is_logged(
    make_service: MakeService, recorder: SpanRecorder, capsys: pytest.CaptureFixture[str]
) -> None:
    service = make_service()

    with service_client(service) as client:
        response = client.get("/boom")

    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    (span,) = server_spans(recorder)
    assert body["trace_id"] == trace_id(span)
    assert set(body) == {"type", "title", "status", "detail", "trace_id"}
    for internal in ("hunter2", "SELECT", "RuntimeError", "Traceback", "handlers.py"):
        assert internal not in response.text
    (logged,) = [line for line in json_lines(capsys.readouterr().out) if line["level"] == "error"]
    assert logged["trace_id"] == trace_id(span)
    assert "Traceback (most recent call last)" in logged["exception"]
    assert "RuntimeError: internal detail" in logged["exception"]


def test_chassis_errors_raised_by_handlers_keep_their_status_and_detail(service: Service) -> None:
    with service_client(service) as client:
        created = client.post("/items", json={"name": "dune"})
        again = client.post("/items", json={"name": "dune"})
        found = client.get(f"/items/{created.json()['id']}")
        missing = client.get("/items/999")

    assert created.status_code == 201
    assert found.json() == {"id": created.json()["id"], "name": "dune"}
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    assert again.json()["detail"] == "name: an item named 'dune' exists already"
    assert again.json()["title"] == "Conflict"
    assert missing.status_code == 404
    assert missing.json()["detail"] == "item_id: no item 999"


def test_invalid_input_is_a_400_naming_the_field(service: Service) -> None:
    with service_client(service) as client:
        response = client.post("/items", json={"name": ""})

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert "'name'" in response.json()["detail"]
    assert response.json()["trace_id"]


def test_a_failing_handler_writes_nothing(service: Service) -> None:
    with service_client(service) as client:
        failed = client.post("/items", json={"name": "half", "fail_after_insert": True})
        count = client.get("/items/count").json()

    assert failed.status_code == 500
    assert count == {"count": 0}


@pytest.mark.parametrize("declared", [True, False])
def test_an_oversized_body_is_a_413(make_service: MakeService, declared: bool) -> None:
    service = make_service(HTTP__MAX_BODY_BYTES="100")
    body = b"x" * 150

    def chunked() -> Iterator[bytes]:
        yield body[:75]
        yield body[75:]

    with service_client(service) as client:
        response = client.post(
            "/upload",
            content=body if declared else chunked(),
            headers={"Content-Type": "application/octet-stream"},
        )
        small = client.post(
            "/upload", content=b"x" * 100, headers={"Content-Type": "application/octet-stream"}
        )

    assert ("content-length" in response.request.headers) is declared
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == "body: the request body is larger than 100 bytes"
    assert small.json() == {"size": 100}


def test_a_chunked_json_body_is_read_and_validated_like_a_declared_one(service: Service) -> None:
    def chunked(body: bytes) -> Iterator[bytes]:
        yield body[:5]
        yield body[5:]

    with service_client(service) as client:
        created = client.post(
            "/items", content=chunked(b'{"name": "chunked"}'), headers=JSON_CONTENT
        )
        invalid = client.post("/items", content=chunked(b'{"name": ""}'), headers=JSON_CONTENT)

    assert "content-length" not in created.request.headers
    assert created.status_code == 201, created.text
    assert created.json()["name"] == "chunked"
    assert invalid.status_code == 400
    assert "'name'" in invalid.json()["detail"]


# -- handlers ----------------------------------------------------------------------------------


def test_sync_handlers_run_on_worker_threads_with_a_session(service: Service) -> None:
    with service_client(service) as client:
        answer = client.get("/whereami").json()

    assert answer == {"thread": answer["thread"], "in_session": True, "service": "tiny"}
    assert answer["thread"].startswith("tiny-handler")


def test_async_handlers_run_on_the_event_loop(service: Service) -> None:
    with service_client(service) as client:
        answer = client.get("/async").json()

    assert answer["service"] == "tiny"
    assert not answer["thread"].startswith("tiny-handler")
    assert answer["thread"] != threading.current_thread().name


def test_current_service_outside_a_request_is_an_error() -> None:
    with pytest.raises(LookupError):
        current_service()


# -- lifecycle ---------------------------------------------------------------------------------


def test_startup_and_shutdown_hooks_run_in_order(service: Service) -> None:
    calls: list[str] = []

    @service.on_startup
    def first(svc: Service) -> None:
        calls.append(f"start sync {svc.name}")

    @service.on_startup
    async def second(svc: Service) -> None:
        await asyncio.sleep(0)
        calls.append("start async")

    @service.on_shutdown
    async def closes_last(svc: Service) -> None:
        calls.append("stop async")

    @service.on_shutdown
    def fails(svc: Service) -> None:
        calls.append("stop failing")
        raise RuntimeError("hook broke")

    with service_client(service) as client:
        calls.append("request")
        client.get("/health/live")

    assert calls == ["start sync tiny", "start async", "request", "stop failing", "stop async"]
    assert service.shutdown.shutting_down


def test_setup_is_locked_once_serving_started(service: Service) -> None:
    check = FunctionCheck("late", lambda: CheckResult(UP))

    with service_client(service):
        with pytest.raises(SetupLockedError, match=r"add_check\(\) was called after tiny"):
            service.add_check(check)
        with pytest.raises(SetupLockedError, match="on_startup"):
            service.on_startup(lambda svc: None)
        with pytest.raises(SetupLockedError, match="on_shutdown"):
            service.on_shutdown(lambda svc: None)

    assert "late" not in [c.name for c in service.health.checks]


def test_each_service_has_its_own_metrics_and_spans(
    make_service: MakeService, tiny: ModuleType, database_url: str
) -> None:
    other_recorder = SpanRecorder()
    settings = hermetic_settings(tiny.TinySettings, tiny.SERVICE_DIR, database_url=database_url)
    first = make_service()
    second = tiny.create_service(settings, span_processors=[other_recorder.processor])
    with service_client(first) as client:
        client.get("/items/count")
    with service_client(second) as client:
        page = MetricsSnapshot(client.get("/metrics").text)

    assert page.label_values(DURATION, "http_route") == set()
    assert "GET /items/count" not in other_recorder.names()


def test_a_base_path_from_servers_labels_api_and_docs(
    tiny: ModuleType, tmp_path: Path, database_url: str
) -> None:
    document = yaml.safe_load((tiny.SERVICE_DIR / "openapi.yaml").read_text())
    document["servers"] = [{"url": "/api/v1"}]
    (tmp_path / "openapi.yaml").write_text(yaml.safe_dump(document))
    shutil.copy(tiny.SERVICE_DIR / "config.yml", tmp_path)
    recorder = SpanRecorder()
    settings = hermetic_settings(tiny.TinySettings, tmp_path, database_url=database_url)
    service = Service(
        settings,
        spec=tmp_path / "openapi.yaml",
        handlers=tiny.load_handlers(),
        span_processors=[recorder.processor],
    )
    with service.database.engine.begin() as connection:
        connection.exec_driver_sql(tiny.load_handlers().SCHEMA)

    with service_client(service) as client:
        statuses = [
            client.get(path).status_code
            for path in ("/api/v1/items/count", "/api/v1/openapi.json", "/openapi.json")
        ]

    assert statuses == [200, 200, 404]
    assert [span.name for span in server_spans(recorder)] == [
        "GET /api/v1/items/count",
        "GET /api/v1/openapi.json",
        "GET NOT_FOUND",
    ]


def test_components_are_provided_by_type_and_locked_once_serving(service: Service) -> None:
    class Cache:
        pass

    cache = Cache()
    service.provide(cache)
    assert service.component(Cache) is cache
    with pytest.raises(KeyError, match="no int"):
        service.component(int)
    with service_client(service), pytest.raises(SetupLockedError):
        service.provide(Cache())

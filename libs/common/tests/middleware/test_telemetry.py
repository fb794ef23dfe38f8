import asyncio
import json
from collections.abc import MutableMapping
from http import HTTPStatus
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.trace import SpanKind, StatusCode
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send

from chassis.client import DependencyUnavailable
from chassis.config import LoggingSection
from chassis.logging import configure_logging
from chassis.metrics import ServiceMetrics
from chassis.middleware.problems import ProblemMiddleware
from chassis.middleware.telemetry import PROBE_ROUTES, TelemetryMiddleware
from chassis.routes import RouteTable
from chassis.testing import MetricsSnapshot, SpanRecorder, capture_logs
from chassis.tracing import current_trace_id

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
DURATION = "http_server_request_duration_seconds_count"
OPENMETRICS = "application/openmetrics-text; version=1.0.0"
PROBES = ["/metrics", "/health/live", "/health/ready", "/healthcheck"]


class Probe:
    """The wrapped app: answers by path and records what it saw."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        self.metrics = metrics
        self.seen: list[dict[str, Any]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            self.seen.append({"type": scope["type"]})
            return
        active = MetricsSnapshot(self.metrics.exposition(None)[0].decode())
        self.seen.append(
            {
                "trace_id": current_trace_id(),
                "active": active.value("http_server_active_requests", http_request_method="GET"),
            }
        )
        path = scope["path"]
        if path == "/fail":
            raise RuntimeError("boom")
        if path == "/unavailable":
            await PlainTextResponse("busy", status_code=503)(scope, receive, send)
        elif path == "/enum":  # an application that answers with an HTTPStatus member
            await PlainTextResponse("busy", status_code=HTTPStatus.SERVICE_UNAVAILABLE)(
                scope, receive, send
            )
        elif path in PROBES or path == "/info":
            down = scope.get("query_string") == b"down"  # a readiness that fails
            await PlainTextResponse("DOWN" if down else "UP", status_code=503 if down else 200)(
                scope, receive, send
            )
        elif path.startswith("/books/"):
            await JSONResponse({"id": path.rsplit("/", 1)[-1]})(scope, receive, send)
        else:
            await PlainTextResponse("no", status_code=404)(scope, receive, send)


@pytest.fixture
def metrics() -> ServiceMetrics:
    return ServiceMetrics()


@pytest.fixture
def probe(metrics: ServiceMetrics) -> Probe:
    return Probe(metrics)


def middleware(
    probe: Probe, metrics: ServiceMetrics, recorder: SpanRecorder, *, access_log: bool = True
) -> TelemetryMiddleware:
    provider = TracerProvider()
    provider.add_span_processor(recorder.processor)
    return TelemetryMiddleware(
        probe,
        tracer=provider.get_tracer("tests"),
        metrics=metrics,
        routes=RouteTable(["/books/{book_id}", "/fail", "/unavailable", "/enum", *PROBES, "/info"]),
        access_log_enabled=access_log,
    )


@pytest.fixture
def client(probe: Probe, metrics: ServiceMetrics, recorder: SpanRecorder) -> TestClient:
    return TestClient(middleware(probe, metrics, recorder), raise_server_exceptions=False)


def snapshot(metrics: ServiceMetrics, accept: str | None = None) -> MetricsSnapshot:
    return MetricsSnapshot(metrics.exposition(accept)[0].decode())


def only_span(recorder: SpanRecorder) -> ReadableSpan:
    (span,) = recorder.spans()
    return span


def test_a_request_gets_a_server_span_named_by_its_template(
    client: TestClient, recorder: SpanRecorder
) -> None:
    response = client.get("/books/42", headers={"User-Agent": "tests/1"})

    span = only_span(recorder)
    assert response.status_code == 200
    assert span.name == "GET /books/{book_id}"
    assert span.kind == SpanKind.SERVER
    assert span.status.status_code == StatusCode.UNSET
    assert dict(span.attributes or {}) == {
        "http.request.method": "GET",
        "http.route": "/books/{book_id}",
        "url.path": "/books/42",
        "url.scheme": "http",
        "client.address": "testclient",
        "user_agent.original": "tests/1",
        "http.response.status_code": 200,
    }


def test_the_span_is_current_inside_the_app(
    client: TestClient, probe: Probe, recorder: SpanRecorder
) -> None:
    client.get("/books/1")

    trace_id = format(only_span(recorder).context.trace_id, "032x")
    assert probe.seen[0]["trace_id"] == trace_id


def test_a_request_is_measured_by_template_method_and_status(
    client: TestClient, metrics: ServiceMetrics, probe: Probe
) -> None:
    client.get("/books/1")
    client.get("/books/2")
    client.get("/nope/3")

    values = snapshot(metrics)
    assert values.value(DURATION, http_route="/books/{book_id}", http_request_method="GET") == 2
    assert values.value(DURATION, http_route="NOT_FOUND", http_response_status_code="404") == 1
    assert values.label_values(DURATION, "http_route") == {"/books/{book_id}", "NOT_FOUND"}
    assert values.value("http_server_active_requests", http_request_method="GET") == 0
    assert [seen["active"] for seen in probe.seen] == [1, 1, 1]


def test_an_unmatched_path_is_a_not_found_span(client: TestClient, recorder: SpanRecorder) -> None:
    client.get("/nope/3")

    span = only_span(recorder)
    assert span.name == "GET NOT_FOUND"
    assert (span.attributes or {})["url.path"] == "/nope/3"


def test_an_unknown_method_is_other(
    client: TestClient, recorder: SpanRecorder, metrics: ServiceMetrics
) -> None:
    client.request("PURGE", "/books/1")

    assert only_span(recorder).name == "_OTHER /books/{book_id}"
    assert snapshot(metrics).value(DURATION, http_request_method="_OTHER") == 1


def test_a_server_error_answer_marks_the_span_as_an_error(
    client: TestClient, recorder: SpanRecorder
) -> None:
    client.get("/unavailable")

    span = only_span(recorder)
    assert span.status.status_code == StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == "503"


def test_a_client_error_answer_is_not_a_span_error(
    client: TestClient, recorder: SpanRecorder
) -> None:
    client.get("/nope")

    assert only_span(recorder).status.status_code == StatusCode.UNSET


def test_an_exception_is_recorded_measured_as_500_and_re_raised(
    probe: Probe, metrics: ServiceMetrics, recorder: SpanRecorder
) -> None:
    raising_client = TestClient(middleware(probe, metrics, recorder))

    with pytest.raises(RuntimeError, match="boom"):
        raising_client.get("/fail")

    span = only_span(recorder)
    assert span.status.status_code == StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == "RuntimeError"
    assert (span.attributes or {})["http.response.status_code"] == 500
    assert [event.name for event in span.events] == ["exception"]
    assert snapshot(metrics).value(DURATION, http_route="/fail", http_response_status_code="500")
    assert snapshot(metrics).value("http_server_active_requests", http_request_method="GET") == 0


def test_an_incoming_traceparent_is_honoured(
    client: TestClient, probe: Probe, recorder: SpanRecorder, metrics: ServiceMetrics
) -> None:
    client.get("/books/1", headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})

    span = only_span(recorder)
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert span.parent is not None
    assert format(span.parent.span_id, "016x") == PARENT_ID
    assert span.parent.is_remote
    assert probe.seen[0]["trace_id"] == TRACE_ID
    exposition = metrics.exposition(OPENMETRICS)[0].decode()
    assert f'trace_id="{TRACE_ID}"' in exposition


def test_an_unsampled_request_has_no_exemplar(
    client: TestClient, recorder: SpanRecorder, metrics: ServiceMetrics
) -> None:
    client.get("/books/1", headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-00"})

    assert recorder.spans() == []
    assert snapshot(metrics).value(DURATION, http_route="/books/{book_id}") == 1
    assert "trace_id" not in metrics.exposition(OPENMETRICS)[0].decode()


def test_one_access_log_event_per_request(client: TestClient) -> None:
    with capture_logs() as events:
        client.get("/books/7")
        client.request("PURGE", "/nope")

    access = [event for event in events if event["event"] == "request"]
    assert len(access) == 2
    first, second = access
    assert {k: first[k] for k in ("method", "route", "path", "status")} == {
        "method": "GET",
        "route": "/books/{book_id}",
        "path": "/books/7",
        "status": 200,
    }
    assert first["log_level"] == "info"
    assert first["duration_ms"] >= 0
    assert (second["method"], second["route"], second["status"]) == ("_OTHER", "NOT_FOUND", 404)


def test_the_access_log_can_be_switched_off(
    probe: Probe, metrics: ServiceMetrics, recorder: SpanRecorder
) -> None:
    quiet = TestClient(middleware(probe, metrics, recorder, access_log=False))

    with capture_logs() as events:
        quiet.get("/books/7")

    assert [event for event in events if event["event"] == "request"] == []
    assert recorder.names() == ["GET /books/{book_id}"]


# -- probes and scrapes in the access log ---------------------------------------------------------


def access_events(events: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [event for event in events if event["event"] == "request"]


def test_the_probe_routes_are_the_health_checks_and_the_scrape() -> None:
    assert set(PROBES) == PROBE_ROUTES


@pytest.mark.parametrize("path", PROBES)
def test_a_probe_or_scrape_is_logged_at_debug_but_traced_and_measured_as_before(
    client: TestClient, recorder: SpanRecorder, metrics: ServiceMetrics, path: str
) -> None:
    with capture_logs() as events:
        response = client.get(path)

    assert response.status_code == 200
    (access,) = access_events(events)
    assert (access["log_level"], access["route"], access["status"]) == ("debug", path, 200)
    assert recorder.names() == [f"GET {path}"]
    assert (
        snapshot(metrics).value(
            DURATION, http_route=path, http_request_method="GET", http_response_status_code="200"
        )
        == 1
    )


def test_a_failing_probe_is_news_and_logged_at_info(client: TestClient) -> None:
    with capture_logs() as events:
        response = client.get("/health/ready?down")

    assert response.status_code == 503
    (access,) = access_events(events)
    assert (access["log_level"], access["status"]) == ("info", 503)


@pytest.mark.parametrize("path", ["/books/7", "/info", "/nope", "/health/live/x"])
def test_every_other_request_is_logged_at_info(client: TestClient, path: str) -> None:
    with capture_logs() as events:
        client.get(path)

    assert [event["log_level"] for event in access_events(events)] == ["info"]


def access_lines(out: str) -> list[dict[str, Any]]:
    lines = [json.loads(raw) for raw in out.splitlines()]
    return [line for line in lines if line["logger"] == "chassis.access"]


def test_at_info_level_a_probe_leaves_no_line_at_debug_level_it_does(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("svc", LoggingSection(level="INFO"))
    client.get("/health/ready")
    client.get("/books/1")
    at_info = access_lines(capsys.readouterr().out)
    configure_logging("svc", LoggingSection(level="DEBUG"))
    client.get("/health/ready")
    at_debug = access_lines(capsys.readouterr().out)

    assert [(line["level"], line["route"]) for line in at_info] == [("info", "/books/{book_id}")]
    assert [(line["level"], line["route"]) for line in at_debug] == [("debug", "/health/ready")]


def test_which_routes_are_probes_can_be_chosen(
    probe: Probe, metrics: ServiceMetrics, recorder: SpanRecorder
) -> None:
    provider = TracerProvider()
    app = TelemetryMiddleware(
        probe,
        tracer=provider.get_tracer("tests"),
        metrics=metrics,
        routes=RouteTable(["/books/{book_id}", "/metrics"]),
        probe_routes=["/books/{book_id}"],
    )

    with capture_logs() as events:
        TestClient(app).get("/books/1")
        TestClient(app).get("/metrics")

    assert [(e["route"], e["log_level"]) for e in access_events(events)] == [
        ("/books/{book_id}", "debug"),
        ("/metrics", "info"),
    ]


# -- statuses are plain numbers ------------------------------------------------------------------


def test_an_http_status_member_is_logged_traced_and_measured_as_a_plain_number(
    client: TestClient, recorder: SpanRecorder, metrics: ServiceMetrics
) -> None:
    with capture_logs() as events:
        assert client.get("/enum").status_code == 503

    (access,) = access_events(events)
    assert type(access["status"]) is int
    assert access["status"] == 503
    span_status = (only_span(recorder).attributes or {})["http.response.status_code"]
    assert type(span_status) is int
    assert span_status == 503
    assert snapshot(metrics).label_values(DURATION, "http_response_status_code") == {"503"}


@pytest.mark.parametrize("log_format", ["console", "json"])
def test_a_dependency_problem_logs_its_status_as_a_number(
    metrics: ServiceMetrics,
    recorder: SpanRecorder,
    capsys: pytest.CaptureFixture[str],
    log_format: str,
) -> None:
    """Shop's case: a client exception, rendered by the problem middleware."""

    async def calls_books(scope: Scope, receive: Receive, send: Send) -> None:
        raise DependencyUnavailable("books", "books answered 503")

    provider = TracerProvider()
    provider.add_span_processor(recorder.processor)
    app = TelemetryMiddleware(
        ProblemMiddleware(calls_books),
        tracer=provider.get_tracer("tests"),
        metrics=metrics,
        routes=RouteTable(["/orders"]),
    )
    configure_logging("shop", LoggingSection(format=log_format))

    assert TestClient(app).get("/orders").status_code == 503

    out = capsys.readouterr().out
    assert "HTTPStatus" not in out
    if log_format == "console":
        assert " status=503 " in out, out
    else:
        (line,) = [json.loads(raw) for raw in out.splitlines()]
        assert type(line["status"]) is int
        assert line["status"] == 503
    assert type((only_span(recorder).attributes or {})["http.response.status_code"]) is int
    assert snapshot(metrics).label_values(DURATION, "http_response_status_code") == {"503"}


@pytest.mark.parametrize("scope_type", ["lifespan", "websocket"])
def test_other_scopes_pass_through_untouched(
    probe: Probe, metrics: ServiceMetrics, recorder: SpanRecorder, scope_type: str
) -> None:
    app = middleware(probe, metrics, recorder)

    async def nothing() -> dict[str, Any]:
        return {}

    async def ignore(_: Any) -> None: ...

    asyncio.run(app({"type": scope_type, "path": "/books/1"}, nothing, ignore))

    assert probe.seen == [{"type": scope_type}]
    assert recorder.spans() == []


# -- the incoming trace context ------------------------------------------------------------------


def test_with_the_chassis_propagators_a_request_without_their_headers_starts_a_new_trace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from opentelemetry import baggage, propagate, trace

    from chassis.middleware.telemetry import _extract
    from chassis.tracing import CHASSIS_PROPAGATOR

    propagate.set_global_textmap(CHASSIS_PROPAGATOR)
    asked: list[Any] = []

    def ask(*args: Any, **kwargs: Any) -> None:
        asked.append(args)

    monkeypatch.setattr(propagate, "extract", ask)

    plain = _extract([(b"host", b"x"), (b"user-agent", b"wrk")])

    assert plain == {}
    assert not trace.get_current_span(plain).get_span_context().is_valid
    assert asked == []  # nobody had to look
    monkeypatch.undo()
    propagate.set_global_textmap(CHASSIS_PROPAGATOR)
    traced = _extract([(b"traceparent", f"00-{TRACE_ID}-{PARENT_ID}-01".encode())])
    with_baggage = _extract([(b"baggage", b"tenant=acme")])
    assert format(trace.get_current_span(traced).get_span_context().trace_id, "032x") == TRACE_ID
    assert baggage.get_all(with_baggage) == {"tenant": "acme"}


def test_another_global_propagator_is_always_asked() -> None:
    from opentelemetry import context, propagate
    from opentelemetry.propagators.textmap import TextMapPropagator

    from chassis.middleware.telemetry import _extract

    class Tenant(TextMapPropagator):
        def extract(self, carrier: Any, context: Any = None, getter: Any = None) -> Any:
            return context_module.set_value("tenant", "always", context)

        def inject(self, *args: Any, **kwargs: Any) -> None:
            pass

        @property
        def fields(self) -> set[str]:
            return {"x-tenant"}

    context_module = context
    propagate.set_global_textmap(Tenant())

    assert context.get_value("tenant", _extract([(b"host", b"x")])) == "always"

"""The resilient client against a real local HTTP server that fails on cue."""

from __future__ import annotations

import asyncio
import math
import random
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry import baggage, context
from opentelemetry.sdk.trace import TracerProvider

from chassis.breaker import BreakerPolicy, CircuitOpenError, State
from chassis.client import (
    BadGateway,
    DependencyTimeout,
    DependencyUnavailable,
    ResilientTransport,
    ServiceClient,
    Timeouts,
)
from chassis.errors import ProblemError
from chassis.health import DEGRADED, DOWN, UP
from chassis.metrics import ServiceMetrics
from chassis.retry import RetryPolicy, retry_after_seconds
from chassis.testing import SpanRecorder, capture_logs


@dataclass
class Reply:
    status: int = 200
    body: bytes = b'{"ok": true}'
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    at: float


class FlakyServer:
    """Answers each request with the next scripted reply (the last one repeats)."""

    def __init__(self) -> None:
        self.script: list[Reply] = [Reply()]
        self.seen: list[Seen] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                server.seen.append(
                    Seen(self.command, self.path, dict(self.headers), time.monotonic())
                )
                reply = server.script.pop(0) if len(server.script) > 1 else server.script[0]
                time.sleep(reply.delay)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            do_GET = do_POST = do_DELETE = _answer

            def log_message(self, *_: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[FlakyServer]:
    flaky = FlakyServer()
    yield flaky
    flaky.close()


@pytest.fixture
def recorder() -> SpanRecorder:
    return SpanRecorder()


@pytest.fixture
def provider(recorder: SpanRecorder) -> TracerProvider:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(recorder.processor)
    return tracer_provider


@pytest.fixture
def metrics() -> ServiceMetrics:
    return ServiceMetrics()


def make_client(
    url: str,
    metrics: ServiceMetrics,
    provider: TracerProvider,
    *,
    breaker: BreakerPolicy | None = None,
    timeouts: Timeouts | None = None,
    retry: RetryPolicy | None = None,
) -> ServiceClient:
    return ServiceClient(
        "books",
        url,
        metrics=metrics,
        tracer=provider.get_tracer("test"),
        timeouts=timeouts or Timeouts(connect_seconds=0.5, read_seconds=1, deadline_seconds=5),
        retry=retry or RetryPolicy(base_seconds=0.01, cap_seconds=0.05),
        breaker=breaker,
    )


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def sample(metrics: ServiceMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return math.nan if value is None else value


# -- retry policy -------------------------------------------------------------------------------


def test_backoff_is_full_jitter_under_an_exponential_ceiling() -> None:
    policy = RetryPolicy()  # base 50 ms, cap 1 s
    rng = random.Random(7)
    for retry_number, ceiling in [(1, 0.05), (2, 0.1), (3, 0.2), (6, 1.0), (12, 1.0)]:
        waits = [policy.backoff(retry_number, rng) for _ in range(500)]
        assert all(0 <= w <= ceiling for w in waits)
        assert max(waits) > ceiling * 0.8  # the whole range is used, not a constant


def test_only_idempotent_requests_or_keyed_posts_may_retry() -> None:
    policy = RetryPolicy()
    assert policy.may_retry("GET")
    assert policy.may_retry("DELETE")
    assert policy.may_retry("PUT")
    assert not policy.may_retry("POST")
    assert not policy.may_retry("PATCH")
    assert policy.may_retry("POST", {"Idempotency-Key": "abc"})


def test_retry_after_reads_seconds_and_http_dates() -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("3") == 3
    assert retry_after_seconds("Thu, 01 Jan 2026 12:00:02 GMT", now=now) == 2
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


# -- retries against a real server ----------------------------------------------------------------


def test_get_is_retried_on_503_then_succeeds(
    server: FlakyServer, metrics: ServiceMetrics, provider: TracerProvider
) -> None:
    server.script = [Reply(503), Reply(502), Reply(200)]
    response = make_client(server.url, metrics, provider).get("/books/{id}", id=1)
    assert response.status_code == 200
    assert len(server.seen) == 3
    assert sample(metrics, "http_client_retries_total", peer_service="books") == 2


def test_gives_up_after_three_attempts_with_a_502_problem(
    server: FlakyServer, metrics: ServiceMetrics, provider: TracerProvider
) -> None:
    server.script = [Reply(502)]
    with pytest.raises(BadGateway) as raised:
        make_client(server.url, metrics, provider).get("/books/1")
    assert len(server.seen) == 3
    assert raised.value.status == 502
    assert "books" in raised.value.detail


def test_no_retry_on_4xx(
    server: FlakyServer, metrics: ServiceMetrics, provider: TracerProvider
) -> None:
    server.script = [Reply(404, b'{"detail": "no such book"}')]
    response = make_client(server.url, metrics, provider).get("/books/9")
    assert response.status_code == 404
    assert len(server.seen) == 1


def test_no_retry_on_500(
    server: FlakyServer, metrics: ServiceMetrics, provider: TracerProvider
) -> None:
    server.script = [Reply(500)]
    with pytest.raises(BadGateway):
        make_client(server.url, metrics, provider).get("/books/9")
    assert len(server.seen) == 1


def test_post_without_key_is_not_retried_with_key_it_is(
    server: FlakyServer, metrics: ServiceMetrics, provider: TracerProvider
) -> None:
    client = make_client(server.url, metrics, provider)
    server.script = [Reply(503)]
    with pytest.raises(DependencyUnavailable):
        client.post("/orders", json={"x": 1})
    assert len(server.seen) == 1
    server.seen.clear()
    server.script = [Reply(503), Reply(201)]
    response = client.post("/orders", json={"x": 1}, headers={"Idempotency-Key": "k1"})
    assert response.status_code == 201
    assert len(server.seen) == 2
    assert server.seen[1].headers["Idempotency-Key"] == "k1"


def test_retry_after_is_honoured(
    server: FlakyServer, metrics: ServiceMetrics, provider: TracerProvider
) -> None:
    server.script = [Reply(503, headers={"Retry-After": "1"}), Reply(200)]
    make_client(server.url, metrics, provider).get("/books/1")
    gap = server.seen[1].at - server.seen[0].at
    assert 1.0 <= gap < 1.5


def test_backoff_waits_are_bounded(metrics: ServiceMetrics, provider: TracerProvider) -> None:
    import httpx

    waits: list[float] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    transport = ResilientTransport(
        "books",
        httpx.MockTransport(refuse),
        timeouts=Timeouts(),
        retry=RetryPolicy(),
        breaker=None,
        metrics=metrics,
        tracer=provider.get_tracer("test"),
        sleep=waits.append,
    )
    with pytest.raises(httpx.ConnectError), httpx.Client(transport=transport) as client:
        client.get("http://books/books/1")
    assert len(waits) == 2  # three attempts
    assert 0 <= waits[0] <= 0.05
    assert 0 <= waits[1] <= 0.1


def test_connection_refused_is_a_503_naming_the_dependency(
    metrics: ServiceMetrics, provider: TracerProvider
) -> None:
    client = make_client(f"http://127.0.0.1:{closed_port()}", metrics, provider)
    with pytest.raises(DependencyUnavailable) as raised:
        client.get("/books/1")
    assert raised.value.status == 503
    assert raised.value.extensions["dependency"] == "books"
    assert sample(metrics, "http_client_retries_total", peer_service="books") == 2
    assert (
        sample(
            metrics,
            "http_client_request_duration_seconds_count",
            peer_service="books",
            http_request_method="GET",
            http_response_status_code="",
            error_type="ConnectError",
        )
        == 3
    )


def test_read_timeout_is_a_504(
    server: FlakyServer, metrics: ServiceMetrics, provider: TracerProvider
) -> None:
    server.script = [Reply(200, delay=0.6)]
    client = make_client(
        server.url,
        metrics,
        provider,
        timeouts=Timeouts(read_seconds=0.2, deadline_seconds=5),
        retry=RetryPolicy(max_attempts=1),
    )
    started = time.monotonic()
    with pytest.raises(DependencyTimeout) as raised:
        client.get("/books/1")
    assert raised.value.status == 504
    assert time.monotonic() - started < 0.5


def test_the_overall_deadline_bounds_all_attempts(
    server: FlakyServer, metrics: ServiceMetrics, provider: TracerProvider
) -> None:
    server.script = [Reply(200, delay=0.5)]
    client = make_client(
        server.url,
        metrics,
        provider,
        timeouts=Timeouts(read_seconds=0.4, deadline_seconds=0.7),
    )
    started = time.monotonic()
    with pytest.raises(DependencyTimeout):
        client.get("/books/1")
    assert time.monotonic() - started < 1.0


# -- breaker through the client ---------------------------------------------------------------


FAST_TRIP = BreakerPolicy(window_size=4, minimum_calls=2, open_seconds=0.3, half_open_calls=1)


def test_open_breaker_answers_at_once_and_is_never_retried(
    server: FlakyServer, metrics: ServiceMetrics, provider: TracerProvider
) -> None:
    server.script = [Reply(500)]
    client = make_client(server.url, metrics, provider, breaker=FAST_TRIP)
    for _ in range(2):
        with pytest.raises(BadGateway):
            client.get("/books/1")
    assert client.breaker is not None
    assert client.breaker.state is State.OPEN
    seen = len(server.seen)
    started = time.perf_counter()
    with pytest.raises(CircuitOpenError) as raised:
        client.get("/books/1")
    assert time.perf_counter() - started < 0.01
    assert len(server.seen) == seen
    assert int(raised.value.headers["Retry-After"]) >= 1
    assert sample(metrics, "circuit_breaker_calls_total", peer_service="books", outcome="rejected")
    assert sample(metrics, "circuit_breaker_state", peer_service="books", state="open") == 1
    assert sample(metrics, "circuit_breaker_state", peer_service="books", state="closed") == 0


def test_breaker_recovers_through_half_open_and_logs_each_change(
    server: FlakyServer, metrics: ServiceMetrics, provider: TracerProvider
) -> None:
    server.script = [Reply(500), Reply(500), Reply(200)]
    client = make_client(server.url, metrics, provider, breaker=FAST_TRIP)
    check = client.health_check()
    with capture_logs() as logs:
        for _ in range(2):
            with pytest.raises(BadGateway):
                client.get("/books/1")
        assert asyncio.run(check.check()).status == DOWN
        time.sleep(0.35)
        assert asyncio.run(check.check()).status == DEGRADED  # half-open
        assert client.get("/books/1").status_code == 200
        assert asyncio.run(check.check()).status == UP
    changes = [
        (e["previous_state"], e["state"]) for e in logs if e["event"].startswith("circuit breaker")
    ]
    assert changes == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    assert sample(metrics, "circuit_breaker_state", peer_service="books", state="closed") == 1


# -- statuses are plain numbers ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (DependencyUnavailable("books", "books answered 503"), 503),
        (DependencyTimeout("books", "books timed out"), 504),
        (BadGateway("books", "books answered 500"), 502),
        (CircuitOpenError("books", retry_after_seconds=3), 503),
    ],
)
def test_the_client_errors_carry_plain_int_statuses(error: ProblemError, status: int) -> None:
    """What shop renders and logs: an HTTPStatus member logged as <HTTPStatus.X: 503>."""
    assert type(error.status) is int
    assert error.status == status
    assert repr(error.status) == str(status)


@pytest.mark.parametrize(("answered", "raised"), [(503, 503), (504, 504), (500, 502)])
def test_a_failed_call_raises_a_plain_int_status_and_measures_the_number(
    server: FlakyServer,
    metrics: ServiceMetrics,
    provider: TracerProvider,
    recorder: SpanRecorder,
    answered: int,
    raised: int,
) -> None:
    server.script = [Reply(answered)]
    client = make_client(server.url, metrics, provider, retry=RetryPolicy(max_attempts=1))

    with pytest.raises(ProblemError) as caught:
        client.get("/books/{book_id}", book_id=1)

    assert type(caught.value.status) is int
    assert caught.value.status == raised
    (span,) = recorder.spans()
    assert type((span.attributes or {})["http.response.status_code"]) is int
    labels = {"peer_service": "books", "http_request_method": "GET", "error_type": ""}
    count = "http_client_request_duration_seconds_count"
    assert sample(metrics, count, **labels, http_response_status_code=str(answered)) == 1


def test_breaker_logs_carry_no_enum_members(
    server: FlakyServer, metrics: ServiceMetrics, provider: TracerProvider
) -> None:
    server.script = [Reply(500)]
    client = make_client(server.url, metrics, provider, breaker=FAST_TRIP)
    with capture_logs() as logs:
        for _ in range(2):
            with pytest.raises(BadGateway):
                client.get("/books/1")

    (opened,) = [e for e in logs if e["event"] == "circuit breaker state changed"]
    assert all(type(value) in (str, int, float, bool) for value in opened.values()), opened


# -- telemetry ----------------------------------------------------------------------------------


def test_trace_context_and_baggage_reach_the_dependency(
    server: FlakyServer, metrics: ServiceMetrics, provider: TracerProvider, recorder: SpanRecorder
) -> None:
    from opentelemetry.baggage.propagation import W3CBaggagePropagator
    from opentelemetry.propagate import set_global_textmap
    from opentelemetry.propagators.composite import CompositePropagator
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    set_global_textmap(
        CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
    )
    client = make_client(server.url, metrics, provider)
    token = context.attach(baggage.set_baggage("order.id", "o-42"))
    try:
        with provider.get_tracer("test").start_as_current_span("handler") as parent:
            client.get("/books/{book_id}", book_id=7)
    finally:
        context.detach(token)
    headers = {k.lower(): v for k, v in server.seen[0].headers.items()}
    client_span = recorder.spans("GET /books/{book_id}")[0]
    trace_id = format(parent.get_span_context().trace_id, "032x")
    span_id = format(client_span.context.span_id, "016x")
    assert headers["traceparent"].startswith(f"00-{trace_id}-{span_id}-")
    assert "order.id=o-42" in headers["baggage"]
    assert client_span.parent is not None
    assert client_span.parent.span_id == parent.get_span_context().span_id
    assert client_span.attributes is not None
    assert client_span.attributes["http.response.status_code"] == 200
    assert client_span.attributes["peer.service"] == "books"


def test_each_attempt_is_its_own_span_and_sample(
    server: FlakyServer, metrics: ServiceMetrics, provider: TracerProvider, recorder: SpanRecorder
) -> None:
    server.script = [Reply(503), Reply(200)]
    make_client(server.url, metrics, provider).get("/books/1")
    spans = recorder.spans("GET /books/1")
    assert len(spans) == 2
    assert spans[1].attributes is not None
    assert spans[1].attributes["http.request.resend_count"] == 1
    labels = {"peer_service": "books", "http_request_method": "GET", "error_type": ""}
    count = "http_client_request_duration_seconds_count"
    assert sample(metrics, count, **labels, http_response_status_code="503") == 1
    assert sample(metrics, count, **labels, http_response_status_code="200") == 1

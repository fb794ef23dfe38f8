import asyncio
from typing import Any

import pytest
import sqlalchemy as sa
from connexion.exceptions import BadRequestProblem, ProblemException
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import PlainTextResponse
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chassis import ConflictError, ServiceUnavailable
from chassis.breaker import CircuitOpenError
from chassis.client import BadGateway, DependencyTimeout, DependencyUnavailable
from chassis.middleware.problems import INTERNAL_ERROR_DETAIL, ProblemMiddleware
from chassis.testing import SpanRecorder, capture_logs

SECRET = "postgresql://app:s3cret@db/app"


def raising(exc: BaseException) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise exc

    return app


def in_span(app: ASGIApp, recorder: SpanRecorder) -> ASGIApp:
    """Runs ``app`` inside a current span, as the telemetry middleware would."""
    provider = TracerProvider()
    provider.add_span_processor(recorder.processor)
    tracer = provider.get_tracer("tests")

    async def traced(scope: Scope, receive: Receive, send: Send) -> None:
        with tracer.start_as_current_span("request"):
            await app(scope, receive, send)

    return traced


def answer(exc: BaseException, recorder: SpanRecorder | None = None) -> Any:
    app: ASGIApp = ProblemMiddleware(raising(exc))
    if recorder is not None:
        app = in_span(app, recorder)
    return TestClient(app).get("/x")


def test_a_chassis_problem_keeps_its_status_detail_and_headers() -> None:
    response = answer(ServiceUnavailable("books: circuit open", retry_after_seconds=10))

    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "10"
    assert response.json() == {
        "type": "about:blank",
        "title": "Service Unavailable",
        "status": 503,
        "detail": "books: circuit open",
        "trace_id": None,
    }


def test_the_problem_carries_the_current_trace_id(recorder: SpanRecorder) -> None:
    response = answer(ConflictError("isbn: exists already"), recorder)

    (span,) = recorder.spans()
    assert response.status_code == 409
    assert response.json()["trace_id"] == format(span.context.trace_id, "032x")


def test_a_connexion_problem_is_rendered_with_its_extensions() -> None:
    problem = ProblemException(
        status=400,
        title="Bad Request",
        detail="'name' is a required property",
        ext={"field": "name", "trace_id": "forged", "status": 999},
    )

    response = answer(problem)

    assert response.status_code == 400
    body = response.json()
    assert body["detail"] == "'name' is a required property"
    assert body["field"] == "name"
    assert body["status"] == 400
    assert body["trace_id"] is None


def test_a_connexion_validation_problem_is_a_400() -> None:
    response = answer(BadRequestProblem(detail="limit: 0 is less than the minimum of 1"))

    assert response.status_code == 400
    assert response.json()["detail"] == "limit: 0 is less than the minimum of 1"
    assert response.json()["title"] == "Bad Request"


def test_a_long_validation_detail_keeps_its_start_and_the_field_name() -> None:
    long_value = "x" * 5000
    response = answer(BadRequestProblem(detail=f"'{long_value}' is too long - 'text'"))

    detail = response.json()["detail"]
    assert len(detail) <= 300
    assert detail.startswith("'xxx")
    assert detail.endswith("is too long - 'text'")


def test_a_starlette_http_exception_keeps_its_status_and_headers() -> None:
    response = answer(HTTPException(405, headers={"Allow": "GET"}))

    assert response.status_code == 405
    assert response.headers["allow"] == "GET"
    assert response.json()["title"] == "Method Not Allowed"
    assert response.json()["detail"] == "Method Not Allowed"


def test_an_unexpected_exception_is_a_500_without_internals(recorder: SpanRecorder) -> None:
    error = RuntimeError(f"cannot connect to {SECRET}: SELECT * FROM book")

    with capture_logs() as events:
        response = answer(error, recorder)

    assert response.status_code == 500
    body = response.json()
    assert body["detail"] == INTERNAL_ERROR_DETAIL
    assert body["title"] == "Internal Server Error"
    assert "s3cret" not in response.text
    assert "SELECT" not in response.text
    assert "Traceback" not in response.text
    assert "RuntimeError" not in response.text
    (span,) = recorder.spans()
    assert body["trace_id"] == format(span.context.trace_id, "032x")
    assert [event.name for event in span.events] == ["exception"]
    (logged,) = [event for event in events if event["log_level"] == "error"]
    assert logged["event"] == "unhandled error"
    assert logged["exc_info"] is error


def test_a_client_gone_mid_body_is_a_499_logged_without_a_trace(recorder: SpanRecorder) -> None:
    with capture_logs() as events:
        response = answer(ClientDisconnect(), recorder)

    assert response.status_code == 499
    assert response.json()["title"] == "Client Closed Request"
    assert [event["log_level"] for event in events] == ["info"]
    assert "exc_info" not in events[0]
    (span,) = recorder.spans()
    assert span.events == ()


def test_a_lost_database_connection_an_async_handler_met_is_a_503_without_internals() -> None:
    driver_message = f"could not connect to {SECRET}: connection refused"
    error = sa.exc.OperationalError("SELECT 1", {}, Exception(driver_message))
    error.connection_invalidated = True

    with capture_logs() as events:
        response = answer(error)

    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json()["detail"] == "the database is unavailable"
    assert "s3cret" not in response.text
    assert "SELECT" not in response.text
    (logged,) = events
    assert (logged["log_level"], logged["event"]) == ("warning", "database unavailable")
    assert "s3cret" not in repr(events)


def test_an_error_after_the_answer_started_is_re_raised() -> None:
    async def half_answer(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise RuntimeError("mid-stream")

    client = TestClient(ProblemMiddleware(half_answer))

    with pytest.raises(RuntimeError, match="mid-stream"):
        client.get("/x")


def test_a_normal_answer_passes_through() -> None:
    client = TestClient(ProblemMiddleware(PlainTextResponse("fine", status_code=201)))

    response = client.get("/x")

    assert (response.status_code, response.text) == (201, "fine")


def test_other_scopes_pass_through() -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    async def nothing() -> dict[str, Any]:
        return {}

    async def ignore(_: Any) -> None: ...

    asyncio.run(ProblemMiddleware(app)({"type": "lifespan"}, nothing, ignore))

    assert seen == ["lifespan"]
    assert trace.get_current_span() is trace.INVALID_SPAN


@pytest.mark.parametrize(
    "exc",
    [
        DependencyUnavailable("books", "books answered 503"),
        DependencyTimeout("books", "books timed out"),
        BadGateway("books", "books answered 500"),
        CircuitOpenError("books", retry_after_seconds=2),
        ServiceUnavailable("busy"),
        ProblemException(status=409, title="Conflict", detail="taken"),
        HTTPException(405),
        RuntimeError("boom"),
    ],
)
def test_the_answer_starts_with_a_plain_int_status(exc: Exception) -> None:
    """What the telemetry middleware logs, traces and measures as the request's status."""
    started: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            started.append(message)

    scope: Scope = {"type": "http", "method": "GET", "path": "/x", "headers": []}
    asyncio.run(ProblemMiddleware(raising(exc))(scope, receive, send))

    (start,) = started
    assert type(start["status"]) is int

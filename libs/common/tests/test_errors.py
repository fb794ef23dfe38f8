import json
from http import HTTPStatus

import pytest
from opentelemetry.sdk.trace import TracerProvider

from chassis import (
    BadRequestError,
    ChassisError,
    ConflictError,
    DatabaseUnavailable,
    NotFoundError,
    ProblemError,
    ServiceUnavailable,
    UnprocessableError,
)
from chassis.errors import (
    DATABASE_POOL_EXHAUSTED_DETAIL,
    DATABASE_RETRY_AFTER_SECONDS,
    PROBLEM_CONTENT_TYPE,
    problem_response,
    render_problem,
)


@pytest.mark.parametrize(
    ("error_class", "status", "title"),
    [
        (BadRequestError, 400, "Bad Request"),
        (NotFoundError, 404, "Not Found"),
        (ConflictError, 409, "Conflict"),
        (UnprocessableError, 422, "Unprocessable Entity"),
        (ServiceUnavailable, 503, "Service Unavailable"),
    ],
)
def test_each_error_renders_its_status_as_problem_json(
    error_class: type[ProblemError], status: int, title: str
) -> None:
    error = error_class("book_id: no book 7")

    response = render_problem(error)

    assert isinstance(error, ProblemError)
    assert isinstance(error, ChassisError)
    assert response.status_code == status
    assert response.media_type == PROBLEM_CONTENT_TYPE
    assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
    assert json.loads(response.body) == {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": "book_id: no book 7",
        "trace_id": None,
    }


def test_title_type_status_and_extensions_can_be_set() -> None:
    error = ProblemError(
        "stock: only 2 left",
        status=409,
        title="Out of stock",
        type="https://bookshop.example/problems/out-of-stock",
        available=2,
    )

    body = json.loads(render_problem(error).body)

    assert body["status"] == 409
    assert body["title"] == "Out of stock"
    assert body["type"] == "https://bookshop.example/problems/out-of-stock"
    assert body["available"] == 2
    assert str(error) == "stock: only 2 left"


def test_a_plain_problem_error_is_a_500() -> None:
    assert render_problem(ProblemError("broken")).status_code == 500


def test_service_unavailable_sets_retry_after_in_whole_seconds() -> None:
    response = render_problem(ServiceUnavailable("books is unavailable", retry_after_seconds=2.6))
    at_least_one = render_problem(ServiceUnavailable("busy", retry_after_seconds=0.1))
    unknown = render_problem(ServiceUnavailable("busy"))

    assert response.headers["retry-after"] == "3"
    assert at_least_one.headers["retry-after"] == "1"
    assert "retry-after" not in unknown.headers


def test_service_unavailable_keeps_other_headers() -> None:
    error = ServiceUnavailable("busy", retry_after_seconds=1, headers={"X-Reason": "breaker"})

    response = render_problem(error)

    assert response.headers["x-reason"] == "breaker"
    assert response.headers["retry-after"] == "1"


def test_database_unavailable_is_a_503_naming_only_the_database_with_retry_after() -> None:
    error = DatabaseUnavailable()

    response = render_problem(error)

    assert isinstance(error, ServiceUnavailable)
    assert isinstance(error, ChassisError)
    assert response.status_code == 503
    assert response.headers["retry-after"] == str(DATABASE_RETRY_AFTER_SECONDS)
    assert json.loads(response.body) == {
        "type": "about:blank",
        "title": "Service Unavailable",
        "status": 503,
        "detail": "the database is unavailable",
        "trace_id": None,
    }


def test_database_unavailable_retry_after_is_a_few_seconds() -> None:
    assert 1 <= DATABASE_RETRY_AFTER_SECONDS <= 10


def test_database_unavailable_names_the_pool_when_it_is_exhausted() -> None:
    response = render_problem(DatabaseUnavailable(DATABASE_POOL_EXHAUSTED_DETAIL))

    assert response.status_code == 503
    assert response.headers["retry-after"] == str(DATABASE_RETRY_AFTER_SECONDS)
    assert "pool" in json.loads(response.body)["detail"]


def test_the_trace_id_is_the_current_one() -> None:
    tracer = TracerProvider().get_tracer("tests")

    with tracer.start_as_current_span("request") as span:
        body = json.loads(problem_response(404, "nothing here").body)

    assert body["trace_id"] == format(span.get_span_context().trace_id, "032x")


def test_an_extension_cannot_forge_the_trace_id() -> None:
    body = json.loads(problem_response(400, "bad", trace_id="forged").body)

    assert body["trace_id"] is None


def test_an_unknown_status_gets_a_generic_title() -> None:
    body = json.loads(problem_response(599, "odd").body)

    assert (body["status"], body["title"]) == (599, "Error")


# -- statuses are plain numbers (an HTTPStatus member logs as <HTTPStatus.X: 503> in the console)


@pytest.mark.parametrize(
    "error",
    [
        ProblemError("broken"),
        BadRequestError("bad"),
        NotFoundError("gone"),
        ConflictError("taken"),
        UnprocessableError("odd"),
        ServiceUnavailable("busy"),
        DatabaseUnavailable(),
        ProblemError("busy", status=HTTPStatus.SERVICE_UNAVAILABLE),
    ],
)
def test_every_error_carries_a_plain_int_status(error: ProblemError) -> None:
    response = render_problem(error)

    assert type(error.status) is int
    assert type(response.status_code) is int
    assert type(json.loads(bytes(response.body))["status"]) is int


def test_a_service_defined_error_with_an_http_status_member_gets_a_plain_int() -> None:
    class TooManyRequests(ProblemError):
        status = HTTPStatus.TOO_MANY_REQUESTS

    error = TooManyRequests("slow down")

    assert type(error.status) is int
    assert (error.status, error.title) == (429, "Too Many Requests")


def test_problem_response_turns_an_http_status_member_into_a_plain_int() -> None:
    response = problem_response(HTTPStatus.BAD_GATEWAY, "books answered 500")

    assert type(response.status_code) is int
    assert response.status_code == 502
    assert json.loads(bytes(response.body))["title"] == "Bad Gateway"


def test_an_error_with_an_unknown_status_gets_a_generic_title() -> None:
    error = ProblemError("odd", status=599)

    assert (error.status, error.title) == (599, "Error")

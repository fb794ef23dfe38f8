"""assert_problem, the ``problem`` fixture, hermetic_environment and reset_logging."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import structlog

from chassis.testing import assert_problem, hermetic_environment, reset_logging

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def problem_response(status: int = 404, **body: Any) -> httpx.Response:
    content = {
        "title": "Not Found",
        "status": status,
        "detail": "no book_id 7",
        "trace_id": TRACE_ID,
    }
    return httpx.Response(
        status, json={**content, **body}, headers={"content-type": "application/problem+json"}
    )


def test_assert_problem_returns_the_body() -> None:
    body = assert_problem(problem_response(), 404, "book_id")

    assert body["detail"] == "no book_id 7"


def test_the_problem_fixture_is_assert_problem(problem: Callable[..., Any]) -> None:
    assert problem is assert_problem


@pytest.mark.parametrize(
    ("response", "status", "field"),
    [
        (problem_response(), 400, None),  # another status
        (problem_response(status=404, trace_id=None), 404, None),
        (problem_response(status=404, title=""), 404, None),
        (problem_response(), 404, "book"),  # only part of a word
        (problem_response(), 404, "isbn"),
        (httpx.Response(404, json={"status": 404, "title": "x", "trace_id": TRACE_ID}), 404, None),
    ],
)
def test_assert_problem_refuses(response: httpx.Response, status: int, field: str | None) -> None:
    with pytest.raises(AssertionError):
        assert_problem(response, status, field)


def test_hermetic_environment_drops_machine_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "machine")
    monkeypatch.setenv("SHUTDOWN__GRACE_SECONDS", "99")
    monkeypatch.setenv("KEEP_ME", "1")

    hermetic_environment(monkeypatch)

    assert "OTEL_SERVICE_NAME" not in os.environ
    assert "SHUTDOWN__GRACE_SECONDS" not in os.environ
    assert os.environ["KEEP_ME"] == "1"
    assert os.environ["OTEL_TRACES_EXPORTER"] == "none"


def test_reset_logging_removes_the_chassis_handler() -> None:
    root = logging.getLogger()
    handler = logging.NullHandler()
    handler.set_name("chassis")
    root.addHandler(handler)
    structlog.contextvars.bind_contextvars(request_id="r1")

    reset_logging()

    assert handler not in root.handlers
    assert structlog.contextvars.get_contextvars() == {}

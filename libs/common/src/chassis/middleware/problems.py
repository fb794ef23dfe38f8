"""Every error leaves as problem+json (RFC 9457) with the trace id; nothing internal leaks.

Replaces Starlette's and connexion's error middlewares inside the connexion stack, so that the
problems connexion raises (validation, routing) and the chassis' own exceptions are rendered in
one place.
"""

from __future__ import annotations

from typing import Any

from connexion.exceptions import ProblemException
from opentelemetry import trace
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chassis.db import database_unavailable
from chassis.errors import ProblemError, problem_response, render_problem
from chassis.logging import get_logger

log = get_logger("chassis.errors")
MAX_DETAIL = 300
CLIENT_CLOSED_REQUEST = 499
INTERNAL_ERROR_DETAIL = "The server failed to handle this request; the trace id identifies it."


class ProblemMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        response_started = False

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if response_started:
                raise
            await to_response(exc)(scope, receive, send)


def to_response(exc: Exception) -> Response:
    """The single mapping from an exception to its answer."""
    if isinstance(exc, ClientDisconnect):
        # Nobody reads this answer; it is what the access log and metrics record (nginx's 499),
        # instead of a 500 and a stack trace for a client that went away mid-body.
        log.info("client disconnected before sending its whole body")
        return problem_response(
            CLIENT_CLOSED_REQUEST,
            "the client closed the connection before sending its whole body",
            title="Client Closed Request",
        )
    # A sync handler's session scope has already made it a DatabaseUnavailable; an async
    # handler's own session or connection has not.
    exc = database_unavailable(exc) or exc
    if isinstance(exc, ProblemError):
        return render_problem(exc)
    if isinstance(exc, ProblemException):
        return problem_response(
            exc.status,
            shorten(str(exc.detail)),
            title=exc.title,
            type=exc.type or "about:blank",
            headers=dict(exc.headers or {}),
            **_extensions(exc),
        )
    if isinstance(exc, HTTPException):
        return problem_response(exc.status_code, exc.detail, headers=dict(exc.headers or {}))
    trace.get_current_span().record_exception(exc)
    log.error("unhandled error", exc_info=exc)
    return problem_response(500, INTERNAL_ERROR_DETAIL)


def shorten(detail: str, limit: int = MAX_DETAIL) -> str:
    """connexion quotes the whole offending value (up to the body limit) and names the field at
    the end: keep both ends, drop the middle."""
    if len(detail) <= limit:
        return detail
    tail = limit // 3
    return f"{detail[: limit - tail - 1]}…{detail[-tail:]}"


def _extensions(exc: ProblemException) -> dict[str, Any]:
    reserved = {"type", "title", "status", "detail", "trace_id", "instance"}
    return {k: v for k, v in (exc.ext or {}).items() if k not in reserved}

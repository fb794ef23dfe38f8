"""The chassis exception tree and its one mapping to problem+json (RFC 9457).

    ChassisError
    └── ProblemError              an answer to the client: status, title, detail
        ├── BadRequestError       400
        ├── NotFoundError         404
        ├── ConflictError         409
        ├── UnprocessableError    422
        └── ServiceUnavailable    503 (with Retry-After when known)
            └── DatabaseUnavailable   503 with Retry-After: the service's own database cannot
                                      serve (chassis.db raises it; it never names the database's
                                      URL, host, user or password)

Handlers and domain code raise these; :func:`problem_response` renders any of them, connexion's
own problems and unexpected exceptions the same way, always carrying the current ``trace_id``
and never a stack trace, SQL or secret. A status is a plain ``int`` wherever it goes (the error,
the answer, and so the access log, span and metrics), even when given as an ``HTTPStatus``.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from starlette.responses import Response

PROBLEM_CONTENT_TYPE = "application/problem+json"
DEFAULT_TYPE = "about:blank"

# Retry-After of a DatabaseUnavailable. A PostgreSQL restart or fail-over takes a few seconds,
# and by then the readiness probe (every 5 s in the Helm chart) has looked again: a replica that
# still cannot reach its database is on its way out of rotation, so a retry lands on one that
# can. Short enough for a retry while the user still waits (the chassis client honours it within
# its deadline). Pool exhaustion asks the same: the request already waited pool_timeout_seconds
# (5 by default) for a connection in vain; hammering back sooner would only feed the queue.
DATABASE_RETRY_AFTER_SECONDS = 5
DATABASE_UNAVAILABLE_DETAIL = "the database is unavailable"
DATABASE_POOL_EXHAUSTED_DETAIL = "the database is unavailable: its connection pool is exhausted"


def problem_content(**extra_properties: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI ``content`` of a problem+json answer (a response object's), with any
    extension members it carries."""
    string = {"type": "string"}
    return {
        PROBLEM_CONTENT_TYPE: {
            "schema": {
                "type": "object",
                "required": ["type", "title", "status", "detail"],
                "properties": {
                    "type": dict(string),
                    "title": dict(string),
                    "status": {"type": "integer"},
                    "detail": dict(string),
                    **extra_properties,
                },
            }
        }
    }


class ChassisError(Exception):
    """Root of every exception the chassis raises on purpose."""


class ProblemError(ChassisError):
    """An error that is answered to the client as problem+json."""

    status: int = HTTPStatus.INTERNAL_SERVER_ERROR.value

    def __init__(
        self,
        detail: str,
        *,
        title: str | None = None,
        status: int | None = None,
        type: str = DEFAULT_TYPE,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        # int(): subclasses (in services too) may name their status as an HTTPStatus member
        self.status = int(self.status if status is None else status)
        self.detail = detail
        self.title = title or _phrase(self.status)
        self.type = type
        self.headers = headers or {}
        self.extensions = extensions


class BadRequestError(ProblemError):
    status = HTTPStatus.BAD_REQUEST.value


class NotFoundError(ProblemError):
    status = HTTPStatus.NOT_FOUND.value


class ConflictError(ProblemError):
    status = HTTPStatus.CONFLICT.value


class UnprocessableError(ProblemError):
    status = HTTPStatus.UNPROCESSABLE_ENTITY.value


class ServiceUnavailable(ProblemError):
    status = HTTPStatus.SERVICE_UNAVAILABLE.value

    def __init__(self, detail: str, *, retry_after_seconds: float | None = None, **kw: Any):
        headers = kw.pop("headers", None) or {}
        if retry_after_seconds is not None:
            headers["Retry-After"] = str(max(1, round(retry_after_seconds)))
        super().__init__(detail, headers=headers, **kw)


class DatabaseUnavailable(ServiceUnavailable):
    """The service's own database cannot serve this request: it cannot be reached, the
    connection was lost, or no pooled connection came free in time. The detail says which,
    never where: no URL, host, port, user, password, SQL or driver message."""

    def __init__(
        self,
        detail: str = DATABASE_UNAVAILABLE_DETAIL,
        *,
        retry_after_seconds: float = DATABASE_RETRY_AFTER_SECONDS,
        **kw: Any,
    ) -> None:
        super().__init__(detail, retry_after_seconds=retry_after_seconds, **kw)


def problem_response(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    type: str = DEFAULT_TYPE,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> Response:
    # Imported here: the exceptions above are raised by code that never answers HTTP itself
    # (the database layer under `<service> seed`), which need not load the web stack.
    from starlette.responses import Response

    from chassis.tracing import current_trace_id

    status = int(status)  # an HTTPStatus member would reach the access log as its repr
    body: dict[str, Any] = {
        "type": type,
        "title": title or _phrase(status),
        "status": status,
        "detail": detail,
        **extensions,
        "trace_id": current_trace_id(),
    }
    return Response(
        orjson.dumps(body), status_code=status, headers=headers, media_type=PROBLEM_CONTENT_TYPE
    )


def render_problem(error: ProblemError) -> Response:
    return problem_response(
        error.status,
        error.detail,
        title=error.title,
        type=error.type,
        headers=error.headers,
        **error.extensions,
    )


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"

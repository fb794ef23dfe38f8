"""A request body's media type, read as RFC 9110 says: case-insensitive, and required.

connexion compares media types letter for letter. ``Content-Type: APPLICATION/JSON`` passed its
check of the accepted types (which lower-cases them) but then found no body validator (matched
case-sensitively) and its request no JSON, so the handler got the raw, unvalidated bytes: a 500
at best. :func:`normalise` spells the media type in lower case before connexion sees it; the
parameters (``charset=...``) are left as they are.

Without a Content-Type connexion validated the body as the operation's first media type, and
the handler again got raw bytes. The request validation of an operation with a body answers
:class:`UnsupportedMediaType` instead: a 415 whose detail names the types it accepts, also
given as ``Accept`` (RFC 9110 §15.5.16) and, for POST and PATCH, ``Accept-Post`` (W3C LDP) and
``Accept-Patch`` (RFC 5789). :func:`declare_body_answers` documents that answer (and the 413) in the
service's OpenAPI document, so clients and schemathesis know it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.types import Scope

from chassis.errors import ProblemError, problem_content

STATUS = 415
TOO_LARGE = 413
ACCEPT_BY_METHOD = {"post": "Accept-Post", "patch": "Accept-Patch"}
MAX_ECHOED = 100  # characters of the refused media type quoted back
OPERATION_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def normalise(content_type: bytes) -> bytes:
    """``b"Application/JSON ; charset=utf-8"`` -> ``b"application/json; charset=utf-8"``; an
    already normal value is returned as it is."""
    media_type, separator, parameters = content_type.partition(b";")
    spelled = media_type.strip().lower()
    if spelled == media_type:
        return content_type
    return spelled + separator + parameters


def with_content_type(scope: Scope, content_type: bytes) -> Scope:
    """A copy of ``scope`` whose Content-Type header is ``content_type``."""
    headers = [
        (name, content_type if name == b"content-type" else value)
        for name, value in scope["headers"]
    ]
    return {**scope, "headers": headers}


def is_json(content_type: bytes) -> bool:
    """application/json and every +json type (problem+json, merge-patch+json...), in any case."""
    media_type = content_type.partition(b";")[0].strip().lower()
    return media_type == b"application/json" or media_type.endswith(b"+json")


class UnsupportedMediaType(ProblemError):
    status = STATUS

    def __init__(self, given: str | None, accepted: Sequence[str], *, method: str) -> None:
        listed = ", ".join(accepted)
        refused = f"{given[:MAX_ECHOED]} is not accepted here" if given else "missing"
        super().__init__(
            f"Content-Type: {refused}; send the body as {' or '.join(accepted)}",
            headers=accept_headers(method, listed),
            field="Content-Type",
            accepted=list(accepted),
        )


def accept_headers(method: str, accepted: str) -> dict[str, str]:
    headers = {"Accept": accepted}
    named = ACCEPT_BY_METHOD.get(method.lower())
    if named is not None:
        headers[named] = accepted
    return headers


def declare_body_answers(
    raw: dict[str, Any], resolved: dict[str, Any], *, max_body_bytes: int
) -> None:
    """Adds the 415 and 413 answers to every operation of ``raw`` with a request body, unless
    it declares them already.

    connexion keeps an OpenAPI document twice: as written (``raw``), from which it serves
    ``/openapi.json`` and Swagger UI, and with its references resolved (``resolved``), which
    routes and validates. Only the served one is changed: connexion's response validation
    takes every content type an operation declares for any status as what each of its answers
    may be, so a problem+json 415 would refuse the JSON 200 of an operation that declares no
    other problem answer (a 415 never reaches response validation anyway: request validation
    answers it). The media types are read from ``resolved``, since a request body may be a
    ``$ref``.
    """
    for path, item in (resolved.get("paths") or {}).items():
        for method in OPERATION_METHODS:
            operation = item.get(method)
            body = operation.get("requestBody") if isinstance(operation, dict) else None
            written = ((raw.get("paths") or {}).get(path) or {}).get(method)
            if not body or not body.get("content") or not isinstance(written, dict):
                continue
            answer = unsupported_media_type_response(method, list(body["content"]))
            responses = written.setdefault("responses", {})
            responses.setdefault(str(STATUS), answer)
            responses.setdefault(str(TOO_LARGE), body_too_large_response(max_body_bytes))


def body_too_large_response(max_body_bytes: int) -> dict[str, Any]:
    """The OpenAPI response object of a body over ``http.max_body_bytes``
    (chassis.middleware.request_body)."""
    return {
        "description": f"Content Too Large: the body is over {max_body_bytes} bytes",
        "content": problem_content(),
    }


def unsupported_media_type_response(method: str, accepted: Sequence[str]) -> dict[str, Any]:
    """The OpenAPI response object of :class:`UnsupportedMediaType`."""
    listed = ", ".join(accepted)
    string = {"type": "string"}
    return {
        "description": (
            "Unsupported Media Type: the body's Content-Type is missing or not "
            + " or ".join(accepted)
        ),
        "headers": {
            name: {"description": "The media types a body may have", "schema": dict(string)}
            for name in accept_headers(method, listed)
        },
        "content": problem_content(accepted={"type": "array", "items": dict(string)}),
    }

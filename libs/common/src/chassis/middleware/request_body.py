"""Request bodies, checked before anything parses them.

- over ``max_body_bytes``: 413, whether declared by Content-Length or found while streaming;
- chunked (no Content-Length): read whole (still bounded) and given its length, because
  connexion's body validation takes a missing Content-Length for "no body" and would answer
  400 "RequestBody is required";
- JSON that is not UTF-8 (RFC 8259 §8.1): 400 naming the body. connexion's JSON parsing only
  expects a JSON syntax error, so undecodable bytes used to end as a 500;
- JSON nested deeper than ``max_json_depth`` levels: 400 naming the body, found on the whole
  body before anything parses it (:mod:`chassis.middleware.json_depth`). Python's parser
  raised RecursionError at about a thousand levels, which used to end as a 500;
- the Content-Type's media type spelled in lower case (:mod:`chassis.middleware.media_types`):
  media types are case-insensitive, connexion's and Starlette's comparisons are not.
"""

from __future__ import annotations

import codecs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chassis.errors import ProblemError, render_problem
from chassis.middleware import media_types
from chassis.middleware.json_depth import MAX_JSON_DEPTH, nests_deeper_than


class BodyRefused(ProblemError):
    """Raised from ``receive`` while the app reads the body, so the problem middleware inside
    the API answers it like this one does."""


class BodyTooLarge(BodyRefused):
    status = 413

    def __init__(self, max_body_bytes: int) -> None:
        super().__init__(
            f"body: the request body is larger than {max_body_bytes} bytes", field="body"
        )


class BodyNotUtf8(BodyRefused):
    status = 400

    def __init__(self) -> None:
        super().__init__("body: a JSON body must be encoded in UTF-8", field="body")


class BodyTooDeep(BodyRefused):
    status = 400

    def __init__(self, max_depth: int) -> None:
        super().__init__(f"body: JSON nested deeper than {max_depth} levels", field="body")


class RequestBodyMiddleware:
    def __init__(
        self, app: ASGIApp, *, max_body_bytes: int, max_json_depth: int = MAX_JSON_DEPTH
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_json_depth = max_json_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await render_problem(BodyTooLarge(self.max_body_bytes))(scope, receive, send)
            return
        content_type = _header(scope, b"content-type")
        if content_type is not None:
            spelled = media_types.normalise(content_type)
            if spelled != content_type:
                scope = media_types.with_content_type(scope, spelled)
        json = content_type is not None and media_types.is_json(content_type)
        checked = self._checked(receive, json=json)
        response_started = False

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            if declared is None and _is_chunked(scope):
                scope, checked = await _buffered(scope, checked)
            await self.app(scope, checked, tracking_send)
        except BodyRefused as refused:
            if response_started:
                raise
            await render_problem(refused)(scope, receive, send)

    def _checked(self, receive: Receive, *, json: bool) -> Receive:
        """``receive`` that raises once the body passes the limit or, for JSON, stops being
        UTF-8 (decoded incrementally: a character may span two chunks) or, once whole, nests
        too deep."""
        received = 0
        decoder = codecs.getincrementaldecoder("utf-8")() if json else None
        chunks: list[bytes] = []  # of a JSON body, until it is whole

        async def checked_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                received += len(chunk)
                if received > self.max_body_bytes:
                    raise BodyTooLarge(self.max_body_bytes)
                if decoder is not None:
                    final = not message.get("more_body", False)
                    try:
                        decoder.decode(chunk, final=final)
                    except UnicodeDecodeError:
                        raise BodyNotUtf8() from None
                    chunks.append(chunk)
                    # b"".join of a single chunk is that chunk: no copy for a one-chunk body
                    if final and nests_deeper_than(b"".join(chunks), self.max_json_depth):
                        raise BodyTooDeep(self.max_json_depth)
            return message

        return checked_receive


async def _buffered(scope: Scope, receive: Receive) -> tuple[Scope, Receive]:
    """Reads the whole chunked body through ``receive`` and declares its length."""
    chunks: list[bytes] = []
    more_body = True
    while more_body:
        message = await receive()
        if message["type"] != "http.request":  # the client left: let the app see it
            return scope, _replay([message], receive)
        chunks.append(message.get("body", b""))
        more_body = message.get("more_body", False)
    body = b"".join(chunks)
    headers = [(k, v) for k, v in scope["headers"] if k != b"transfer-encoding"]
    headers.append((b"content-length", str(len(body)).encode()))
    whole = {"type": "http.request", "body": body, "more_body": False}
    return {**scope, "headers": headers}, _replay([whole], receive)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A receive channel that gives ``messages`` first, then the client's own."""
    pending = list(messages)

    async def replaying_receive() -> Message:
        return pending.pop(0) if pending else await receive()

    return replaying_receive


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def _content_length(scope: Scope) -> int | None:
    value = _header(scope, b"content-length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _is_chunked(scope: Scope) -> bool:
    return b"chunked" in (_header(scope, b"transfer-encoding") or b"").lower()

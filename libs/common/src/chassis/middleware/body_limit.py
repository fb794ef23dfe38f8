"""Refuses request bodies over a size limit with 413, before anything parses them, and gives a
chunked body (no Content-Length) its length: connexion's body validation reads a missing
Content-Length as "no body" and would answer 400 "RequestBody is required"."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chassis.errors import ProblemError, render_problem


class BodyTooLarge(ProblemError):
    """The body is over the limit. Raised from ``receive`` while the app reads the body, so the
    problem middleware inside the API answers it 413 like this one does."""

    status = 413

    def __init__(self, max_body_bytes: int) -> None:
        super().__init__(
            f"body: the request body is larger than {max_body_bytes} bytes", field="body"
        )


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await self._refuse(scope, receive, send)
            return
        if declared is None and _is_chunked(scope):
            try:
                scope, receive = await self._buffered(scope, receive)
            except BodyTooLarge:
                await self._refuse(scope, receive, send)
                return
        received = 0
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge(self.max_body_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if response_started:
                raise
            await self._refuse(scope, receive, send)

    async def _buffered(self, scope: Scope, receive: Receive) -> tuple[Scope, Receive]:
        """Reads the whole chunked body (bounded by the limit) and declares its length."""
        chunks: list[bytes] = []
        size = 0
        more_body = True
        while more_body:
            message = await receive()
            if message["type"] != "http.request":  # the client left: let the app see it
                return scope, _replay([message], receive)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise BodyTooLarge(self.max_body_bytes)
            chunks.append(chunk)
            more_body = message.get("more_body", False)
        headers = [(k, v) for k, v in scope["headers"] if k != b"transfer-encoding"]
        headers.append((b"content-length", str(size).encode()))
        body = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        return {**scope, "headers": headers}, _replay([body], receive)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        await render_problem(BodyTooLarge(self.max_body_bytes))(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _is_chunked(scope: Scope) -> bool:
    return any(
        name == b"transfer-encoding" and b"chunked" in value.lower()
        for name, value in scope["headers"]
    )


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A receive channel that gives ``messages`` first, then the client's own."""
    pending = list(messages)

    async def replaying_receive() -> Message:
        return pending.pop(0) if pending else await receive()

    return replaying_receive

"""The connection guard: uvicorn's httptools protocol with limits a client cannot talk past.

httptools (llhttp) has no limit on a request head and uvicorn no timeout for one, nor for a body
that stops arriving: a 16 MB header was buffered and answered, and slowloris connections (or ones
that never send a byte) were held forever. :func:`guarded_protocol` binds ``http.*`` settings to
a subclass of uvicorn's protocol that adds, per connection:

- a size limit on the request head, counted *before* the parser sees the bytes: a line longer
  than ``max_header_line_bytes`` or a head longer than ``max_header_bytes`` is answered 431;
- ``header_timeout_seconds`` for a whole head (from the connection's start, or from the first
  byte of the next request on a kept-alive one): 408, or a plain close if nothing was sent;
- ``body_timeout_seconds`` without a byte of a body still owed: the handler's ``receive()``
  raises :class:`RequestBodyTimeout`, which the chassis answers as a 408 problem (logged as
  such, no stack trace), and the connection closes after it; if an answer had begun already,
  the connection just closes;
- ``max_connections`` per process: one more connection is answered 503 with ``Retry-After``.

Every refusal the guard writes itself (431, 408, 503) is problem+json with ``Connection:
close``, followed by a lingering close: nothing more is parsed or kept, the write side is shut,
and the connection closes when the client does or after :data:`LINGER_SECONDS`, so that the
client reads the answer rather than a reset. Each refusal is logged once (reason, limit, client
address; never a header's value).

A read that holds the end of a request body and the start of a pipelined request's head hands
that start to the parser uncounted: such a head is counted from the next read on, so it may
overrun the limits by at most one read (256 KiB).
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from typing import Any, ClassVar

import orjson

try:
    from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
except ImportError as exc:  # pragma: no cover - httptools comes with uvicorn[standard]
    raise ImportError(
        "chassis.http_guard needs httptools (installed with uvicorn[standard], which "
        "connexion[uvicorn] requires): reinstall the chassis' dependencies (uv sync)"
    ) from exc
from uvicorn._types import ASGIReceiveEvent
from uvicorn.config import Config
from uvicorn.protocols.utils import get_remote_addr
from uvicorn.server import ServerState

from chassis.config import HttpSection
from chassis.errors import ProblemError
from chassis.logging import get_logger

log = get_logger("chassis.http_guard")

HEAD_END = b"\r\n\r\n"
# How long a refused connection may stay open for its answer to be read.
LINGER_SECONDS = 2.0


class RequestBodyTimeout(ProblemError):
    """Raised by a request's ``receive()`` once its body stopped arriving for too long."""

    status = HTTPStatus.REQUEST_TIMEOUT.value


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the guard; :func:`guarded_protocol` sets the limits."""

    max_header_line_bytes: ClassVar[int] = 16 * 1024
    max_header_bytes: ClassVar[int] = 64 * 1024
    header_timeout_seconds: ClassVar[float] = 10.0
    body_timeout_seconds: ClassVar[float] = 30.0
    max_connections: ClassVar[int] = 1000

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        # A head within this many bytes, whole in one read, needs no further counting.
        self._fast_head = min(self.max_header_line_bytes, self.max_header_bytes)
        self._in_head = True  # the parser waits for (the rest of) a request head
        self._in_body = False  # the head is complete, the body is not
        self._head_begun = False  # a byte of the current head arrived
        self._head_bytes = 0
        self._line_bytes = 0  # of the current line so far
        self._tail = b""  # the last bytes of the head so far: its end may span two reads
        self._refused = False
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._body_seen = 0.0  # loop time of the last body bytes
        self._linger_timer: asyncio.TimerHandle | None = None
        self._body_expired = False

    # -- the connection ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.max_connections:
            # Not counted in `connections`: it is answered and goes.
            self.transport = transport
            self.client = get_remote_addr(transport)
            self._refuse(
                HTTPStatus.SERVICE_UNAVAILABLE,
                "the server holds as many connections as it may; retry shortly",
                reason="too_many_connections",
                limit=self.max_connections,
                headers=((b"retry-after", b"1"),),
            )
            return
        super().connection_made(transport)
        self._header_timer = self.loop.call_later(
            self.header_timeout_seconds, self._header_timed_out
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # a lingering close: whatever else arrives is dropped
        feed = HttpToolsProtocol.data_received
        if not self._in_head:
            feed(self, data)
            if self._in_body:
                self._body_seen = self.loop.time()
            return
        # Each head's bytes are counted before the parser sees them; what follows a complete
        # head in the same read (a body, pipelined requests) is handed on as it comes.
        start = 0
        while True:
            end = data.find(HEAD_END, start) + 4 if not self._head_begun else 0
            if not start + 4 <= end <= start + self._fast_head:
                # Not the ordinary case (a small, whole head): count it.
                counted = self._count_head(data, start)
                if counted is None:
                    return  # refused
                end = counted if counted >= 0 else len(data)
            if start == 0 and end == len(data):
                feed(self, data)
                break
            feed(self, data[start:end])
            if end == len(data):
                break
            start = end
            if self._refused or self.transport.is_closing() or self.parser.should_upgrade():
                return
            if not self._in_head:
                # A body follows (and perhaps a pipelined head: see the module's docstring).
                feed(self, data[start:])
                break
        if self._in_body and not self.transport.is_closing():
            self._watch_body()

    def _count_head(self, data: bytes, start: int) -> int | None:
        """Counts the head's bytes in ``data`` from ``start``: the offset just past the head's
        end, -1 if the head goes on past ``data``, None if it is refused (too long)."""
        if not self._head_begun:
            self._head_begun = True
            if self._header_timer is None and not self._answering():
                self._arm_header_timer()
        tail = self._tail
        end = -1
        if tail:
            across = (tail + data[start : start + 3]).find(HEAD_END)
            if across >= 0:
                end = start + across + 4 - len(tail)
        if end < 0:
            found = data.find(HEAD_END, start)
            end = found + 4 if found >= 0 else -1
        size = len(data) if end < 0 else end

        # Lines: a line may hold max_header_line_bytes and its CR LF, so a window that long
        # from the current line's start must hold a LF; the last one in it starts the next
        # window (a few steps per read, however short the lines).
        line = self._line_bytes  # bytes of the current line before `at`
        at = start
        while True:
            window_end = at - line + self.max_header_line_bytes + 2
            if window_end > size:
                newline = data.rfind(b"\n", at, size)
                line = size - newline - 1 if newline >= 0 else line + size - at
                break
            newline = data.rfind(b"\n", at, window_end)
            if newline < 0:
                self._head_too_long("line")
                return None
            line = 0
            at = newline + 1
        head = self._head_bytes + size - start
        if head > self.max_header_bytes:
            self._head_too_long("head")
            return None

        if end >= 0:
            self._reset_head()
            self._head_begun = True  # until the parser says the message is complete
        else:
            self._head_bytes = head
            self._line_bytes = line
            self._tail = (tail + data[-3:])[-3:]
        return end

    def _head_too_long(self, what: str) -> None:
        if what == "line":
            limit = self.max_header_line_bytes
            detail = f"a request header line is longer than {limit} bytes"
        else:
            limit = self.max_header_bytes
            detail = f"the request head is longer than {limit} bytes"
        self._refuse(
            HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
            detail,
            reason=f"{what}_too_long",
            limit=limit,
        )

    def _reset_head(self) -> None:
        self._head_begun = False
        self._head_bytes = 0
        self._line_bytes = 0
        self._tail = b""

    # -- parser callbacks ----------------------------------------------------------------------

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._in_body = True
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_body = False
        self._in_head = True
        self._reset_head()
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # A head that began while the answer before it was being written is timed from now.
        if (
            self._head_begun
            and self._in_head
            and self._header_timer is None
            and not self._refused
            and not self.transport.is_closing()
            and not self._answering()
        ):
            self._arm_header_timer()

    # -- timers --------------------------------------------------------------------------------

    def _arm_header_timer(self) -> None:
        self._header_timer = self.loop.call_later(
            self.header_timeout_seconds, self._header_timed_out
        )

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self._refused or self.transport.is_closing() or not self._in_head:
            return
        if self._answering():
            return  # timed again once the answer is written (on_response_complete)
        if self._head_begun:
            self._refuse(
                HTTPStatus.REQUEST_TIMEOUT,
                f"the request head did not arrive within {self.header_timeout_seconds:g} seconds",
                reason="header_timeout",
                limit=self.header_timeout_seconds,
            )
        else:
            log.info(
                "connection closed",
                reason="idle_connection",
                limit=self.header_timeout_seconds,
                client=self._client_address(),
            )
            self.transport.close()

    def _watch_body(self) -> None:
        """A head completed in this read, its body did not: times the body, and has the request's
        ``receive()`` raise :class:`RequestBodyTimeout` once it is late (its task starts on a
        later turn of the loop, so it is handed the wrapped ``receive``)."""
        if self.parser.should_upgrade():
            return
        receive = self.cycle.receive

        async def receive_in_time() -> ASGIReceiveEvent:
            message = await receive()
            if self._body_expired:
                raise RequestBodyTimeout(
                    f"the request body stopped arriving for {self.body_timeout_seconds:g} seconds"
                )
            return message

        self.cycle.receive = receive_in_time  # type: ignore[method-assign]
        self._body_seen = self.loop.time()
        if self._body_timer is None:
            self._arm_body_timer()

    def _arm_body_timer(self) -> None:
        self._body_timer = self.loop.call_at(
            self._body_seen + self.body_timeout_seconds, self._body_timer_due
        )

    def _body_timer_due(self) -> None:
        self._body_timer = None
        if not self._in_body or self._refused or self.transport.is_closing():
            return
        now = self.loop.time()
        cycle = self.cycle
        if self.flow.read_paused or cycle.waiting_for_100_continue:
            self._body_seen = now  # the server is not reading, or the client waits for it
        if now < self._body_seen + self.body_timeout_seconds:
            self._arm_body_timer()
            return
        client = self._client_address()
        limit = self.body_timeout_seconds
        if cycle.response_started:
            log.info("connection closed", reason="body_timeout", limit=limit, client=client)
            self.transport.close()
            return
        # The handler's receive() raises RequestBodyTimeout: the chassis answers it as a 408
        # problem (its access log says 408, no stack trace), and uvicorn closes the connection
        # after it. Nothing more is read into the request.
        log.info("request refused", status=408, reason="body_timeout", limit=limit, client=client)
        self._body_expired = True
        self._refused = True
        cycle.keep_alive = False
        cycle.message_event.set()
        self._linger_timer = self.loop.call_later(LINGER_SECONDS, self._abandon)

    def _abandon(self) -> None:
        """The handler did not answer a late body in time: the connection goes without one."""
        self._linger_timer = None
        if self.cycle is not None:
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        self.transport.close()

    def _cancel_timers(self) -> None:
        for timer in (self._header_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._header_timer = self._body_timer = None

    # -- refusing ------------------------------------------------------------------------------

    def _answering(self) -> bool:
        """Whether a response is being worked on or written on this connection."""
        return self.cycle is not None and not self.cycle.response_complete

    def _refuse(
        self,
        status: HTTPStatus,
        detail: str,
        *,
        reason: str,
        limit: float,
        headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        """Answers ``status`` and closes the connection, lingering for the client to read it."""
        self._refused = True
        self._cancel_timers()
        self._unset_keepalive_if_required()
        level = log.warning if status != HTTPStatus.REQUEST_TIMEOUT else log.info
        level(
            "request refused",
            status=status.value,
            reason=reason,
            limit=limit,
            client=self._client_address(),
        )
        transport = self.transport
        if self._answering():
            # An answer to an earlier request is on its way: it ends the connection, and
            # nothing more is read into this one.
            self.cycle.keep_alive = False
            return
        transport.write(self._problem(status, detail, headers))
        if self.flow is not None:
            self.flow.resume_reading()  # read (and drop) what the client still sends
        if transport.can_write_eof():
            transport.write_eof()
        self._linger_timer = self.loop.call_later(LINGER_SECONDS, transport.close)

    def _problem(
        self, status: HTTPStatus, detail: str, headers: tuple[tuple[bytes, bytes], ...]
    ) -> bytes:
        body = orjson.dumps(
            {
                "type": "about:blank",
                "title": status.phrase,
                "status": status.value,
                "detail": detail,
            }
        )
        lines = [STATUS_LINE[status.value]]
        for name, value in (*self.server_state.default_headers, *headers):
            lines += [name, b": ", value, b"\r\n"]
        lines += [
            b"content-type: application/problem+json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
            body,
        ]
        return b"".join(lines)

    def _client_address(self) -> str | None:
        return None if self.client is None else f"{self.client[0]}:{self.client[1]}"


def guarded_protocol(http: HttpSection) -> type[GuardedHttpToolsProtocol]:
    """The guarded protocol class with ``http``'s limits, for ``uvicorn.Config(http=...)``."""

    class BoundGuardedHttpToolsProtocol(GuardedHttpToolsProtocol):
        max_header_line_bytes = http.max_header_line_bytes
        max_header_bytes = http.max_header_bytes
        header_timeout_seconds = http.header_timeout_seconds
        body_timeout_seconds = http.body_timeout_seconds
        max_connections = http.max_connections

    return BoundGuardedHttpToolsProtocol

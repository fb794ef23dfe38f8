"""The connection guard (chassis.http_guard) against the real server: the tiny service served by
``chassis.server.serve`` in a child process (the connection cap: on a thread of this one),
spoken to over raw sockets on 127.0.0.1.

Size limits as configured by default, timeouts of half a second, so that the file stays fast.
Each test of a limit fails against uvicorn's plain httptools protocol, which answers any head,
however large, and holds slow and silent connections for ever; the others check that ordinary
traffic (kept-alive and pipelined requests, heads split across writes, slow bodies) is served
as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import selectors
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, BinaryIO

import httpx
import pytest
import uvicorn
from uvicorn.server import ServerState

from chassis import Service
from chassis import server as server_module
from chassis.config import HttpSection
from chassis.http_guard import GuardedHttpToolsProtocol, guarded_protocol
from chassis.server import GracefulServer, serve
from chassis.testing import ServiceProcess, capture_logs, clean_environment, free_port
from chassis.testing.plugin import running_in_ci

TIMEOUT = 0.5  # header and body timeouts of the servers here, in seconds
LINE_LIMIT = 16384
HEAD_LIMIT = 65536
FD_LIMIT = 2048  # for 500 connections at once, in this process and in the server
# `python -c TINY_MAIN service.py serve --host H --port N` runs `python service.py N`, the tiny
# service's own entry point (chassis.server.serve), as a ServiceProcess.
TINY_MAIN = (
    "import runpy, sys; sys.argv = [sys.argv[1], sys.argv[-1]]; "
    "runpy.run_path(sys.argv[0], run_name='__main__')"
)
PROBLEM = "application/problem+json"


# -- the server and raw HTTP -------------------------------------------------------------------


def start_tiny(tiny: ModuleType, folder: Path, **settings: str) -> ServiceProcess:
    timeouts = {
        "HTTP__HEADER_TIMEOUT_SECONDS": str(TIMEOUT),
        "HTTP__BODY_TIMEOUT_SECONDS": str(TIMEOUT),
    }
    env = clean_environment(
        DATABASE_URL=f"sqlite:///{folder / 'tiny.db'}", **{**timeouts, **settings}
    )
    server = ServiceProcess(
        "tiny",
        log_path=folder / "tiny.log",
        env=env,
        command=[sys.executable, "-c", TINY_MAIN, str(tiny.SERVICE_DIR / "service.py")],
        ready_timeout=30,
    )
    server.start()
    return server


@contextlib.contextmanager
def fd_limit(needed: int) -> Iterator[None]:
    """A soft limit on open files of at least ``needed`` (children started inside inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        yield
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        reason = f"ulimit -n: {needed} open files needed, the hard limit is {hard}"
        if running_in_ci():  # CI must run the slow-connection test, never skip it
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture(scope="module")
def server(tiny: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """One guarded server for the module: timeouts of TIMEOUT, default size limits."""
    with fd_limit(FD_LIMIT):
        running = start_tiny(tiny, tmp_path_factory.mktemp("guard"))
        try:
            yield running
        finally:
            running.kill()


@pytest.fixture
def serving(
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[[Service], int]]:
    """Serves a service with ``chassis.server.serve`` on a thread of this process (quicker to
    start than a process); returns its port. Stopped after the test."""
    servers: list[GracefulServer] = []
    threads: list[threading.Thread] = []
    run = GracefulServer.run

    def recorded(self: GracefulServer, sockets: Any = None) -> None:
        servers.append(self)
        run(self, sockets)

    monkeypatch.setattr(GracefulServer, "run", recorded)
    monkeypatch.setattr(server_module, "settle_heap", lambda: None)  # this process' gc stays

    def start(service: Service) -> int:
        port = free_port()
        thread = threading.Thread(target=serve, args=(service,), kwargs={"port": port})
        thread.start()
        threads.append(thread)
        deadline = time.monotonic() + 20
        while not (servers and servers[-1].started) and time.monotonic() < deadline:
            assert thread.is_alive(), "the server thread ended"
            time.sleep(0.01)
        return port

    yield start
    for running in servers:
        running.should_exit = True
    for thread in threads:
        thread.join(15)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Connection:
    sock: socket.socket
    stream: BinaryIO = field(init=False)

    def __post_init__(self) -> None:
        self.stream = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def answer(self) -> Answer:
        """The next answer on the connection (answers to pipelined requests come in order)."""
        status_line = self.stream.readline()
        if not status_line:
            raise ConnectionError("closed without an answer")
        headers = {}
        while (line := self.stream.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = self.stream.read(int(headers.get("content-length", "0")))
        return Answer(int(status_line.split()[1]), headers, body)

    def closed_by_server(self) -> bool:
        """Whether the server has closed its side (the next read finds the end, no data)."""
        return self.stream.read(1) == b""

    def close(self) -> None:
        self.stream.close()
        self.sock.close()


@contextlib.contextmanager
def connect(server: ServiceProcess | int, timeout: float = 5.0) -> Iterator[Connection]:
    """A connection to ``server`` (or to that port of 127.0.0.1)."""
    port = server if isinstance(server, int) else server.port
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    connection = Connection(sock)
    try:
        yield connection
    finally:
        connection.close()


def get(path: str = "/health/live", *headers: bytes, close: bool = False) -> bytes:
    lines = [f"GET {path} HTTP/1.1".encode(), b"Host: tiny", *headers]
    if close:
        lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n"


def upload(body: bytes, length: int | None = None) -> bytes:
    size = len(body) if length is None else length
    head = (
        f"POST /upload HTTP/1.1\r\nHost: tiny\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: {size}\r\n\r\n"
    )
    return head.encode() + body


def assert_refused(answer: Answer, status: int, title: str, detail: str) -> None:
    assert answer.status == status, answer
    assert answer.headers["content-type"] == PROBLEM
    assert answer.headers["connection"] == "close"
    assert answer.json() == {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
    }


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def open_files(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def guard_lines(server: ServiceProcess, reason: str) -> list[dict[str, Any]]:
    return [
        line
        for line in server.log_lines()
        if line.get("logger") == "chassis.http_guard" and line.get("reason") == reason
    ]


# -- the size of a request head ----------------------------------------------------------------

LONG_LINE = get("/health/live", b"X-Big: " + b"a" * (20 * 1024))
LINE_TOO_LONG = f"a request header line is longer than {LINE_LIMIT} bytes"
TITLE_431 = "Request Header Fields Too Large"


@pytest.mark.parametrize("pieces", [1, 20], ids=["in one write", "in 1 KiB writes"])
def test_a_header_line_too_long_is_answered_431_and_the_client_reads_it(
    server: ServiceProcess, pieces: int
) -> None:
    with connect(server) as connection:
        step = -(-len(LONG_LINE) // pieces)
        for start in range(0, len(LONG_LINE), step):
            connection.send(LONG_LINE[start : start + step])
            if pieces > 1:
                time.sleep(0.005)
        answer = connection.answer()  # read, not reset
        assert_refused(answer, 431, TITLE_431, LINE_TOO_LONG)
        assert connection.closed_by_server()
    logged = guard_lines(server, "line_too_long")[-1]
    assert logged["status"] == 431
    assert logged["limit"] == LINE_LIMIT
    assert logged["client"].startswith("127.0.0.1:")
    assert "aaaa" not in server.log_text()  # never a header's value


def many_headers(size: int) -> list[bytes]:
    """Headers of 64 bytes each (with their CRLF), ``size`` bytes in all."""
    return [f"X-Header-{n:05}: {'v' * 46}".encode() for n in range(size // 64)]


def test_a_head_too_long_of_many_small_headers_is_answered_431(server: ServiceProcess) -> None:
    headers = many_headers(70 * 1024)
    with connect(server) as connection:
        connection.send(get("/health/live", *headers))
        assert_refused(
            connection.answer(),
            431,
            TITLE_431,
            f"the request head is longer than {HEAD_LIMIT} bytes",
        )
        assert connection.closed_by_server()


@pytest.mark.parametrize(
    "headers",
    [
        [b"X-Big: " + b"a" * (15 * 1024)],
        many_headers(60 * 1024),
    ],
    ids=["a 15 KiB header", "a 60 KiB head"],
)
def test_a_head_within_the_limits_is_served(server: ServiceProcess, headers: list[bytes]) -> None:
    with connect(server) as connection:
        connection.send(get("/health/live", *headers))
        assert connection.answer().status == 200


@pytest.mark.parametrize("split", [1, 2, 3, 4, 20])
def test_a_head_whose_end_spans_two_writes_is_served(server: ServiceProcess, split: int) -> None:
    request = get("/health/live", b"X-Big: " + b"a" * 100)
    with connect(server) as connection:
        connection.send(request[:-split])
        time.sleep(0.05)
        connection.send(request[-split:])
        assert connection.answer().status == 200


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5000), "sockname": ("127.0.0.1", 8000)}.get(name)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def empty_answer(scope: Any, receive: Any, send: Any) -> None:
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]}
    )
    await send({"type": "http.response.body", "body": b""})


def status_after(request: bytes, piece: int) -> int:
    """The status a guard with 1024-byte lines and 4096-byte heads answers ``request`` with, fed
    ``piece`` bytes at a time; 0 if it answers nothing."""
    protocol_class = guarded_protocol(
        HttpSection(max_header_line_bytes=1024, max_header_bytes=4096)
    )
    loop = asyncio.new_event_loop()
    try:
        config = uvicorn.Config(empty_answer, log_config=None)
        config.load()
        protocol = protocol_class(config, ServerState(), {}, _loop=loop)
        transport = FakeTransport()
        protocol.connection_made(transport)
        for start in range(0, len(request), piece):
            protocol.data_received(request[start : start + piece])
        loop.run_until_complete(asyncio.sleep(0))
        protocol.connection_lost(None)
    finally:
        loop.close()
    return int(transport.written.split()[1]) if transport.written else 0


def head_of(size: int, line: int = 100) -> bytes:
    """A GET whose head is ``size`` bytes long, mostly in header lines of ``line`` bytes."""
    request_line = b"GET / HTTP/1.1\r\n"
    room = size - len(request_line) - 2  # for header lines with their CRLF
    count, rest = divmod(room, line + 2)
    if 0 < rest < 12:
        count, rest = count - 1, rest + line + 2
    lines = [b"X-Line: " + b"v" * (line - 8)] * count
    if rest:
        lines.insert(0, b"X-Rest: " + b"v" * (rest - 10))
    head = request_line + b"".join(text + b"\r\n" for text in lines) + b"\r\n"
    assert len(head) == size
    return head


@pytest.mark.parametrize("piece", [1, 3, 100, 100_000])
@pytest.mark.parametrize(
    ("request_", "status"),
    [
        (b"GET / HTTP/1.1\r\nX-Line: " + b"v" * (1024 - 8) + b"\r\n\r\n", 200),
        (b"GET / HTTP/1.1\r\nX-Line: " + b"v" * (1024 - 7) + b"\r\n\r\n", 431),
        (b"GET /" + b"u" * (1024 - 14) + b" HTTP/1.1\r\n\r\n", 200),
        (b"GET /" + b"u" * (1024 - 13) + b" HTTP/1.1\r\n\r\n", 431),
        (head_of(4096), 200),
        (head_of(4097), 431),
        (head_of(4096, line=1024), 200),
    ],
    ids=[
        "a line at the limit",
        "a line one byte over",
        "a request line at the limit",
        "a request line one byte over",
        "a head at the limit",
        "a head one byte over",
        "a head of long lines at the limit",
    ],
)
def test_the_limits_are_exact_however_the_head_is_cut(
    request_: bytes, status: int, piece: int
) -> None:
    assert status_after(request_, piece) == status


def test_memory_stays_flat_under_megabyte_headers(server: ServiceProcess) -> None:
    """200 requests with a 1 MB header each: every one a 431, and the server's RSS flat."""
    huge = get("/health/live", b"X-Huge: " + b"h" * (1024 * 1024))

    def refused_requests(count: int) -> list[int]:
        statuses = []
        for _ in range(count):
            with connect(server) as connection:
                connection.send(huge)
                statuses.append(connection.answer().status)
        return statuses

    assert refused_requests(10) == [431] * 10  # warm-up: the answers' code paths are loaded
    before = rss_kib(server.pid)
    results: list[list[int]] = []
    threads = [
        threading.Thread(target=lambda: results.append(refused_requests(25))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    after = rss_kib(server.pid)

    print(
        f"\nserver RSS: {before / 1024:.1f} MiB before, {after / 1024:.1f} MiB after 200 requests"
    )
    assert sorted(status for statuses in results for status in statuses) == [431] * 200
    assert after - before < 4 * 1024, f"RSS grew from {before} KiB to {after} KiB"


# -- slow and silent connections ---------------------------------------------------------------


def test_slow_and_silent_connections_are_closed_after_the_header_timeout(
    server: ServiceProcess,
) -> None:
    """500 connections: half never send a byte, half trickle a head a byte at a time. The
    server closes them all after the header timeout (408 to those that sent something), and
    serves ordinary requests quickly meanwhile."""
    baseline = open_files(server.pid)
    selector = selectors.DefaultSelector()
    opened: dict[socket.socket, float] = {}
    received: dict[socket.socket, bytes] = {}
    closed_after: dict[socket.socket, float] = {}
    tricklers: list[socket.socket] = []
    for index in range(500):
        sock = socket.create_connection((server.host, server.port), timeout=5)
        opened[sock] = time.monotonic()
        received[sock] = b""
        if index % 2:
            sock.sendall(b"GET / HTTP/1.1\r\nX-a: ")
            tricklers.append(sock)
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    peak = open_files(server.pid)

    ordinary: list[tuple[int, float]] = []
    stop = threading.Event()

    def ordinary_requests() -> None:
        with httpx.Client(base_url=server.url, timeout=5) as client:
            while not stop.is_set():
                began = time.monotonic()
                status = client.get("/health/live").status_code
                ordinary.append((status, time.monotonic() - began))
                time.sleep(0.05)

    thread = threading.Thread(target=ordinary_requests)
    thread.start()
    try:
        deadline = time.monotonic() + TIMEOUT + 5
        next_byte = 0.0
        while len(closed_after) < len(opened) and time.monotonic() < deadline:
            if time.monotonic() >= next_byte:
                for sock in tricklers:
                    if sock not in closed_after:
                        with contextlib.suppress(BlockingIOError, BrokenPipeError):
                            sock.send(b"a")
                next_byte = time.monotonic() + 0.05
                peak = max(peak, open_files(server.pid))
            for key, _ in selector.select(timeout=0.02):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                data = sock.recv(65536)
                received[sock] += data
                if not data:
                    closed_after[sock] = time.monotonic() - opened[sock]
                    selector.unregister(sock)
                    sock.close()
    finally:
        stop.set()
        thread.join()
        for sock in opened:
            sock.close()
        selector.close()

    held = len(opened) - len(closed_after)
    files_deadline = time.monotonic() + 5
    while open_files(server.pid) > baseline and time.monotonic() < files_deadline:
        time.sleep(0.05)
    after = open_files(server.pid)
    print(
        f"\n500 connections: {held} held after the header timeout; server files: {baseline} "
        f"before, {peak} at most, {after} after; closed {min(closed_after.values()):.2f}"
        f"-{max(closed_after.values()):.2f} s after opening; {len(ordinary)} ordinary requests, "
        f"slowest {max(seconds for _, seconds in ordinary):.3f} s"
    )
    assert peak > baseline + 400  # the server did hold (nearly) all of them at once
    assert held == 0
    assert after <= baseline
    assert min(closed_after.values()) >= TIMEOUT * 0.9
    for sock in opened:
        if sock in tricklers:
            assert received[sock].startswith(b"HTTP/1.1 408 Request Timeout\r\n"), received[sock]
        else:
            assert received[sock] == b""
    assert ordinary
    assert {status for status, _ in ordinary} == {200}
    assert max(seconds for _, seconds in ordinary) < 1.0
    assert guard_lines(server, "header_timeout")
    assert guard_lines(server, "idle_connection")


def test_a_body_shorter_than_its_content_length_times_out(server: ServiceProcess) -> None:
    with connect(server) as connection:
        began = time.monotonic()
        connection.send(upload(b"0123456789", length=100))
        answer = connection.answer()
        waited = time.monotonic() - began
        assert connection.closed_by_server()
    assert answer.status == 408
    assert answer.headers["content-type"] == PROBLEM
    assert answer.headers["connection"] == "close"
    problem = answer.json()
    assert problem["detail"] == f"the request body stopped arriving for {TIMEOUT:g} seconds"
    assert problem["trace_id"]
    assert TIMEOUT * 0.9 <= waited < TIMEOUT + 2
    # the server still serves, answered the handler's disconnect as a 408 and logged no error
    assert httpx.get(server.url + "/health/live", timeout=2).status_code == 200
    lines = server.log_lines()
    uploads = [line for line in lines if line.get("path") == "/upload"]
    assert uploads[-1]["status"] == 408
    assert not [line for line in lines if line["level"] in ("error", "critical")]
    assert "Traceback" not in server.log_text()


def test_a_body_that_keeps_arriving_is_not_timed_out(server: ServiceProcess) -> None:
    """Each piece re-arms the body timeout: four of them, each after 0.6 of the timeout."""
    body = bytes(range(100))
    with connect(server) as connection:
        connection.send(upload(b"", length=len(body)))
        for start in range(0, 100, 25):
            time.sleep(TIMEOUT * 0.6)
            connection.send(body[start : start + 25])
        answer = connection.answer()
    assert answer.status == 200, answer
    assert answer.json() == {"size": 100}


# -- connections ---------------------------------------------------------------------------------


def test_one_connection_over_the_cap_is_answered_503(
    make_service: Callable[..., Service], serving: Callable[[Service], int]
) -> None:
    port = serving(make_service(HTTP__MAX_CONNECTIONS="5"))
    with contextlib.ExitStack() as stack, capture_logs() as logs:
        held = [stack.enter_context(connect(port)) for _ in range(5)]
        for connection in held:  # kept alive, so counted
            connection.send(get())
            assert connection.answer().status == 200

        with connect(port) as sixth:
            answer = sixth.answer()  # answered at once, before it says anything
            assert sixth.closed_by_server()
        assert_refused(
            answer,
            503,
            "Service Unavailable",
            "the server holds as many connections as it may; retry shortly",
        )
        assert answer.headers["retry-after"] == "1"

        held[0].close()
        served = None
        deadline = time.monotonic() + 5
        while served != 200 and time.monotonic() < deadline:
            with connect(port) as another:
                another.send(get(close=True))
                served = another.answer().status
        assert served == 200
        for connection in held[1:]:  # the others are still served
            connection.send(get())
            assert connection.answer().status == 200
    (logged,) = [event for event in logs if event.get("reason") == "too_many_connections"]
    assert (logged["log_level"], logged["status"], logged["limit"]) == ("warning", 503, 5)
    assert logged["client"].startswith("127.0.0.1:")


def test_a_kept_alive_connection_serves_request_after_request(server: ServiceProcess) -> None:
    """Pauses longer than the header timeout between requests, and heads that add up to more
    than the head limit: each request is measured and timed on its own."""
    header = b"X-Medium: " + b"m" * (10 * 1024)
    with connect(server) as connection:
        for pause in (0, TIMEOUT * 1.4, TIMEOUT * 1.4, 0, 0, 0, 0, 0):
            time.sleep(pause)
            connection.send(get("/health/live", header))
            assert connection.answer().status == 200
        connection.send(get(close=True))
        assert connection.answer().status == 200


def test_a_slow_head_on_a_kept_alive_connection_is_timed_from_its_first_byte(
    server: ServiceProcess,
) -> None:
    with connect(server) as connection:
        connection.send(get())
        assert connection.answer().status == 200
        time.sleep(TIMEOUT * 1.4)  # idle between requests: not the head's time
        began = time.monotonic()
        connection.send(b"GET /health/live HTTP/1.1\r\nHost: ti")
        answer = connection.answer()
        waited = time.monotonic() - began
        assert connection.closed_by_server()
    assert answer.status == 408
    assert TIMEOUT * 0.9 <= waited < TIMEOUT + 1


def test_pipelined_requests_are_answered_in_order(server: ServiceProcess) -> None:
    requests = [get(), get("/async"), upload(b"x" * 300), get("/items/count"), get(close=True)]
    with connect(server) as connection:
        connection.send(b"".join(requests))
        answers = [connection.answer() for _ in requests]
        assert connection.closed_by_server()
    assert [answer.status for answer in answers] == [200] * 5
    assert answers[2].json() == {"size": 300}
    assert answers[3].json() == {"count": 0}


def test_many_pipelined_requests_in_one_write_are_all_answered(server: ServiceProcess) -> None:
    requests = [get("/health/live", f"X-N: {n}".encode()) for n in range(300)]
    with connect(server) as connection:
        connection.send(b"".join([*requests, get(close=True)]))
        statuses = [connection.answer().status for _ in range(len(requests) + 1)]
        assert connection.closed_by_server()
    assert statuses == [200] * 301


def test_serve_runs_uvicorn_with_the_guard_bound_to_the_settings(
    make_service: Callable[..., Service], monkeypatch: pytest.MonkeyPatch
) -> None:
    service = make_service(
        HTTP__MAX_HEADER_LINE_BYTES="2048",
        HTTP__MAX_HEADER_BYTES="8192",
        HTTP__HEADER_TIMEOUT_SECONDS="3",
        HTTP__BODY_TIMEOUT_SECONDS="4",
        HTTP__MAX_CONNECTIONS="7",
    )
    ran: list[GracefulServer] = []
    monkeypatch.setattr(GracefulServer, "run", lambda self, sockets=None: ran.append(self))

    serve(service, port=0)

    protocol = ran[0].config.http
    assert isinstance(protocol, type)
    assert issubclass(protocol, GuardedHttpToolsProtocol)
    assert (
        protocol.max_header_line_bytes,
        protocol.max_header_bytes,
        protocol.header_timeout_seconds,
        protocol.body_timeout_seconds,
        protocol.max_connections,
    ) == (2048, 8192, 3.0, 4.0, 7)
    service.close()

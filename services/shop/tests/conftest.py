"""Fixtures of the shop suite: a REAL books process and REAL PostgreSQL databases.

    books_database     (session) books' PostgreSQL database, migrated and seeded once
    books              a running ``books serve`` process shared by the session; a test may
                       ``books.stop()`` (SIGKILL) and ``books.start()`` it on the same port, and
                       finds it running again whatever the previous test did
    catalog            talks to books directly: add a book with known price and stock, read stock,
                       reserve and release
    shop_database_url  a fresh, migrated PostgreSQL database for shop, dropped afterwards
    shop_tables        reads shop's orders table directly
    make_shop          ``make_shop(**env)``: shop built in-process, as a started test client
    shop               ``make_shop()`` with the DESIGN §7 defaults
    shop_process       ``shop_process(**env)``: a ``shop serve`` process (stopped afterwards)
    chat_sink          a tiny server that accepts chat posts and counts them
    black_hole         a port that accepts connections and never answers
    problem            checks a problem+json answer (status, trace id, the field it names)

Every books and chat URL is 127.0.0.1; chat points at a closed port unless a test says otherwise.
Every module is marked ``postgres``: without a server it skips, except under CI where it fails.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from sqlalchemy import Engine, create_engine, pool, text
from starlette.testclient import TestClient

from books.seed import seed_catalog
from books.settings import SERVICE_DIR as BOOKS_DIR
from chassis import migrations
from chassis.config import DatabaseSection
from chassis.db import Database
from chassis.testing import hermetic_settings, service_client
from chassis.testing.postgres import PostgresServer
from shop.app import create_service
from shop.settings import SERVICE_DIR, ShopSettings

BIN = Path(sys.executable).parent
PROBLEM_JSON = "application/problem+json"
TRACE_ID = re.compile(r"[0-9a-f]{32}")
READY_TIMEOUT = 30.0
# Variables that would make a test depend on the machine (profile, database, telemetry, any
# nested settings key such as DEPENDENCIES__BOOKS__BASE_URL).
MACHINE_PREFIXES = ("OTEL_", "DATABASE_URL", "ENVIRONMENT", "GIT_COMMIT")


# -- ports and processes ----------------------------------------------------------------------


def free_port() -> int:
    """A port nothing listens on (until someone binds it): connections to it are refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def process_environment(**overrides: str) -> dict[str, str]:
    """The current environment without machine settings, plus no span export and overrides."""
    env = {
        name: value
        for name, value in os.environ.items()
        if "__" not in name and not name.startswith(MACHINE_PREFIXES)
    }
    return {**env, "OTEL_TRACES_EXPORTER": "none", **overrides}


class ServiceProcess:
    """``<name> serve`` as a child process on a fixed port; restartable on that same port."""

    def __init__(self, name: str, *, port: int, env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.port = port
        self.env = env
        self.log_path = log_path
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, *, wait: bool = True) -> None:
        if self.running:
            return
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [BIN / self.name, "serve", "--port", str(self.port)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if wait:
            self.wait_until_ready()

    def wait_until_ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise AssertionError(f"{self.name} exited early{self.log_tail()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/health/ready", timeout=1).status_code == 200:
                    return
            time.sleep(0.05)
        raise AssertionError(f"{self.name} did not become ready{self.log_tail()}")

    def stop(self) -> None:
        """Kills the process (SIGKILL: no drain, like a crash or an OOM kill)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.wait_exit()

    def wait_exit(self, timeout: float = 15) -> int | None:
        if self.process is None:
            return None
        return self.process.wait(timeout)

    def log_tail(self, lines: int = 30) -> str:
        try:
            tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return f"\n--- last lines of {self.log_path.name} ---\n" + "\n".join(tail)


BOOKS_FAULTS_TOKEN = "shop-tests-faults-token"


class BooksProcess(ServiceProcess):
    """The real books service; ``stop()`` then ``start()`` brings it back on the same port;
    ``inject()``/``heal()`` set faults through its admin endpoint."""

    def inject(self, **faults: Any) -> None:
        response = httpx.put(f"{self.url}/admin/faults", json=faults, headers=self._auth)
        response.raise_for_status()

    def heal(self) -> None:
        httpx.delete(f"{self.url}/admin/faults", headers=self._auth).raise_for_status()

    @property
    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {BOOKS_FAULTS_TOKEN}"}


# -- books ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def books_database(postgres_server: PostgresServer) -> Iterator[str]:
    name = f"books_{secrets.token_hex(4)}"
    url = postgres_server.create_database(name)
    migrations.upgrade(BOOKS_DIR / "migrations", url)
    database = Database(DatabaseSection(url=url))
    try:
        with database.session_scope() as session:
            seed_catalog(session)
    finally:
        database.dispose()
    yield url
    postgres_server.start()  # a test may have stopped it
    postgres_server.drop_database(name)


@pytest.fixture(scope="session")
def books_server(
    books_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BooksProcess]:
    env = process_environment(
        DATABASE_URL=books_database,
        LOGGING__ACCESS_LOG="false",
        SHUTDOWN__GRACE_SECONDS="1",
        FAULTS__ENABLED="true",
        FAULTS__TOKEN=BOOKS_FAULTS_TOKEN,
    )
    log_path = tmp_path_factory.mktemp("books") / "books.log"
    server = BooksProcess("books", port=free_port(), env=env, log_path=log_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def books(books_server: BooksProcess) -> BooksProcess:
    books_server.start()  # an earlier test may have stopped it
    return books_server


class Catalog:
    """books' own API, used to set up and check stock (never through shop)."""

    _isbns = itertools.count(1)

    def __init__(self, books: BooksProcess) -> None:
        self.books = books

    def _client(self) -> httpx.Client:
        return httpx.Client(base_url=self.books.url, timeout=5)

    def add_book(self, *, price: str = "9.99", stock: int = 10) -> int:
        isbn = f"979{next(self._isbns):010d}"
        with self._client() as client:
            response = client.post(
                "/books",
                json={
                    "isbn": isbn,
                    "title": "A test book",
                    "author": "A. Tester",
                    "price": price,
                    "stock": stock,
                },
            )
        assert response.status_code == 201, response.text + self.books.log_tail()
        return int(response.json()["id"])

    def book(self, book_id: int) -> dict[str, Any]:
        with self._client() as client:
            response = client.get(f"/books/{book_id}")
        assert response.status_code == 200, response.text
        book: dict[str, Any] = response.json()
        return book

    def stock(self, book_id: int) -> int:
        return int(self.book(book_id)["stock"])

    def price(self, book_id: int) -> Decimal:
        return Decimal(self.book(book_id)["price"])

    def reserve(self, book_id: int, *, order_id: str, quantity: int) -> httpx.Response:
        with self._client() as client:
            return client.post(
                f"/books/{book_id}/reservations", json={"order_id": order_id, "quantity": quantity}
            )

    def release(self, book_id: int, *, order_id: str) -> None:
        with self._client() as client:
            response = client.delete(f"/books/{book_id}/reservations/{order_id}")
        assert response.status_code == 204, response.text


@pytest.fixture
def catalog(books: BooksProcess) -> Catalog:
    return Catalog(books)


# -- shop -------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _hermetic_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Nothing exports spans and the logging an in-process shop configures is undone."""
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    for name in list(os.environ):
        if name.startswith("OTEL_") and name != "OTEL_TRACES_EXPORTER":
            monkeypatch.delenv(name)
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == "chassis"]:
        root.removeHandler(handler)


@pytest.fixture
def shop_database_url(postgres_url: str) -> str:
    migrations.upgrade(SERVICE_DIR / "migrations", postgres_url)
    return postgres_url


class ShopTables:
    """Reads shop's tables directly (what a crashed process left behind)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def orders(self) -> list[tuple[str, str]]:
        """Every order as ``(id, status)``."""
        with self.engine.connect() as connection:
            rows = connection.execute(text("SELECT id, status FROM orders ORDER BY created_at"))
            return [(row.id, row.status) for row in rows]

    def status(self, order_id: str) -> str | None:
        return dict(self.orders()).get(order_id)


@pytest.fixture
def shop_tables(shop_database_url: str) -> Iterator[ShopTables]:
    engine = create_engine(shop_database_url, poolclass=pool.NullPool)
    yield ShopTables(engine)
    engine.dispose()


def shop_environment(books: BooksProcess, **env: str) -> dict[str, str]:
    """Settings variables of a shop talking to ``books`` and to a chat nobody listens on."""
    return {
        "DEPENDENCIES__BOOKS__BASE_URL": books.url,
        "DEPENDENCIES__CHAT__BASE_URL": f"http://127.0.0.1:{free_port()}",
        **env,
    }


MakeShop = Callable[..., TestClient]


@pytest.fixture
def make_shop(shop_database_url: str, books: BooksProcess) -> Iterator[MakeShop]:
    """``make_shop(DEPENDENCIES__BOOKS__BREAKER__OPEN_SECONDS="1")``: a started shop in-process."""
    with contextlib.ExitStack() as stack:

        def make(**env: str) -> TestClient:
            settings = hermetic_settings(
                ShopSettings,
                SERVICE_DIR,
                database_url=shop_database_url,
                environ=shop_environment(books, **env),
            )
            return stack.enter_context(service_client(create_service(settings)))

        yield make


@pytest.fixture
def shop(make_shop: MakeShop) -> TestClient:
    return make_shop()


ShopProcessFactory = Callable[..., ServiceProcess]


@pytest.fixture
def shop_process(
    shop_database_url: str, books: BooksProcess, tmp_path: Path
) -> Iterator[ShopProcessFactory]:
    """``shop_process(ORDERS__CRASH_AFTER_RESERVING="true")``: a ``shop serve`` process on
    the test's database; each call is a new process (on a new port) with its own log."""
    started: list[ServiceProcess] = []
    counter = itertools.count(1)

    def start(**env: str) -> ServiceProcess:
        variables = process_environment(
            DATABASE_URL=shop_database_url,
            LOGGING__ACCESS_LOG="false",
            SHUTDOWN__GRACE_SECONDS="1",
            **shop_environment(books, **env),
        )
        log_path = tmp_path / f"shop-{next(counter)}.log"
        process = ServiceProcess("shop", port=free_port(), env=variables, log_path=log_path)
        started.append(process)
        process.start()
        return process

    yield start
    for process in started:
        process.stop()


# -- chat and problems ------------------------------------------------------------------------


class ChatSink:
    """Accepts every chat post at once (201) and counts them."""

    def __init__(self) -> None:
        self.posts = 0
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                with sink._lock:
                    sink.posts += 1
                body = b'{"id": 1}'
                self.send_response(201)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def chat_sink() -> Iterator[ChatSink]:
    sink = ChatSink()
    yield sink
    sink.close()


class BlackHole:
    """Accepts connections and never answers: every call to it waits for its timeout."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                self._held.append(self._listener.accept()[0])

    def close(self) -> None:
        self._listener.close()
        for connection in self._held:
            connection.close()


@pytest.fixture
def black_hole() -> Iterator[BlackHole]:
    hole = BlackHole()
    yield hole
    hole.close()


def assert_problem(response: Any, status: int, field: str | None = None) -> dict[str, Any]:
    """An RFC 9457 answer with ``status`` and a trace id whose detail names ``field``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["title"]
    assert TRACE_ID.fullmatch(body["trace_id"] or ""), body
    if field is not None:
        assert field in body["detail"], body["detail"]
    return body


@pytest.fixture
def problem() -> Callable[..., dict[str, Any]]:
    return assert_problem

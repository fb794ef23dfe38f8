"""Fixtures of the shop suite: a REAL books process and REAL PostgreSQL databases.

    books_database     (session) books' PostgreSQL database, migrated and seeded once
    books              a running ``books serve`` process shared by the session; a test may
                       ``books.kill()`` (SIGKILL) and ``books.start()`` it on the same port, and
                       finds it running again whatever the previous test did. It trusts the
                       chassis plugin's ``token_issuer``, which also mints shop's credential
    catalog            talks to books directly: add a book with known price and stock, read stock,
                       reserve and release (with a token holding every scope)
    shop_database_url  a fresh, migrated PostgreSQL database for shop, dropped afterwards
    shop_tables        reads shop's orders table directly
    make_shop          ``make_shop(**env)``: shop built in-process, as a started test client
    shop               ``make_shop()`` with the design §7 defaults
    shop_process       ``shop_process(**env)``: a ``shop serve`` process (stopped afterwards)
    chat_sink          a tiny server that accepts chat posts and counts them
    black_hole         a port that accepts connections and never answers
    problem            (chassis plugin) checks a problem+json answer: status, trace id, field

Every books and chat URL is 127.0.0.1; chat points at a closed port unless a test says otherwise.
Every module is marked ``postgres``: without a server it skips, except under CI where it fails.
"""

from __future__ import annotations

import contextlib
import itertools
import secrets
import socket
import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, create_engine, pool, text
from starlette.testclient import TestClient

from books.seed import seed_catalog
from books.settings import SERVICE_DIR as BOOKS_DIR
from chassis import migrations
from chassis.config import DatabaseSection
from chassis.db import Database
from chassis.dev_issuer import DevIssuer
from chassis.testing import (
    ServiceProcess,
    ServiceProcesses,
    clean_environment,
    free_port,
    hermetic_environment,
    hermetic_settings,
    reset_logging,
    service_client,
)
from chassis.testing.postgres import PostgresServer
from shop.app import create_service
from shop.settings import SERVICE_DIR, ShopSettings

READY_TIMEOUT = 30.0
BOOKS_FAULTS_TOKEN = "shop-tests-faults-token"


# -- books as a process -----------------------------------------------------------------------


class BooksProcess(ServiceProcess):
    """The real books service; ``kill()`` then ``start()`` brings it back on the same port;
    ``inject()``/``heal()`` set faults through its admin endpoint. ``issuer`` signs the tokens
    it accepts."""

    issuer: DevIssuer

    def token(self, *scopes: str, subject: str = "shop-tests") -> str:
        return self.issuer.mint(audience="books", scopes=scopes, subject=subject)

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
    books_database: str, tmp_path_factory: pytest.TempPathFactory, token_issuer: DevIssuer
) -> Iterator[BooksProcess]:
    env = clean_environment(
        DATABASE_URL=books_database,
        AUTH__PUBLIC_KEY=token_issuer.public_pem(),
        LOGGING__ACCESS_LOG="false",
        SHUTDOWN__GRACE_SECONDS="1",
        FAULTS__ENABLED="true",
        FAULTS__TOKEN=BOOKS_FAULTS_TOKEN,
    )
    log_path = tmp_path_factory.mktemp("books") / "books.log"
    server = BooksProcess("books", env=env, log_path=log_path, ready_timeout=READY_TIMEOUT)
    server.issuer = token_issuer
    server.start()
    yield server
    server.kill()


@pytest.fixture
def books(books_server: BooksProcess) -> BooksProcess:
    books_server.start()  # an earlier test may have killed it
    return books_server


class Catalog:
    """books' own API, used to set up and check stock (never through shop)."""

    _isbns = itertools.count(1)

    def __init__(self, books: BooksProcess) -> None:
        self.books = books

    def _client(self) -> httpx.Client:
        token = self.books.token("catalog:write", "stock:reserve")
        return httpx.Client(
            base_url=self.books.url, timeout=5, headers={"Authorization": f"Bearer {token}"}
        )

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
        assert response.status_code == 201, f"{response.text}\n{self.books.log_tail()}"
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
    """Nothing exports spans, the machine's variables do not leak in, and the logging an
    in-process shop configures is undone."""
    hermetic_environment(monkeypatch)
    yield
    reset_logging()


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
    """Settings variables of a shop talking to ``books`` (with its own credential) and to a
    chat nobody listens on."""
    return {
        "DEPENDENCIES__BOOKS__BASE_URL": books.url,
        "DEPENDENCIES__BOOKS__TOKEN": books.token("stock:reserve", subject="shop"),
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
    with ServiceProcesses("shop", tmp_path, ready_timeout=READY_TIMEOUT) as processes:

        def start(**env: str) -> ServiceProcess:
            variables = clean_environment(
                DATABASE_URL=shop_database_url,
                LOGGING__ACCESS_LOG="false",
                SHUTDOWN__GRACE_SECONDS="1",
                **shop_environment(books, **env),
            )
            return processes.start(variables)

        yield start


# -- chat ------------------------------------------------------------------------------------


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

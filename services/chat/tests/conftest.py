"""Fixtures of the chat suite.

fake_books, module_fake_books
                  a real HTTP server standing in for books: GET /books/{id} answers 200
                  {"title": ...} for KNOWN_BOOKS, 404 otherwise; GET /books?limit=&offset= pages
                  through them (or answers ``listing_status`` when set); it counts the requests
                  and can be taken away (close) and brought back (restart) on the same port
closed_port       a local port nobody listens on (books unreachable)
database_url      a migrated SQLite database in tmp_path (new_database(folder) for wider scopes)
count_rows        rows of a chat table, read directly from database_url
make_client       make_client(books_url, **environ): a fresh in-process chat and its test client
client            make_client(fake_books.base_url)
problem           (chassis plugin) checks a problem+json answer: status, trace id, field
chat_processes    starts real ``chat serve`` processes on free ports and kills leftovers after
chat, module_chat one ``chat serve`` on SQLite with books = the fake (per test / per module)
sse               reads Server-Sent Events from an httpx streaming response
follow_while_posting
                  follows a room while threads post to it concurrently: (ids received, ids posted)
"""

from __future__ import annotations

import json
import re
import shutil
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import create_engine, pool, text
from starlette.testclient import TestClient

from chassis.migrations import upgrade
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
from chat.app import create_service
from chat.settings import SERVICE_DIR, ChatSettings

MIGRATIONS = SERVICE_DIR / "migrations"
KNOWN_BOOKS = {1: "Dune", 2: "Solaris", 3: "Hyperion", 4: "Foundation", 5: "Neuromancer"}


@pytest.fixture(autouse=True)
def _hermetic_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Nothing exports spans, the machine's variables do not leak in, and the logging a service
    configures is undone afterwards."""
    hermetic_environment(monkeypatch)
    yield
    reset_logging()


# -- ports and a fake books ---------------------------------------------------------------------


@pytest.fixture
def closed_port() -> int:
    return free_port()


class FakeBooks:
    """books' ``GET /books/{id}`` and ``GET /books`` on a real socket; ``requests`` counts the
    paths asked. ``close()`` takes it away (its port refuses connections), ``restart()`` brings
    it back; ``listing_status`` makes the listing answer that status instead."""

    def __init__(self, titles: dict[int, str]) -> None:
        self.titles = dict(titles)
        self.requests: Counter[str] = Counter()
        self.listing_status: int | None = None
        self._start(port=0)
        self.base_url = f"http://127.0.0.1:{self.port}"

    def lookups(self, book_id: int) -> int:
        return self.requests[f"/books/{book_id}"]

    def listings(self) -> int:
        """Pages of the catalogue asked for."""
        return sum(n for path, n in self.requests.items() if path.startswith("/books?"))

    def answer(self, target: str) -> tuple[int, dict[str, Any]]:
        url = urlsplit(target)
        if url.path == "/books":
            return self._page(parse_qs(url.query))
        match = re.fullmatch(r"/books/([0-9]+)", url.path)
        title = self.titles.get(int(match.group(1))) if match else None
        if title is None:
            return 404, {"title": "Not Found", "status": 404}
        return 200, {"id": int(match.group(1)) if match else 0, "title": title}

    def _page(self, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        if self.listing_status is not None:
            return self.listing_status, {"title": "Failing on purpose"}
        limit, offset = int(query["limit"][0]), int(query["offset"][0])
        books = sorted(self.titles.items())
        items = [{"id": i, "title": title} for i, title in books[offset : offset + limit]]
        following = offset + len(items)
        return 200, {
            "items": items,
            "total": len(books),
            "limit": limit,
            "offset": offset,
            "next_offset": following if following < len(books) else None,
        }

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def restart(self) -> None:
        self._start(self.port)

    def _start(self, port: int) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                fake.requests[self.path] += 1
                status, body = fake.answer(self.path)
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Connection", "close")  # so that close() takes books away
                self.close_connection = True
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *_: Any) -> None:
                pass

        return Handler


@pytest.fixture
def fake_books() -> Iterator[FakeBooks]:
    books = FakeBooks(KNOWN_BOOKS)
    yield books
    books.close()


@pytest.fixture(scope="module")
def module_fake_books() -> Iterator[FakeBooks]:
    books = FakeBooks(KNOWN_BOOKS)
    yield books
    books.close()


# -- chat in process ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once; every test gets a copy (migrating costs more)."""
    path = tmp_path_factory.mktemp("template") / "chat.db"
    upgrade(MIGRATIONS, f"sqlite:///{path}")
    return path


def migrated_sqlite(template: Path, folder: Path) -> str:
    path = folder / "chat.db"
    shutil.copyfile(template, path)
    return f"sqlite:///{path}"


@pytest.fixture(scope="session")
def new_database(migrated_template: Path) -> Callable[[Path], str]:
    """``new_database(folder)``: the URL of a fresh migrated SQLite database in ``folder``."""
    return lambda folder: migrated_sqlite(migrated_template, folder)


@pytest.fixture
def database_url(new_database: Callable[[Path], str], tmp_path: Path) -> str:
    return new_database(tmp_path)


@pytest.fixture
def count_rows(database_url: str) -> Iterator[Callable[[str], int]]:
    """Rows in a chat table, read directly from the database."""
    engine = create_engine(database_url, poolclass=pool.NullPool)

    def count(table: str) -> int:
        with engine.connect() as connection:
            return int(connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())

    yield count
    engine.dispose()


MakeClient = Callable[..., TestClient]


@pytest.fixture
def make_client(database_url: str) -> Iterator[MakeClient]:
    """``make_client(books_url, **environ)``: a fresh in-process chat and its test client."""
    with ExitStack() as stack:

        def make(books_url: str, **environ: str) -> TestClient:
            settings = hermetic_settings(
                ChatSettings,
                SERVICE_DIR,
                database_url=database_url,
                environ={"DEPENDENCIES__BOOKS__BASE_URL": books_url, **environ},
            )
            client: TestClient = stack.enter_context(service_client(create_service(settings)))
            return client

        yield make


@pytest.fixture
def client(make_client: MakeClient, fake_books: FakeBooks) -> TestClient:
    return make_client(fake_books.base_url)


# -- chat as real processes ---------------------------------------------------------------------


class ChatProcesses:
    """``start(database_url, books_url, **environ)`` runs ``chat serve`` and waits for it."""

    def __init__(self, folder: Path) -> None:
        self.processes = ServiceProcesses("chat", folder)

    def start(
        self, database_url: str, books_url: str, *, wait: bool = True, **environ: str
    ) -> ServiceProcess:
        """Starts one; ``wait=False`` returns at once (call ``wait_until_ready`` later)."""
        env = clean_environment(
            **{
                "DATABASE_URL": database_url,
                "DEPENDENCIES__BOOKS__BASE_URL": books_url,
                "SHUTDOWN__DRAIN_SECONDS": "0",
                "SHUTDOWN__GRACE_SECONDS": "5",
                **environ,
            }
        )
        return self.processes.start(env, wait=wait)

    def stop_all(self) -> None:
        self.processes.kill_all()


@pytest.fixture(scope="session")
def chat_process_pool() -> type[ChatProcesses]:
    """``chat_process_pool(folder)`` for fixtures wider than a test; call ``stop_all()``."""
    return ChatProcesses


@pytest.fixture
def chat_processes(tmp_path: Path) -> Iterator[ChatProcesses]:
    processes = ChatProcesses(tmp_path)
    yield processes
    processes.stop_all()


@pytest.fixture
def chat(chat_processes: ChatProcesses, database_url: str, fake_books: FakeBooks) -> ServiceProcess:
    """One ``chat serve`` on SQLite, books = fake_books."""
    return chat_processes.start(database_url, fake_books.base_url)


@pytest.fixture(scope="module")
def module_chat(
    tmp_path_factory: pytest.TempPathFactory,
    new_database: Callable[[Path], str],
    module_fake_books: FakeBooks,
) -> Iterator[ServiceProcess]:
    """One ``chat serve`` shared by a module's tests (each test uses rooms of its own)."""
    folder = tmp_path_factory.mktemp("chat")
    processes = ChatProcesses(folder)
    try:
        yield processes.start(new_database(folder), module_fake_books.base_url)
    finally:
        processes.stop_all()


# -- Server-Sent Events -------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    event: str
    id: str | None
    data: str
    comments: tuple[str, ...]

    def json(self) -> Any:
        return json.loads(self.data)


class EventReader:
    """Parses an ``text/event-stream`` body line by line (sync)."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.iter_lines()

    def next(self) -> Event:
        """The next block of the stream, comment-only blocks included."""
        fields: dict[str, list[str]] = {}
        comments: list[str] = []
        for line in self.lines:
            if line == "":
                if fields or comments:
                    return _event(fields, comments)
                continue
            if line.startswith(":"):
                comments.append(line[1:].strip())
                continue
            name, _, value = line.partition(":")
            fields.setdefault(name, []).append(value.removeprefix(" "))
        raise AssertionError("the event stream ended")

    def next_message(self) -> Event:
        while True:
            event = self.next()
            if event.event == "message":
                return event


def _event(fields: dict[str, list[str]], comments: list[str]) -> Event:
    ids = fields.get("id")
    return Event(
        event=fields.get("event", ["message" if "data" in fields else ""])[-1],
        id=ids[-1] if ids else None,
        data="\n".join(fields.get("data", [])),
        comments=tuple(comments),
    )


@pytest.fixture
def sse() -> type[EventReader]:
    return EventReader


def follow_while_posting(
    base_url: str, room: str, post_urls: list[str], *, posters: int, each: int
) -> tuple[list[int], list[int]]:
    """Follows ``room`` on ``base_url`` while ``posters`` threads each post ``each`` messages
    to it, through ``post_urls`` in turn; returns (ids received live in order, ids posted
    sorted)."""

    def post_many(worker: int) -> list[int]:
        ids = []
        with httpx.Client(timeout=30) as client:
            for n in range(each):
                post_url = post_urls[(worker + n) % len(post_urls)]
                response = client.post(
                    f"{post_url}/rooms/{room}/messages",
                    json={"author": f"poster {worker}", "text": f"message {n}"},
                )
                assert response.status_code == 201, response.text
                ids.append(response.json()["id"])
        return ids

    with (
        httpx.Client(base_url=base_url, timeout=httpx.Timeout(10, read=60)) as client,
        client.stream("GET", f"/rooms/{room}/events") as response,
    ):
        assert response.status_code == 200
        events = EventReader(response)
        assert "following" in events.next().comments
        with ThreadPoolExecutor(posters) as pool:
            posted = [i for ids in pool.map(post_many, range(posters)) for i in ids]
        received = [int(events.next_message().id or 0) for _ in posted]
    return received, sorted(posted)


@pytest.fixture(name="follow_while_posting")
def _follow_while_posting() -> Callable[..., tuple[list[int], list[int]]]:
    return follow_while_posting

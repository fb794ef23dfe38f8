"""books is a soft dependency: cached lookups, and chat keeps working when books is down."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, pool, text
from starlette.testclient import TestClient

from chassis.testing import MetricsSnapshot

sys.path.insert(0, str(Path(__file__).parent))
from books_down import FAST_BREAKER, post

MakeClient = Callable[..., TestClient]


def breaker_calls(metrics: MetricsSnapshot, outcome: str) -> float:
    value = metrics.value("circuit_breaker_calls_total", peer_service="books", outcome=outcome)
    return 0.0 if math.isnan(value) else value


def readiness(client: TestClient) -> dict[str, Any]:
    response = client.get("/health/ready")
    assert response.status_code == 200, response.text  # a neighbour never makes chat DOWN
    body: dict[str, Any] = response.json()
    assert body["status"] != "DOWN"
    return body


def test_with_books_unreachable_messages_are_accepted_unverified(
    make_client: MakeClient, closed_port: int, count_rows: Callable[[str], int]
) -> None:
    client = make_client(f"http://127.0.0.1:{closed_port}", **FAST_BREAKER)
    assert readiness(client)["status"] == "UP"

    messages = [post(client, "book-1", f"message {n}") for n in range(4)]

    assert [m["verified"] for m in messages] == [False] * 4
    assert count_rows("messages") == 4
    page = client.get("/rooms/book-1/messages").json()["items"]
    assert [m["verified"] for m in page] == [False] * 4
    room = client.get("/rooms/book-1")
    assert room.status_code == 200  # the room exists: books could not deny the book
    assert room.json()["title"] == "Book 1"


def test_an_open_books_breaker_makes_readiness_degraded_never_down(
    make_client: MakeClient, closed_port: int
) -> None:
    client = make_client(f"http://127.0.0.1:{closed_port}", **FAST_BREAKER)
    assert readiness(client)["checks"]["books"]["status"] == "UP"

    post(client, "book-1")  # connection refused on each attempt: the breaker opens
    ready = readiness(client)

    assert ready["status"] == "DEGRADED"
    assert ready["checks"]["books"]["status"] == "DOWN"
    assert ready["checks"]["books"]["breaker"] == "open"
    assert ready["checks"]["books"]["critical"] is False
    assert ready["checks"]["database"]["status"] == "UP"
    assert client.get("/healthcheck").json()["status"] == "DEGRADED"

    before = MetricsSnapshot(client.get("/metrics").text)
    assert post(client, "book-2")["verified"] is False  # rejected by the breaker, not tried
    after = MetricsSnapshot(client.get("/metrics").text)

    assert readiness(client)["status"] == "DEGRADED"
    assert after.value("circuit_breaker_state", peer_service="books", state="open") == 1
    assert breaker_calls(after, "rejected") - breaker_calls(before, "rejected") == 1
    assert breaker_calls(after, "failure") == breaker_calls(before, "failure")


def test_chat_verifies_again_once_books_is_back(make_client: MakeClient, fake_books: Any) -> None:
    fake_books.close()  # books goes away; its port is now closed
    client = make_client(
        fake_books.base_url,
        **FAST_BREAKER,
        DEPENDENCIES__BOOKS__BREAKER__OPEN_SECONDS="0.3",
        DEPENDENCIES__BOOKS__BREAKER__HALF_OPEN_CALLS="1",
    )
    assert post(client, "book-1")["verified"] is False
    assert readiness(client)["status"] == "DEGRADED"

    fake_books.restart()  # books is back on the same port
    time.sleep(0.35)

    assert post(client, "book-1")["verified"] is True
    assert readiness(client)["status"] == "UP"


def test_book_lookups_are_cached(client: TestClient, fake_books: Any) -> None:
    post(client, "book-1", "one")
    post(client, "book-1", "two")
    assert client.get("/rooms/book-1").status_code == 200

    assert fake_books.lookups(1) == 1


def test_unknown_books_are_cached_too(client: TestClient, fake_books: Any) -> None:
    for _ in range(2):
        response = client.post("/rooms/book-9/messages", json={"author": "ann", "text": "hi"})
        assert response.status_code == 404
    assert client.get("/rooms/book-9").status_code == 404

    assert fake_books.lookups(9) == 1


def test_cached_answers_expire(make_client: MakeClient, fake_books: Any) -> None:
    client = make_client(
        fake_books.base_url,
        BOOK_CACHE__FOUND_SECONDS="1",
        BOOK_CACHE__MISSING_SECONDS="1",
    )
    post(client, "book-1")
    post(client, "book-1")
    assert fake_books.lookups(1) == 1

    fake_books.titles.pop(1)  # the book is withdrawn
    time.sleep(1.05)
    response = client.post("/rooms/book-1/messages", json={"author": "ann", "text": "hi"})

    assert response.status_code == 404
    assert fake_books.lookups(1) == 2


def test_failed_lookups_are_not_cached(make_client: MakeClient, closed_port: int) -> None:
    """An unverified answer must not stick: the next post asks books again."""
    client = make_client(
        f"http://127.0.0.1:{closed_port}",
        DEPENDENCIES__BOOKS__BREAKER__ENABLED="false",
        DEPENDENCIES__BOOKS__RETRY__MAX_ATTEMPTS="1",
    )
    post(client, "book-1")
    post(client, "book-1")

    metrics = MetricsSnapshot(client.get("/metrics").text)
    calls = metrics.value(
        "http_client_request_duration_seconds_count",
        peer_service="books",
        http_request_method="GET",
    )
    assert calls == 2


def stored_titles(database_url: str) -> dict[str, str]:
    """Room titles as the database holds them."""
    engine = create_engine(database_url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT name, title FROM rooms")).all()
    finally:
        engine.dispose()
    return {name: title for name, title in rows}


# Every post asks books (nothing cached), once, and nothing stands between chat and books.
ASK_EVERY_TIME = {
    "BOOK_CACHE__FOUND_SECONDS": "0",
    "DEPENDENCIES__BOOKS__BREAKER__ENABLED": "false",
    "DEPENDENCIES__BOOKS__RETRY__MAX_ATTEMPTS": "1",
}


def test_a_placeholder_room_title_is_replaced_when_a_later_post_finds_the_book(
    make_client: MakeClient, fake_books: Any, database_url: str
) -> None:
    fake_books.close()
    client = make_client(fake_books.base_url, **ASK_EVERY_TIME)
    assert post(client, "book-1", "books is away")["verified"] is False
    assert stored_titles(database_url) == {"book-1": "Book 1"}

    fake_books.restart()
    assert post(client, "book-1", "books is back")["verified"] is True
    assert stored_titles(database_url) == {"book-1": "Book 1: Dune"}

    fake_books.close()  # an unanswered lookup never puts the placeholder back
    assert post(client, "book-1", "books is away again")["verified"] is False
    assert stored_titles(database_url) == {"book-1": "Book 1: Dune"}


def test_reading_a_placeholder_room_replaces_its_title_once_books_answers(
    make_client: MakeClient, fake_books: Any, database_url: str
) -> None:
    fake_books.close()
    client = make_client(fake_books.base_url, **ASK_EVERY_TIME)
    post(client, "book-2", "books is away")
    assert client.get("/rooms/book-2").json()["title"] == "Book 2"  # still away

    fake_books.restart()

    assert client.get("/rooms/book-2").json()["title"] == "Book 2: Solaris"
    assert stored_titles(database_url) == {"book-2": "Book 2: Solaris"}

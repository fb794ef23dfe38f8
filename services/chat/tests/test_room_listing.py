"""The room listing: a room for every book in books' catalogue, titled, whether or not it has
messages, plus the free rooms; and a 200 whatever state books is in."""

from __future__ import annotations

import math
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from chassis.testing import MetricsSnapshot

sys.path.insert(0, str(Path(__file__).parent))
from books_down import FAST_BREAKER, post

MakeClient = Callable[..., TestClient]
NOBODY = {"count": 0, "names": []}
BOOK_TITLES = {
    "book-1": "Book 1: Dune",
    "book-2": "Book 2: Solaris",
    "book-3": "Book 3: Hyperion",
    "book-4": "Book 4: Foundation",
    "book-5": "Book 5: Neuromancer",
}


def listing(client: TestClient, **params: Any) -> dict[str, Any]:
    response = client.get("/rooms", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def titles(body: dict[str, Any]) -> dict[str, str]:
    return {room["name"]: room["title"] for room in body["items"]}


def test_a_fresh_chat_lists_a_titled_room_for_every_book(
    client: TestClient, count_rows: Callable[[str], int]
) -> None:
    body = listing(client)

    assert body["items"] == [
        {
            "name": name,
            "title": title,
            "kind": "book",
            "book_id": int(name.removeprefix("book-")),
            "last_message_at": None,
            "live": NOBODY,
        }
        for name, title in BOOK_TITLES.items()
    ]
    assert (body["total"], body["limit"], body["offset"], body["next_offset"]) == (5, 50, 0, None)
    assert body["catalogue"]["status"] == "available"
    assert body["catalogue"]["fetched_at"].endswith("Z")
    assert body["catalogue"]["truncated"] is False
    assert count_rows("rooms") == 0  # listing stores nothing


def test_book_rooms_with_messages_and_free_rooms_are_listed_once(client: TestClient) -> None:
    assert client.post("/rooms", json={"name": "lobby", "title": "Lobby"}).status_code == 201
    post(client, "book-3")
    post(client, "book-1")

    body = listing(client)

    assert [room["name"] for room in body["items"]] == [
        *("book-1", "book-3"),
        *("book-2", "book-4", "book-5"),
        "lobby",
    ]
    assert titles(body) == {**BOOK_TITLES, "lobby": "Lobby"}
    assert body["total"] == 6


def test_pages_follow_one_another_without_gaps_or_repeats(client: TestClient) -> None:
    for name in ("den", "attic", "cellar"):
        assert client.post("/rooms", json={"name": name, "title": name}).status_code == 201
    post(client, "cellar")
    post(client, "book-5")
    everything = [room["name"] for room in listing(client, limit=100)["items"]]

    paged: list[str] = []
    offset: int | None = 0
    while offset is not None:
        page = listing(client, limit=3, offset=offset)
        assert page["total"] == 8
        paged += [room["name"] for room in page["items"]]
        offset = page["next_offset"]

    assert paged == everything
    assert everything == [
        *("book-5", "cellar"),
        *("book-1", "book-2", "book-3", "book-4"),
        *("attic", "den"),
    ]
    beyond = listing(client, offset=20)
    assert (beyond["items"], beyond["total"], beyond["next_offset"]) == ([], 8, None)


def test_the_catalogue_is_cached_and_answers_book_lookups_too(
    client: TestClient, fake_books: Any
) -> None:
    listing(client)
    listing(client)
    assert client.get("/rooms/book-3").json()["title"] == "Book 3: Hyperion"
    post(client, "book-4")

    assert fake_books.listings() == 1
    assert fake_books.lookups(3) == fake_books.lookups(4) == 0


def test_a_refreshed_catalogue_brings_new_books_and_titles(
    make_client: MakeClient, fake_books: Any
) -> None:
    client = make_client(
        fake_books.base_url,
        BOOK_CACHE__CATALOGUE_SECONDS="0.2",
        BOOK_CACHE__FOUND_SECONDS="0.2",
    )
    post(client, "book-2")
    assert titles(listing(client)) == BOOK_TITLES

    fake_books.titles[2] = "Solaris (new translation)"
    fake_books.titles[6] = "Kindred"
    time.sleep(0.25)

    assert titles(listing(client)) == {
        **BOOK_TITLES,
        "book-2": "Book 2: Solaris (new translation)",
        "book-6": "Book 6: Kindred",
    }
    assert client.get("/rooms/book-2").json()["title"] == "Book 2: Solaris (new translation)"
    assert fake_books.listings() == 2


def test_the_catalogue_is_read_page_by_page_up_to_its_bound(
    make_client: MakeClient, fake_books: Any
) -> None:
    fake_books.titles = {n: f"Volume {n}" for n in range(1, 251)}
    client = make_client(fake_books.base_url, BOOK_CACHE__CATALOGUE_MAX_BOOKS="120")

    first = listing(client, limit=100)
    second = listing(client, limit=100, offset=100)

    assert fake_books.listings() == 2  # 100 + 20 books
    assert first["total"] == 120
    assert first["catalogue"]["truncated"] is True
    names = [room["name"] for room in first["items"] + second["items"]]
    assert names == [f"book-{n}" for n in range(1, 121)]
    assert second["next_offset"] is None
    post(client, "book-200")  # a room beyond the bound is listed once it has messages
    assert listing(client, limit=1)["items"][0]["title"] == "Book 200: Volume 200"


def test_a_catalogue_of_several_pages_is_read_whole(
    make_client: MakeClient, fake_books: Any
) -> None:
    fake_books.titles = {n: f"Volume {n}" for n in range(1, 251)}
    client = make_client(fake_books.base_url)

    body = listing(client, limit=10, offset=240)

    assert fake_books.listings() == 3
    assert body["total"] == 250
    assert body["catalogue"]["truncated"] is False
    assert [room["name"] for room in body["items"]] == [f"book-{n}" for n in range(241, 251)]


# -- books cannot answer ------------------------------------------------------------------------


def assert_unavailable(body: dict[str, Any]) -> None:
    assert body["catalogue"] == {"status": "unavailable", "fetched_at": None, "truncated": False}


def test_with_books_unreachable_the_rooms_chat_knows_are_listed(
    make_client: MakeClient, closed_port: int
) -> None:
    client = make_client(f"http://127.0.0.1:{closed_port}", **FAST_BREAKER)
    assert client.post("/rooms", json={"name": "lobby", "title": "Lobby"}).status_code == 201
    post(client, "book-2", "posted while books is away")

    body = listing(client)

    assert_unavailable(body)
    assert titles(body) == {"book-2": "Book 2", "lobby": "Lobby"}  # the placeholder title
    assert body["total"] == 2


@pytest.mark.parametrize("status", [500, 503])
def test_with_books_failing_the_listing_still_answers(
    make_client: MakeClient, fake_books: Any, status: int
) -> None:
    fake_books.listing_status = status
    client = make_client(fake_books.base_url, DEPENDENCIES__BOOKS__RETRY__BASE_SECONDS="0.01")
    post(client, "book-1")  # books answers lookups: the room gets its title

    body = listing(client)

    assert_unavailable(body)
    assert titles(body) == {"book-1": "Book 1: Dune"}


def test_a_page_of_books_that_is_not_one_counts_as_unavailable(
    make_client: MakeClient, fake_books: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fake_books, "_page", lambda _: (200, {"items": [{"id": "x"}]}))
    client = make_client(fake_books.base_url)

    assert_unavailable(listing(client))


@pytest.fixture
def silent_books() -> Iterator[str]:
    """A books that accepts connections and never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    server.close()


def test_with_books_timing_out_the_listing_answers_within_the_deadline(
    make_client: MakeClient, silent_books: str
) -> None:
    client = make_client(
        silent_books,
        DEPENDENCIES__BOOKS__READ_TIMEOUT_SECONDS="0.2",
        DEPENDENCIES__BOOKS__DEADLINE_SECONDS="0.5",
    )
    started = time.monotonic()

    body = listing(client)

    assert time.monotonic() - started < 2
    assert_unavailable(body)
    assert body["items"] == []


def breaker_calls(client: TestClient, outcome: str) -> float:
    metrics = MetricsSnapshot(client.get("/metrics").text)
    value = metrics.value("circuit_breaker_calls_total", peer_service="books", outcome=outcome)
    return 0.0 if math.isnan(value) else value


def test_with_the_books_breaker_open_the_listing_does_not_call_books(
    make_client: MakeClient, fake_books: Any
) -> None:
    fake_books.close()
    client = make_client(fake_books.base_url, **FAST_BREAKER)
    post(client, "book-3")  # refused on each attempt: the breaker opens
    assert client.get("/health/ready").json()["checks"]["books"]["breaker"] == "open"
    rejected = breaker_calls(client, "rejected")

    body = listing(client)

    assert_unavailable(body)
    assert titles(body) == {"book-3": "Book 3"}
    assert breaker_calls(client, "rejected") == rejected + 1


def test_once_books_is_away_the_last_catalogue_is_listed_as_stale(
    make_client: MakeClient, fake_books: Any
) -> None:
    client = make_client(
        fake_books.base_url,
        BOOK_CACHE__CATALOGUE_SECONDS="0.2",
        BOOK_CACHE__MISSING_SECONDS="0.2",  # a failed read is not repeated before this
    )
    fresh = listing(client)
    fake_books.close()
    time.sleep(0.25)

    stale = listing(client)

    assert stale["catalogue"] == {**fresh["catalogue"], "status": "stale"}
    assert stale["items"] == fresh["items"]

    fake_books.restart()
    time.sleep(0.25)  # chat asks again when asked after the catalogue's (and failure's) time
    again = listing(client)
    assert again["catalogue"]["status"] == "available"
    assert again["catalogue"]["fetched_at"] > fresh["catalogue"]["fetched_at"]

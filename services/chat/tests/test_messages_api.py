"""Messages: posting, and listing newest first with cursor pagination."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient

Problem = Callable[..., dict[str, Any]]
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


def post(client: TestClient, room: str, text: str, author: str = "ann") -> dict[str, Any]:
    response = client.post(f"/rooms/{room}/messages", json={"author": author, "text": text})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def test_a_message_in_a_book_room_is_verified_by_books(client: TestClient) -> None:
    response = client.post("/rooms/book-1/messages", json={"author": "ann", "text": "Spice!"})

    assert response.status_code == 201, response.text
    message = response.json()
    assert message == {
        "id": message["id"],
        "room": "book-1",
        "author": "ann",
        "text": "Spice!",
        "verified": True,
        "created_at": message["created_at"],
    }
    assert isinstance(message["id"], int)
    assert TIMESTAMP.fullmatch(message["created_at"])
    assert client.get("/rooms/book-1/messages").json()["items"] == [message]


def test_a_message_in_a_free_room_is_neither_verified_nor_unverified(
    client: TestClient, fake_books: Any
) -> None:
    assert client.post("/rooms", json={"name": "lobby", "title": "Lobby"}).status_code == 201

    message = post(client, "lobby", "hi")

    assert message["verified"] is None
    assert message["room"] == "lobby"
    assert sum(fake_books.requests.values()) == 0  # books is not asked about free rooms


def test_a_message_to_an_unknown_book_is_not_found_and_not_stored(
    client: TestClient, problem: Problem, count_rows: Callable[[str], int]
) -> None:
    response = client.post("/rooms/book-404/messages", json={"author": "ann", "text": "hi"})

    problem(response, 404, "room")
    assert count_rows("messages") == 0
    assert count_rows("rooms") == 0


def test_text_is_kept_as_written_and_the_author_trimmed(client: TestClient) -> None:
    text = "  <b>bold</b> & 'quotes'\nsecond line \u00e9\U0001f4da  "

    message = post(client, "book-2", text, author="  bob  ")

    assert message["text"] == text
    assert message["author"] == "bob"
    assert client.get("/rooms/book-2/messages").json()["items"][0]["text"] == text


def test_edge_lengths_are_accepted(client: TestClient) -> None:
    message = post(client, "book-1", "x" * 2000, author="a" * 50)
    assert len(message["text"]) == 2000
    assert post(client, "book-1", "y", author="b")["text"] == "y"


def test_messages_are_listed_newest_first(client: TestClient) -> None:
    posted = [post(client, "book-1", f"message {n}") for n in range(5)]
    post(client, "book-2", "elsewhere")

    page = client.get("/rooms/book-1/messages").json()

    assert page["items"] == list(reversed(posted))
    assert page["next_cursor"] is None


@pytest.mark.parametrize("limit", [1, 3, 4, 100])
def test_cursor_pagination_has_no_gaps_or_duplicates(client: TestClient, limit: int) -> None:
    posted = [post(client, "book-1", f"message {n}")["id"] for n in range(10)]
    post(client, "book-2", "elsewhere")
    seen: list[int] = []
    pages = 0
    query = f"/rooms/book-1/messages?limit={limit}"
    url = query

    while True:
        response = client.get(url)
        assert response.status_code == 200, response.text
        page = response.json()
        pages += 1
        assert 0 < len(page["items"]) <= limit
        seen += [message["id"] for message in page["items"]]
        if page["next_cursor"] is None:
            break
        post(client, "book-1", f"posted while paging {pages}")  # must not shift the pages
        assert page["next_cursor"] == page["items"][-1]["id"]
        url = f"{query}&before={page['next_cursor']}"

    assert seen == sorted(posted, reverse=True)
    assert pages == -(-len(posted) // limit)


def test_a_page_before_a_cursor_holds_only_older_messages(client: TestClient) -> None:
    ids = [post(client, "book-1", f"m{n}")["id"] for n in range(6)]

    page = client.get(f"/rooms/book-1/messages?limit=2&before={ids[3]}").json()

    assert [m["id"] for m in page["items"]] == [ids[2], ids[1]]
    assert page["next_cursor"] == ids[1]
    last = client.get(f"/rooms/book-1/messages?limit=2&before={ids[1]}").json()
    assert [m["id"] for m in last["items"]] == [ids[0]]
    assert last["next_cursor"] is None


def test_an_empty_room_has_an_empty_page(client: TestClient) -> None:
    assert client.post("/rooms", json={"name": "quiet", "title": "Quiet"}).status_code == 201
    assert client.get("/rooms/quiet/messages").json() == {"items": [], "next_cursor": None}
    assert client.get("/rooms/book-3/messages").json() == {"items": [], "next_cursor": None}


def test_listing_an_unknown_room_is_not_found(client: TestClient, problem: Problem) -> None:
    problem(client.get("/rooms/nowhere/messages"), 404, "room")
    problem(client.get("/rooms/book-404/messages"), 404, "room")


@pytest.mark.parametrize(
    ("query", "field"),
    [("limit=0", "limit"), ("limit=101", "limit"), ("limit=ten", "limit"), ("before=0", "before")],
)
def test_bad_paging_parameters_name_the_parameter(
    client: TestClient, problem: Problem, query: str, field: str
) -> None:
    problem(client.get(f"/rooms/book-1/messages?{query}"), 400, field)

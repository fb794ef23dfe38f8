"""Rooms: book rooms exist when books knows the book, free rooms are created explicitly."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.testclient import TestClient

Problem = Callable[..., dict[str, Any]]
NOBODY = {"count": 0, "names": []}


def post(client: TestClient, room: str, text: str = "hello") -> dict[str, Any]:
    response = client.post(f"/rooms/{room}/messages", json={"author": "ann", "text": text})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def test_a_book_room_exists_when_books_knows_the_book(client: TestClient) -> None:
    response = client.get("/rooms/book-1")
    assert response.status_code == 200
    assert response.json() == {
        "name": "book-1",
        "title": "Book 1: Dune",
        "kind": "book",
        "book_id": 1,
        "last_message_at": None,
        "live": NOBODY,
    }


def test_a_book_room_of_an_unknown_book_is_not_found(client: TestClient, problem: Problem) -> None:
    body = problem(client.get("/rooms/book-404"), 404, "room")
    assert "404" in body["detail"]


def test_a_free_room_is_not_found_until_created(client: TestClient, problem: Problem) -> None:
    problem(client.get("/rooms/lobby"), 404, "room")

    created = client.post("/rooms", json={"name": "lobby", "title": "The lobby"})

    assert created.status_code == 201, created.text
    assert created.headers["location"] == "/rooms/lobby"
    room = {"name": "lobby", "title": "The lobby", "kind": "free", "book_id": None, "live": NOBODY}
    assert created.json() == {**room, "last_message_at": None}
    assert client.get("/rooms/lobby").json() == {**room, "last_message_at": None}


def test_creating_a_room_twice_is_a_conflict_naming_the_name(
    client: TestClient, problem: Problem, count_rows: Callable[[str], int]
) -> None:
    assert client.post("/rooms", json={"name": "lobby", "title": "One"}).status_code == 201

    body = problem(client.post("/rooms", json={"name": "lobby", "title": "Two"}), 409, "name")

    assert "lobby" in body["detail"]
    assert client.get("/rooms/lobby").json()["title"] == "One"
    assert count_rows("rooms") == 1


def test_book_room_names_cannot_be_created(
    client: TestClient, problem: Problem, count_rows: Callable[[str], int]
) -> None:
    for name in ("book-1", "book-77", "book-x"):
        problem(client.post("/rooms", json={"name": name, "title": "Mine"}), 422, "name")
    assert count_rows("rooms") == 0


def test_rooms_are_listed_active_first_then_book_rooms_by_id_then_free_rooms(
    client: TestClient,
) -> None:
    for name in ("gamma", "alpha", "beta"):
        assert client.post("/rooms", json={"name": name, "title": name.title()}).status_code == 201
    post(client, "beta")
    post(client, "book-4")

    listed = client.get("/rooms")

    assert listed.status_code == 200
    items = listed.json()["items"]
    assert [room["name"] for room in items] == [
        *("book-4", "beta"),  # most recently active first
        *("book-1", "book-2", "book-3", "book-5"),  # quiet book rooms by book id
        *("alpha", "gamma"),  # quiet free rooms by name
    ]
    assert items[0]["kind"] == "book"
    assert items[0]["title"] == "Book 4: Foundation"
    assert items[0]["last_message_at"] > items[1]["last_message_at"]
    assert [room["last_message_at"] is None for room in items[2:]] == [True] * 6
    assert [r["name"] for r in client.get("/rooms?limit=2").json()["items"]] == ["book-4", "beta"]


def test_a_room_shows_when_it_was_last_active(client: TestClient) -> None:
    post(client, "book-3", "first")
    latest = post(client, "book-3", "second")

    room = client.get("/rooms/book-3").json()
    listed = client.get("/rooms").json()["items"]

    assert room == {
        "name": "book-3",
        "title": "Book 3: Hyperion",
        "kind": "book",
        "book_id": 3,
        "last_message_at": latest["created_at"],
        "live": NOBODY,
    }
    assert listed[0] == room

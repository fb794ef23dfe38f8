"""Following a room live over Server-Sent Events, against a real ``chat serve`` process."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

Problem = Callable[..., dict[str, Any]]


def post(base_url: str, room: str, text: str) -> dict[str, Any]:
    response = httpx.post(
        f"{base_url}/rooms/{room}/messages", json={"author": "ann", "text": text}, timeout=5
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def test_a_follower_receives_messages_posted_after_it_connected(module_chat: Any, sse: Any) -> None:
    earlier = post(module_chat.url, "book-1", "before anyone listened")
    with (
        httpx.Client(base_url=module_chat.url, timeout=5) as client,
        client.stream("GET", "/rooms/book-1/events") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        events = sse(response)
        assert "following" in events.next().comments  # subscribed: nothing posted now is lost

        posted = post(module_chat.url, "book-1", "hello, live")
        post(module_chat.url, "book-2", "another room")
        last = post(module_chat.url, "book-1", "and again")

        first = events.next_message()
        assert first.event == "message"
        assert first.id == str(posted["id"])
        assert first.json() == posted
        second = events.next_message()
        assert (second.id, second.json()) == (str(last["id"]), last)
    assert earlier["id"] < posted["id"]


def test_reconnecting_with_last_event_id_misses_nothing_and_repeats_nothing(
    module_chat: Any, sse: Any
) -> None:
    with httpx.Client(base_url=module_chat.url, timeout=5) as client:
        with client.stream("GET", "/rooms/book-3/events") as response:
            events = sse(response)
            events.next()
            seen = post(module_chat.url, "book-3", "seen live")
            assert events.next_message().id == str(seen["id"])
        # Disconnected: these are missed (plus noise in another room).
        missed = [post(module_chat.url, "book-3", f"missed {n}") for n in range(3)]
        post(module_chat.url, "book-2", "not for us")

        headers = {"Last-Event-ID": str(seen["id"])}
        with client.stream("GET", "/rooms/book-3/events", headers=headers) as response:
            assert response.status_code == 200
            events = sse(response)
            assert "following" in events.next().comments
            caught_up = [events.next_message() for _ in missed]
            assert [e.json() for e in caught_up] == missed
            assert [e.id for e in caught_up] == [str(m["id"]) for m in missed]

            live = [post(module_chat.url, "book-3", f"live {n}") for n in range(2)]
            received = [events.next_message().json() for _ in live]
            assert received == live  # in order, and no missed message repeated in between


def test_a_follower_that_missed_nothing_gets_only_new_messages(module_chat: Any, sse: Any) -> None:
    old = post(module_chat.url, "book-4", "old")
    headers = {"Last-Event-ID": str(old["id"])}
    with (
        httpx.Client(base_url=module_chat.url, timeout=5) as client,
        client.stream("GET", "/rooms/book-4/events", headers=headers) as response,
    ):
        events = sse(response)
        events.next()
        new = post(module_chat.url, "book-4", "new")
        assert events.next_message().json() == new


def test_following_an_unknown_room_is_not_found(client: TestClient, problem: Problem) -> None:
    problem(client.get("/rooms/nowhere/events"), 404, "room")
    problem(client.get("/rooms/book-404/events"), 404, "room")


@pytest.mark.parametrize("last_event_id", ["abc", "-1", "1.5", "9" * 19])
def test_a_bad_last_event_id_is_refused_naming_it(
    client: TestClient, problem: Problem, last_event_id: str
) -> None:
    response = client.get("/rooms/book-1/events", headers={"Last-Event-ID": last_event_id})
    problem(response, 400, "Last-Event-ID")


def test_a_catch_up_beyond_the_limit_ends_the_stream_to_continue_on_reconnect(
    chat_processes: Any, database_url: str, fake_books: Any, sse: Any
) -> None:
    """Catch-up is capped (memory stays bounded): a stream that sent as many as it may ends,
    and the client's reconnect with the last id it got continues where it stopped."""
    chat = chat_processes.start(database_url, fake_books.base_url, LIVE__CATCH_UP_LIMIT="3")
    seen = post(chat.url, "book-1", "seen")
    missed = [post(chat.url, "book-1", f"missed {n}")["id"] for n in range(7)]

    received: list[int] = []
    with httpx.Client(base_url=chat.url, timeout=30) as client:
        for _ in range(2):
            headers = {"Last-Event-ID": str(received[-1] if received else seen["id"])}
            with client.stream("GET", "/rooms/book-1/events", headers=headers) as response:
                assert response.status_code == 200
                lines = list(response.iter_lines())  # the server ends this stream by itself
            ids = [int(line.removeprefix("id: ")) for line in lines if line.startswith("id: ")]
            assert len(ids) == 3, lines
            assert "retry: 100" in lines  # reconnect soon: there is more to catch up
            received += ids

        headers = {"Last-Event-ID": str(received[-1])}
        with client.stream("GET", "/rooms/book-1/events", headers=headers) as response:
            events = sse(response)
            assert "following" in events.next().comments
            received.append(int(events.next_message().id))  # the rest fits: the stream stays
            live = post(chat.url, "book-1", "live")
            assert events.next_message().json() == live

    assert received == missed

"""Who is live, through the API of a real ``chat serve``: a follower counts (and is named)
while its stream is open and not after, and a stream that asks is told when that changes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

NOBODY = {"count": 0, "names": []}


@contextmanager
def following(base_url: str, room: str, sse: Any, **params: str) -> Iterator[Any]:
    with (
        httpx.Client(base_url=base_url, timeout=5) as client,
        client.stream("GET", f"/rooms/{room}/events", params=params) as response,
    ):
        assert response.status_code == 200, response.read()
        events = sse(response)
        assert "following" in events.next().comments
        yield events


def live(base_url: str, room: str) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{base_url}/rooms/{room}", timeout=5).json()["live"]
    return body


def listed_live(base_url: str, room: str) -> dict[str, Any]:
    items = httpx.get(f"{base_url}/rooms", params={"limit": 100}, timeout=5).json()["items"]
    body: dict[str, Any] = next(item["live"] for item in items if item["name"] == room)
    return body


def eventually(check: Any, expected: Any, seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while (value := check()) != expected:
        assert time.monotonic() < deadline, f"{value} != {expected}"
        time.sleep(0.05)


def presence(events: Any) -> dict[str, Any]:
    event = events.next()
    assert event.event == "presence", event
    assert event.id is None  # never moves the client's Last-Event-ID
    body: dict[str, Any] = event.json()
    return body


def test_a_follower_counts_while_its_stream_is_open_and_not_after(
    module_chat: Any, sse: Any
) -> None:
    url = module_chat.url
    assert live(url, "book-1") == NOBODY

    with following(url, "book-1", sse, name="ann"):
        assert live(url, "book-1") == {"count": 1, "names": ["ann"]}
        assert listed_live(url, "book-1") == {"count": 1, "names": ["ann"]}
        with following(url, "book-1", sse), following(url, "book-1", sse, name="ann"):
            assert live(url, "book-1") == {"count": 3, "names": ["ann"]}  # named once
        eventually(lambda: live(url, "book-1"), {"count": 1, "names": ["ann"]})
        assert live(url, "book-2") == NOBODY

    eventually(lambda: live(url, "book-1"), NOBODY)
    assert listed_live(url, "book-1") == NOBODY


def test_a_stream_that_asks_is_told_who_comes_and_goes(module_chat: Any, sse: Any) -> None:
    url = module_chat.url
    with following(url, "book-2", sse, name="ann", presence="true") as ann:
        assert presence(ann) == {"count": 1, "names": ["ann"]}

        with following(url, "book-2", sse, name="bob"):
            assert presence(ann) == {"count": 2, "names": ["ann", "bob"]}
            with following(url, "book-2", sse):
                assert presence(ann) == {"count": 3, "names": ["ann", "bob"]}
            assert presence(ann) == {"count": 2, "names": ["ann", "bob"]}
        assert presence(ann) == {"count": 1, "names": ["ann"]}

        posted = httpx.post(
            f"{url}/rooms/book-2/messages", json={"author": "ann", "text": "hi"}, timeout=5
        ).json()
        message = ann.next()
        assert (message.event, message.id) == ("message", str(posted["id"]))


def test_a_stream_that_does_not_ask_gets_only_messages(module_chat: Any, sse: Any) -> None:
    url = module_chat.url
    with following(url, "book-3", sse) as quiet:
        with following(url, "book-3", sse, name="bob"):
            eventually(lambda: live(url, "book-3")["count"], 2)
            time.sleep(0.3)  # longer than presence updates take to settle
            posted = httpx.post(
                f"{url}/rooms/book-3/messages", json={"author": "ann", "text": "hi"}, timeout=5
            ).json()
            event = quiet.next()
        assert (event.event, event.id) == ("message", str(posted["id"]))


def test_names_are_plain_text_in_json(module_chat: Any, sse: Any) -> None:
    name = '<b>Zoë</b> & "李"'
    with following(module_chat.url, "book-4", sse, name=name, presence="true") as events:
        assert presence(events) == {"count": 1, "names": [name]}
        assert live(module_chat.url, "book-4")["names"] == [name]


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("", id="empty"),
        pytest.param("x" * 33, id="33-characters"),
        pytest.param(" ann", id="leading-space"),
        pytest.param("ann ", id="trailing-space"),
        pytest.param("a\nb", id="newline"),
        pytest.param("a\u202eb", id="bidi-override"),
        pytest.param("a\u200bb", id="zero-width-space"),
        pytest.param("a\x00b", id="nul"),
    ],
)
def test_a_bad_display_name_is_refused_naming_it(
    client: TestClient, problem: Any, name: str
) -> None:
    problem(client.get("/rooms/book-1/events", params={"name": name}), 400, "name")


def test_a_bad_presence_flag_is_refused_naming_it(client: TestClient, problem: Any) -> None:
    problem(client.get("/rooms/book-1/events", params={"presence": "maybe"}), 400, "presence")

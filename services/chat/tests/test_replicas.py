"""Fan-out across replicas: two ``chat serve`` processes on one PostgreSQL database."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import httpx
import pytest

from chassis.migrations import upgrade
from chassis.testing.postgres import PostgresServer
from chat.settings import SERVICE_DIR

pytestmark = pytest.mark.postgres


def post(base_url: str, room: str, text: str) -> dict[str, Any]:
    response = httpx.post(
        f"{base_url}/rooms/{room}/messages", json={"author": "ann", "text": text}, timeout=5
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_for_live_feed(base_url: str, seconds: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        ready = httpx.get(f"{base_url}/health/ready", timeout=5)
        body: dict[str, Any] = ready.json()
        if body["checks"]["live_feed"]["status"] == "UP":
            assert ready.status_code == 200
            return body
        assert time.monotonic() < deadline, f"live_feed never came UP: {body}"
        time.sleep(0.1)


@contextmanager
def following(base_url: str, room: str, sse: Any) -> Iterator[Any]:
    with (
        httpx.Client(base_url=base_url, timeout=5) as client,
        client.stream("GET", f"/rooms/{room}/events") as response,
    ):
        assert response.status_code == 200
        events = sse(response)
        assert "following" in events.next().comments
        yield events


@pytest.fixture(scope="module")
def replicas(
    postgres_server: PostgresServer,
    tmp_path_factory: pytest.TempPathFactory,
    module_fake_books: Any,
    chat_process_pool: Any,
) -> Iterator[tuple[Any, Any]]:
    """Two ``chat serve`` on one fresh database, migrated once before either starts."""
    url = postgres_server.create_database()
    upgrade(SERVICE_DIR / "migrations", url)
    processes = chat_process_pool(tmp_path_factory.mktemp("replicas"))
    try:
        pair = [processes.start(url, module_fake_books.base_url, wait=False) for _ in "ab"]
        for replica in pair:
            replica.wait_until_ready()
        yield pair[0], pair[1]
    finally:
        processes.stop_all()
        postgres_server.drop_database(url.rsplit("/", 1)[1])


def test_each_replica_listens_to_the_live_feed(replicas: tuple[Any, Any]) -> None:
    for replica in replicas:
        ready = wait_for_live_feed(replica.base_url)
        assert ready["status"] == "UP"
        assert ready["checks"]["live_feed"]["critical"] is False
        assert ready["checks"]["database"]["dialect"] == "postgresql"


def test_a_message_reaches_the_followers_of_every_replica(
    replicas: tuple[Any, Any], sse: Any
) -> None:
    replica_a, replica_b = replicas
    for replica in replicas:
        wait_for_live_feed(replica.base_url)

    with ExitStack() as stack:
        on_a = stack.enter_context(following(replica_a.base_url, "book-1", sse))
        on_b = stack.enter_context(following(replica_b.base_url, "book-1", sse))

        from_b = post(replica_b.base_url, "book-1", "posted to B")
        assert on_a.next_message().json() == from_b
        assert on_b.next_message().json() == from_b

        from_a = post(replica_a.base_url, "book-1", "posted to A")
        assert on_b.next_message().json() == from_a
        assert on_a.next_message().json() == from_a

        post(replica_a.base_url, "book-2", "another room")
        last = post(replica_b.base_url, "book-1", "each message once")
        assert on_a.next_message().json() == last  # nothing from book-2, no duplicates
        assert on_b.next_message().json() == last

    # Both replicas read the same history, and a free room created on one exists on the other.
    assert (
        httpx.post(
            f"{replica_a.base_url}/rooms", json={"name": "lobby", "title": "Lobby"}, timeout=5
        ).status_code
        == 201
    )
    with following(replica_b.base_url, "lobby", sse) as lobby_on_b:
        hello = post(replica_a.base_url, "lobby", "hello from A")
        assert lobby_on_b.next_message().json() == hello
    for replica in (replica_a, replica_b):
        page = httpx.get(f"{replica.base_url}/rooms/book-1/messages", timeout=5).json()
        assert [m["id"] for m in page["items"]] == [last["id"], from_a["id"], from_b["id"]]


def test_a_replica_catches_up_a_follower_with_messages_posted_elsewhere(
    replicas: tuple[Any, Any], sse: Any
) -> None:
    replica_a, replica_b = replicas
    for replica in replicas:
        wait_for_live_feed(replica.base_url)
    seen = post(replica_a.base_url, "book-3", "seen")
    missed = [post(replica_a.base_url, "book-3", f"missed {n}") for n in range(2)]

    # The browser was following A, which went away; it reconnects to B with Last-Event-ID.
    headers = {"Last-Event-ID": str(seen["id"])}
    with (
        httpx.Client(base_url=replica_b.base_url, timeout=5) as client,
        client.stream("GET", "/rooms/book-3/events", headers=headers) as response,
    ):
        events = sse(response)
        events.next()
        assert [events.next_message().json() for _ in missed] == missed
        live = post(replica_a.base_url, "book-3", "live, via A")
        assert events.next_message().json() == live

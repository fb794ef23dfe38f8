"""Fan-out across replicas: two ``chat serve`` processes on one PostgreSQL database."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from chassis.migrations import upgrade
from chassis.testing.postgres import PostgresServer
from chat import persistence
from chat.live import LISTENER_APPLICATION_NAME
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
def following(
    base_url: str, room: str, sse: Any, *, timeout: float = 5, **params: str
) -> Iterator[Any]:
    with (
        httpx.Client(base_url=base_url, timeout=timeout) as client,
        client.stream("GET", f"/rooms/{room}/events", params=params) as response,
    ):
        assert response.status_code == 200
        events = sse(response)
        assert "following" in events.next().comments
        yield events


@pytest.fixture(scope="module")
def replica_database(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of a fresh database the replicas share, migrated once before either starts."""
    url = postgres_server.create_database()
    upgrade(SERVICE_DIR / "migrations", url)
    yield url
    postgres_server.drop_database(url.rsplit("/", 1)[1])


@pytest.fixture(scope="module")
def replicas(
    replica_database: str,
    tmp_path_factory: pytest.TempPathFactory,
    module_fake_books: Any,
    chat_process_pool: Any,
) -> Iterator[tuple[Any, Any]]:
    """Two ``chat serve`` on one database."""
    processes = chat_process_pool(tmp_path_factory.mktemp("replicas"))
    try:
        pair = [
            processes.start(replica_database, module_fake_books.base_url, wait=False) for _ in "ab"
        ]
        for replica in pair:
            replica.wait_until_ready()
        yield pair[0], pair[1]
    finally:
        processes.stop_all()


def test_each_replica_listens_to_the_live_feed(replicas: tuple[Any, Any]) -> None:
    for replica in replicas:
        ready = wait_for_live_feed(replica.url)
        assert ready["status"] == "UP"
        assert ready["checks"]["live_feed"]["critical"] is False
        assert ready["checks"]["database"]["dialect"] == "postgresql"


def test_a_message_reaches_the_followers_of_every_replica(
    replicas: tuple[Any, Any], sse: Any
) -> None:
    replica_a, replica_b = replicas
    for replica in replicas:
        wait_for_live_feed(replica.url)

    with ExitStack() as stack:
        on_a = stack.enter_context(following(replica_a.url, "book-1", sse))
        on_b = stack.enter_context(following(replica_b.url, "book-1", sse))

        from_b = post(replica_b.url, "book-1", "posted to B")
        assert on_a.next_message().json() == from_b
        assert on_b.next_message().json() == from_b

        from_a = post(replica_a.url, "book-1", "posted to A")
        assert on_b.next_message().json() == from_a
        assert on_a.next_message().json() == from_a

        post(replica_a.url, "book-2", "another room")
        last = post(replica_b.url, "book-1", "each message once")
        assert on_a.next_message().json() == last  # nothing from book-2, no duplicates
        assert on_b.next_message().json() == last

    # Both replicas read the same history, and a free room created on one exists on the other.
    assert (
        httpx.post(
            f"{replica_a.url}/rooms", json={"name": "lobby", "title": "Lobby"}, timeout=5
        ).status_code
        == 201
    )
    with following(replica_b.url, "lobby", sse) as lobby_on_b:
        hello = post(replica_a.url, "lobby", "hello from A")
        assert lobby_on_b.next_message().json() == hello
    for replica in (replica_a, replica_b):
        page = httpx.get(f"{replica.url}/rooms/book-1/messages", timeout=5).json()
        assert [m["id"] for m in page["items"]] == [last["id"], from_a["id"], from_b["id"]]


def test_a_replica_catches_up_a_follower_with_messages_posted_elsewhere(
    replicas: tuple[Any, Any], sse: Any
) -> None:
    replica_a, replica_b = replicas
    for replica in replicas:
        wait_for_live_feed(replica.url)
    seen = post(replica_a.url, "book-3", "seen")
    missed = [post(replica_a.url, "book-3", f"missed {n}") for n in range(2)]

    # The browser was following A, which went away; it reconnects to B with Last-Event-ID.
    headers = {"Last-Event-ID": str(seen["id"])}
    with (
        httpx.Client(base_url=replica_b.url, timeout=5) as client,
        client.stream("GET", "/rooms/book-3/events", headers=headers) as response,
    ):
        events = sse(response)
        events.next()
        assert [events.next_message().json() for _ in missed] == missed
        live = post(replica_a.url, "book-3", "live, via A")
        assert events.next_message().json() == live


def test_concurrent_posts_to_both_replicas_reach_a_follower_gap_free_and_in_order(
    replicas: tuple[Any, Any], follow_while_posting: Any
) -> None:
    replica_a, replica_b = replicas
    for replica in replicas:
        wait_for_live_feed(replica.url)

    received, posted = follow_while_posting(
        replica_a.url, "book-5", [replica_a.url, replica_b.url], posters=6, each=10
    )

    assert received == posted  # every id, each once, in id order


def test_followers_get_what_was_posted_while_the_live_feed_reconnected(
    replicas: tuple[Any, Any], replica_database: str, sse: Any
) -> None:
    replica_a, replica_b = replicas
    for replica in replicas:
        wait_for_live_feed(replica.url)
    post(replica_a.url, "book-4", "before")

    with ExitStack() as stack:
        on_a = stack.enter_context(following(replica_a.url, "book-4", sse, timeout=30))
        on_b = stack.enter_context(following(replica_b.url, "book-4", sse, timeout=30))
        missed = commit_while_nobody_listens(replica_database, "book-4", "while nobody listened")

        for events in (on_a, on_b):
            assert events.next_message().id == str(missed["id"])
        for replica in replicas:
            wait_for_live_feed(replica.url, seconds=30)
        later = post(replica_b.url, "book-4", "after")
        for events in (on_a, on_b):
            assert events.next_message().json() == later  # nothing repeated in between


def commit_while_nobody_listens(database_url: str, room: str, text_: str) -> dict[str, Any]:
    """Posts a message (row and notice) in a transaction that first ends every replica's
    LISTEN connection: the notice goes out at commit, while the replicas are reconnecting."""
    engine = create_engine(database_url)
    try:
        with Session(engine) as session:
            listeners = session.scalars(
                text(
                    "SELECT pid FROM pg_stat_activity"
                    " WHERE datname = current_database() AND application_name = :listener"
                ),
                {"listener": LISTENER_APPLICATION_NAME},
            ).all()
            assert len(listeners) == 2, listeners
            message = persistence.insert_message(
                session, room=room, author="ann", text_=text_, verified=True
            )
            persistence.announce(session, room=room, message_id=message["id"])
            for pid in listeners:  # waits (up to 10 s) until the backend has gone
                ended = session.scalar(
                    text("SELECT pg_terminate_backend(:pid, 10000)"), {"pid": pid}
                )
                assert ended is True
            session.commit()
    finally:
        engine.dispose()
    return message


# -- who is live, across replicas ---------------------------------------------------------------


def live(base_url: str, room: str) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{base_url}/rooms/{room}", timeout=5).json()["live"]
    return body


def eventually_live(base_url: str, room: str, expected: dict[str, Any], seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while (now := live(base_url, room)) != expected:
        assert time.monotonic() < deadline, f"{base_url}: {now} != {expected}"
        time.sleep(0.05)


def presence(events: Any) -> dict[str, Any]:
    event = events.next()
    assert event.event == "presence", event
    body: dict[str, Any] = event.json()
    return body


def create_room(base_url: str, name: str) -> None:
    response = httpx.post(f"{base_url}/rooms", json={"name": name, "title": name}, timeout=5)
    assert response.status_code == 201, response.text


def test_who_is_live_counts_the_followers_of_every_replica(
    replicas: tuple[Any, Any], sse: Any
) -> None:
    replica_a, replica_b = replicas
    for replica in replicas:
        wait_for_live_feed(replica.url)
    create_room(replica_a.url, "reading-room")

    with following(replica_b.url, "reading-room", sse, name="bob", presence="true") as bob:
        assert presence(bob) == {"count": 1, "names": ["bob"]}
        with following(replica_a.url, "reading-room", sse, name="ann"):
            assert presence(bob) == {"count": 2, "names": ["ann", "bob"]}  # ann is on A
            for replica in replicas:
                eventually_live(replica.url, "reading-room", {"count": 2, "names": ["ann", "bob"]})
        assert presence(bob) == {"count": 1, "names": ["bob"]}  # ann left A
        eventually_live(replica_a.url, "reading-room", {"count": 1, "names": ["bob"]})
    for replica in replicas:
        eventually_live(replica.url, "reading-room", {"count": 0, "names": []})


def test_a_replica_that_starts_learns_who_follows_on_the_others(
    replicas: tuple[Any, Any], replica_database: str, module_fake_books: Any, chat_processes: Any
) -> None:
    replica_a, _ = replicas
    wait_for_live_feed(replica_a.url)
    create_room(replica_a.url, "late-room")
    with (
        httpx.Client(base_url=replica_a.url, timeout=5) as client,
        client.stream("GET", "/rooms/late-room/events", params={"name": "ann"}),
    ):
        late = chat_processes.start(replica_database, module_fake_books.base_url)
        wait_for_live_feed(late.url)
        # Its hello makes A repeat its rosters at once, not after presence_share_seconds.
        eventually_live(late.url, "late-room", {"count": 1, "names": ["ann"]}, seconds=3)


def test_a_replica_that_dies_stops_being_counted_on_the_others(
    replicas: tuple[Any, Any], replica_database: str, module_fake_books: Any, chat_processes: Any
) -> None:
    _, replica_b = replicas
    wait_for_live_feed(replica_b.url)
    create_room(replica_b.url, "fading-room")
    doomed = chat_processes.start(
        replica_database, module_fake_books.base_url, LIVE__PRESENCE_SHARE_SECONDS="0.3"
    )
    wait_for_live_feed(doomed.url)
    client = httpx.Client(base_url=doomed.url, timeout=5)
    stream = client.stream("GET", "/rooms/fading-room/events", params={"name": "ann"})
    stream.__enter__()
    eventually_live(replica_b.url, "fading-room", {"count": 1, "names": ["ann"]})

    doomed.kill()  # no goodbye: its followers expire on B (3 x 0.3 s after it last said)

    eventually_live(replica_b.url, "fading-room", {"count": 0, "names": []}, seconds=3)
    with contextlib.suppress(httpx.HTTPError):
        stream.__exit__(None, None, None)
    client.close()


def test_a_replica_that_shuts_down_says_goodbye(
    replicas: tuple[Any, Any], replica_database: str, module_fake_books: Any, chat_processes: Any
) -> None:
    """With the default presence_share_seconds (10 s, so 30 s before its followers would
    expire elsewhere), a replica that stops cleanly stops being counted at once."""
    _, replica_b = replicas
    wait_for_live_feed(replica_b.url)
    create_room(replica_b.url, "closing-room")
    leaving = chat_processes.start(replica_database, module_fake_books.base_url)
    wait_for_live_feed(leaving.url)
    client = httpx.Client(base_url=leaving.url, timeout=5)
    stream = client.stream("GET", "/rooms/closing-room/events", params={"name": "ann"})
    stream.__enter__()
    eventually_live(replica_b.url, "closing-room", {"count": 1, "names": ["ann"]})

    leaving.terminate()

    eventually_live(replica_b.url, "closing-room", {"count": 0, "names": []}, seconds=5)
    with contextlib.suppress(httpx.HTTPError):
        stream.__exit__(None, None, None)
    client.close()

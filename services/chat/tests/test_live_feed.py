"""The listener against a real Broker on an event loop: its catch-up after reconnecting (no
database), and its notices on a real PostgreSQL (the stored messages are a stand-in)."""

from __future__ import annotations

import asyncio
import select
from collections.abc import Callable, Iterable
from typing import Any

import psycopg2
import pytest
from sqlalchemy import make_url

from chat import persistence
from chat.live import CLOSED, Broker, Follower, PgListener


def message(room: str, message_id: int) -> dict[str, Any]:
    return {"id": message_id, "room": room}


class Stored:
    """``chat.live.StoredMessages`` over a list."""

    def __init__(self, *messages: dict[str, Any]) -> None:
        self.messages = messages

    def one(self, message_id: int) -> dict[str, Any] | None:
        return next((m for m in self.messages if m["id"] == message_id), None)

    def after(self, room: str, *, after: int, limit: int) -> list[dict[str, Any]]:
        found = [m for m in self.messages if m["room"] == room and m["id"] > after]
        return found[:limit]


def queued(follower: Follower) -> list[Any]:
    items = []
    while not follower.queue.empty():
        item = follower.queue.get_nowait()
        items.append("CLOSED" if item is CLOSED else item["id"])
    return items


async def settle() -> None:
    """Lets the callbacks the listener thread scheduled on the loop run."""
    for _ in range(3):
        await asyncio.sleep(0)


def test_after_reconnecting_each_follower_gets_what_it_missed_once() -> None:
    async def scenario() -> dict[str, list[Any]]:
        broker = Broker(buffer=8, max_followers=8)
        broker.bind(asyncio.get_running_loop())
        behind = broker.subscribe("lobby", after=5)
        ahead = broker.subscribe("lobby", after=7)
        elsewhere = broker.subscribe("cellar", after=3)
        stored = Stored(*(message("lobby", n) for n in (5, 6, 7, 8)), message("cellar", 4))
        listener = PgListener("", stored, broker)

        await asyncio.to_thread(listener._catch_up)  # the broker answers on this loop
        await settle()
        broker.publish(message("lobby", 8))  # its notice, received after the catch-up
        await settle()
        return {
            "behind": queued(behind),
            "ahead": queued(ahead),
            "elsewhere": queued(elsewhere),
        }

    assert asyncio.run(scenario()) == {"behind": [6, 7, 8], "ahead": [8], "elsewhere": [4]}


def test_a_room_that_missed_more_than_a_buffer_is_cut_off_to_reconnect() -> None:
    async def scenario() -> tuple[list[Any], bool, int]:
        broker = Broker(buffer=2, max_followers=8)
        broker.bind(asyncio.get_running_loop())
        follower = broker.subscribe("lobby", after=1)
        listener = PgListener("", Stored(*(message("lobby", n) for n in (2, 3, 4))), broker)

        await asyncio.to_thread(listener._catch_up)
        await settle()
        return queued(follower), follower.cut_off, broker.followers

    # Its stream ends; the client reconnects with Last-Event-ID and reads the database.
    assert asyncio.run(scenario()) == (["CLOSED"], True, 0)


# -- against a real PostgreSQL ------------------------------------------------------------------


class NoticeArrivesWhileSaying(PgListener):
    """Its first presence notice goes out after another session's message notice has reached
    its socket: libpq reads that notice while running the pg_notify, so it is already in
    ``connection.notifies`` and the socket stays quiet."""

    def __init__(self, *args: Any, announce: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.announce: Callable[[], None] | None = announce

    def _say(self, connection: Any, payloads: Iterable[str]) -> None:
        payloads = list(payloads)
        if self.announce is not None and "hello" not in payloads[0]:
            self.announce()
            self.announce = None
            readable, _, _ = select.select([connection], [], [], 5)
            assert readable, "the message notice never reached the listener's socket"
        super()._say(connection, payloads)


@pytest.mark.postgres
def test_a_message_notice_read_while_the_listener_speaks_is_published_at_once(
    postgres_url: str,
) -> None:
    dsn = make_url(postgres_url).set(drivername="postgresql").render_as_string(False)

    def announce() -> None:
        with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, '7')", (persistence.NOTIFY_CHANNEL,))

    async def scenario() -> list[Any]:
        broker = Broker(buffer=8, max_followers=8)
        broker.bind(asyncio.get_running_loop())
        listener = NoticeArrivesWhileSaying(
            dsn, Stored(message("lobby", 7)), broker, announce=announce
        )
        listener.start()
        try:
            await asyncio.to_thread(listener.listening.wait, 5)
            follower = broker.subscribe("lobby", after=0)  # a roster changed: it speaks
            try:
                return [(await asyncio.wait_for(follower.queue.get(), 3))["id"]]
            except TimeoutError:
                return []
        finally:
            await asyncio.to_thread(listener.stop)

    assert asyncio.run(scenario()) == [7]

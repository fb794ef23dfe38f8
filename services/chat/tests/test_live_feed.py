"""The listener's catch-up after reconnecting, against a real Broker on an event loop (no
database: the stored messages are a stand-in)."""

from __future__ import annotations

import asyncio
from typing import Any

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

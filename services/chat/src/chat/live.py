"""Live fan-out of new messages to the followers of a room.

    post (worker thread) --commit--> LiveFeed
        SQLite:      publish to this process' Broker
        PostgreSQL:  pg_notify in the posting transaction -> every replica's PgListener
                     (LISTEN, one connection per process) -> that replica's Broker
    Broker (event loop) -> one bounded asyncio.Queue per follower -> its SSE stream

Followers cost a queue and a coroutine, not a thread, so one process holds thousands of them
while ordinary requests keep their latency. A follower that falls more than its buffer behind
is cut off; its browser reconnects with Last-Event-ID and misses nothing.

Within a room, messages reach the broker in id order (posts to a room commit one at a time, and
are published in commit order), so a follower only needs the last id it got: anything at or
below it is a repeat. When the LISTEN connection drops, the notices sent until it is back are
lost; once listening again, PgListener reads from the database what each followed room got
after the last id its followers have.
"""

from __future__ import annotations

import asyncio
import select
import threading
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg2
import psycopg2.extensions
from sqlalchemy.orm import Session

from chassis import DOWN, UP, CheckResult, get_logger
from chat import persistence

log = get_logger("chat.live")
CLOSED: dict[str, Any] = {"closed": True}  # sentinel that ends a stream


@dataclass(eq=False)
class Follower:
    room: str
    queue: asyncio.Queue[dict[str, Any]]
    # The newest message id this follower has or has queued: the broker skips repeats below it,
    # and the listener catches the room up from the smallest of them.
    last_id: int = 0
    cut_off: bool = False

    def advance(self, message_id: int) -> None:
        self.last_id = max(self.last_id, message_id)


class TooManyFollowers(Exception):
    pass


class Broker:
    """Fans out in-process; every method except ``publish`` runs on the event loop."""

    def __init__(self, *, buffer: int, max_followers: int) -> None:
        self.buffer = buffer
        self.max_followers = max_followers
        self._rooms: dict[str, set[Follower]] = defaultdict(set)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._count = 0
        self._closed = False

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    @property
    def followers(self) -> int:
        return self._count

    def subscribe(self, room: str, *, after: int) -> Follower:
        """A follower of ``room`` that has every message up to id ``after``."""
        if self._count >= self.max_followers:
            raise TooManyFollowers
        follower = Follower(room, asyncio.Queue(maxsize=self.buffer), last_id=after)
        if self._closed:  # shutting down: the stream ends at once, the client reconnects elsewhere
            follower.queue.put_nowait(CLOSED)
            return follower
        self._rooms[room].add(follower)
        self._count += 1
        return follower

    def unsubscribe(self, follower: Follower) -> None:
        followers = self._rooms.get(follower.room)
        if followers and follower in followers:
            followers.discard(follower)
            self._count -= 1
            if not followers:
                del self._rooms[follower.room]

    def publish(self, message: dict[str, Any]) -> None:
        """Thread-safe: hands the message to the event loop."""
        if self._loop is None or self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._deliver, message)

    def close(self) -> None:
        """Ends every stream (thread-safe): shutdown must not wait for followers to leave."""
        self._closed = True
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._close_all)

    def cut_off_room(self, room: str) -> None:
        """Ends the streams of a room (thread-safe); they reconnect and catch up from the
        database."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._cut_off_room, room)

    def positions(self, timeout: float = 5.0) -> dict[str, int]:
        """Thread-safe: for each room with followers, the id every one of them has got to."""
        if self._loop is None or self._loop.is_closed():
            return {}
        return asyncio.run_coroutine_threadsafe(self._positions(), self._loop).result(timeout)

    async def _positions(self) -> dict[str, int]:
        return {
            room: min(follower.last_id for follower in followers)
            for room, followers in self._rooms.items()
        }

    def _deliver(self, message: dict[str, Any]) -> None:
        for follower in list(self._rooms.get(message["room"], ())):
            if message["id"] <= follower.last_id:
                continue  # caught up from the database already
            try:
                follower.queue.put_nowait(message)
            except asyncio.QueueFull:
                self._cut_off(follower)
            else:
                follower.advance(message["id"])

    def _cut_off_room(self, room: str) -> None:
        for follower in list(self._rooms.get(room, ())):
            self._cut_off(follower)

    def _cut_off(self, follower: Follower) -> None:
        follower.cut_off = True
        self.unsubscribe(follower)
        _force(follower.queue, CLOSED)

    def _close_all(self) -> None:
        for followers in list(self._rooms.values()):
            for follower in list(followers):
                self.unsubscribe(follower)
                _force(follower.queue, CLOSED)


def _force(queue: asyncio.Queue[dict[str, Any]], item: dict[str, Any]) -> None:
    while True:
        try:
            queue.put_nowait(item)
            return
        except asyncio.QueueFull:
            queue.get_nowait()


class LiveFeed:
    """How a committed message reaches the brokers: directly, or through PostgreSQL."""

    def __init__(self, broker: Broker, *, postgres: bool) -> None:
        self.broker = broker
        self.postgres = postgres
        self._in_commit_order = threading.Lock()

    def commit(self, session: Session, message: dict[str, Any]) -> None:
        """Commits the posting transaction (the poster holds its room's lock) and passes the
        message on in commit order, which within a room is id order."""
        if self.postgres:
            # PostgreSQL delivers notices at commit, in commit order.
            persistence.announce(session, room=message["room"], message_id=message["id"])
            session.commit()
            return
        # SQLite commits one writer at a time; without the lock two posters could publish in
        # the other order, and followers skip an id lower than one they already have.
        with self._in_commit_order:
            session.commit()
            self.broker.publish(message)


class StoredMessages(Protocol):
    """What the listener reads from the database, each call in a session of its own."""

    def one(self, message_id: int) -> dict[str, Any] | None: ...

    def after(self, room: str, *, after: int, limit: int) -> list[dict[str, Any]]: ...


class PgListener:
    """LISTENs on its own connection and publishes every announced message to the broker;
    after reconnecting it first publishes what was committed while nobody listened."""

    name = "live_feed"
    critical = False

    def __init__(self, dsn: str, messages: StoredMessages, broker: Broker) -> None:
        self.dsn = dsn
        self.messages = messages
        self.broker = broker
        self.listening = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chat-listener", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    async def check(self) -> CheckResult:
        return CheckResult(UP if self.listening.is_set() else DOWN, {"channel": "LISTEN"})

    def _run(self) -> None:
        backoff = 0.2
        while not self._stop.is_set():
            try:
                self._listen()
                backoff = 0.2
            except Exception as exc:  # psycopg2's or SQLAlchemy's (the fetch): never stop listening
                self.listening.clear()
                log.warning("live feed connection lost; reconnecting", error=type(exc).__name__)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def _listen(self) -> None:
        connection = psycopg2.connect(self.dsn, connect_timeout=3)
        try:
            connection.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
            with connection.cursor() as cursor:
                cursor.execute(f"LISTEN {persistence.NOTIFY_CHANNEL}")
            self._catch_up()  # after LISTEN: whatever commits from now on is announced
            self.listening.set()
            while not self._stop.is_set():
                ready, _, _ = select.select([connection], [], [], 1.0)
                if not ready:
                    continue
                connection.poll()
                while connection.notifies:
                    notice = connection.notifies.pop(0)
                    message = self.messages.one(int(notice.payload))
                    if message is not None:
                        self.broker.publish(message)
        finally:
            self.listening.clear()
            connection.close()

    def _catch_up(self) -> None:
        """Publishes what each followed room got after the last id all its followers have
        (the notices of a connection that dropped are lost). Followers skip the repeats."""
        for room, after in self.broker.positions().items():
            missed = self.messages.after(room, after=after, limit=self.broker.buffer + 1)
            if len(missed) > self.broker.buffer:  # more than their queues hold
                self.broker.cut_off_room(room)  # they reconnect with Last-Event-ID
                continue
            for message in missed:
                self.broker.publish(message)

"""Live fan-out of new messages to the followers of a room.

    post (worker thread) --commit--> LiveFeed
        SQLite:      publish to this process' Broker
        PostgreSQL:  pg_notify in the posting transaction -> every replica's PgListener
                     (LISTEN, one connection per process) -> that replica's Broker
    Broker (event loop) -> one bounded asyncio.Queue per follower -> its SSE stream

Followers cost a queue and a coroutine, not a thread, so one process holds thousands of them
while ordinary requests keep their latency. A follower that falls more than its buffer behind
is cut off; its browser reconnects with Last-Event-ID and misses nothing.

The broker also keeps the room's presence (chat.presence): a follower counts from subscribe to
unsubscribe; followers that asked are told when their room's roster changes (the PRESENCE
sentinel in their queue), and on PostgreSQL PgListener shares the rosters between replicas.

Within a room, messages reach the broker in id order (posts to a room commit one at a time, and
are published in commit order), so a follower only needs the last id it got: anything at or
below it is a repeat. When the LISTEN connection drops, the notices sent until it is back are
lost; once listening again, PgListener reads from the database what each followed room got
after the last id its followers have.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg2
import psycopg2.extensions
from sqlalchemy.orm import Session

from chassis import DOWN, UP, CheckResult, get_logger
from chat import persistence
from chat.presence import Presence, bye_notice, decode_notice, encode_notices, hello_notice

log = get_logger("chat.live")
CLOSED: dict[str, Any] = {"closed": True}  # sentinel that ends a stream
PRESENCE: dict[str, Any] = {"presence": True}  # sentinel: the room's roster changed
# Joins and leaves within this time reach presence followers as one update (a burst of N
# followers joining costs N updates to each, not N squared).
PRESENCE_SETTLE_SECONDS = 0.1
LISTENER_APPLICATION_NAME = "chat-live-feed"  # names its connection in pg_stat_activity
PRESENCE_SHARE_SECONDS = 10.0  # how often replicas repeat their rosters to one another


@dataclass(eq=False)
class Follower:
    room: str
    queue: asyncio.Queue[dict[str, Any]]
    # The newest message id this follower has or has queued: the broker skips repeats below it,
    # and the listener catches the room up from the smallest of them.
    last_id: int = 0
    cut_off: bool = False
    name: str | None = None  # the display name others see while it follows
    wants_presence: bool = False  # its stream tells it who follows the room too
    # The room's roster changed since its stream last said: the stream sends it after its next
    # item (PRESENCE, or a message when the queue had no room for PRESENCE).
    presence_due: bool = False

    def advance(self, message_id: int) -> None:
        self.last_id = max(self.last_id, message_id)


class TooManyFollowers(Exception):
    pass


class Broker:
    """Fans out in-process; every method except ``publish`` runs on the event loop."""

    def __init__(
        self, *, buffer: int, max_followers: int, presence: Presence | None = None
    ) -> None:
        self.buffer = buffer
        self.max_followers = max_followers
        self.presence = presence or Presence()
        self._rooms: dict[str, set[Follower]] = defaultdict(set)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._count = 0
        self._closed = False
        self._presence_pending: set[str] = set()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    @property
    def followers(self) -> int:
        return self._count

    def subscribe(
        self, room: str, *, after: int, name: str | None = None, wants_presence: bool = False
    ) -> Follower:
        """A follower of ``room`` that has every message up to id ``after``; counted (and
        named, with ``name``) in the room's presence until it unsubscribes."""
        if self._count >= self.max_followers:
            raise TooManyFollowers
        follower = Follower(
            room,
            asyncio.Queue(maxsize=self.buffer),
            last_id=after,
            name=name,
            wants_presence=wants_presence,
        )
        if self._closed:  # shutting down: the stream ends at once, the client reconnects elsewhere
            follower.queue.put_nowait(CLOSED)
            return follower
        self._rooms[room].add(follower)
        self._count += 1
        self.presence.join(room, name)
        self._roster_changed(room)
        return follower

    def unsubscribe(self, follower: Follower) -> None:
        followers = self._rooms.get(follower.room)
        if followers and follower in followers:
            followers.discard(follower)
            self._count -= 1
            if not followers:
                del self._rooms[follower.room]
            self.presence.leave(follower.room, follower.name)
            self._roster_changed(follower.room)

    def roster_changed(self, room: str) -> None:
        """Thread-safe: the room's roster changed elsewhere (another replica)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._roster_changed, room)

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

    def _roster_changed(self, room: str) -> None:
        if self._loop is None or self._loop.is_closed() or room in self._presence_pending:
            return
        self._presence_pending.add(room)
        self._loop.call_later(PRESENCE_SETTLE_SECONDS, self._tell_presence, room)

    def _tell_presence(self, room: str) -> None:
        self._presence_pending.discard(room)
        for follower in list(self._rooms.get(room, ())):
            if not follower.wants_presence or follower.presence_due:
                continue
            follower.presence_due = True
            with contextlib.suppress(asyncio.QueueFull):  # then after its next message
                follower.queue.put_nowait(PRESENCE)


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
    after reconnecting it first publishes what was committed while nobody listened.

    On the same connection it shares this replica's presence with the other replicas: the
    rosters that changed as soon as they change, all of them every ``share_seconds`` (they
    count for three times that unless repeated, so a replica that died stops being counted),
    a hello when it starts listening (the others answer with theirs) and a goodbye when it
    stops."""

    name = "live_feed"
    critical = False

    def __init__(
        self,
        dsn: str,
        messages: StoredMessages,
        broker: Broker,
        *,
        share_seconds: float = PRESENCE_SHARE_SECONDS,
    ) -> None:
        self.dsn = dsn
        self.messages = messages
        self.broker = broker
        self.presence = broker.presence
        self.share_seconds = share_seconds
        self.listening = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chat-listener", daemon=True)
        # Wakes the listener when a roster here changes (written on the event loop's thread).
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._wake_writer.setblocking(False)
        self.presence.on_change_here(self._wake)
        self._share_all_at = 0.0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake()
        self._thread.join(timeout=5)
        self._wake_reader.close()
        self._wake_writer.close()

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
        connection = psycopg2.connect(
            self.dsn, connect_timeout=3, application_name=LISTENER_APPLICATION_NAME
        )
        try:
            connection.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
            with connection.cursor() as cursor:
                cursor.execute(f"LISTEN {persistence.NOTIFY_CHANNEL}")
                cursor.execute(f"LISTEN {persistence.PRESENCE_CHANNEL}")
            self._catch_up()  # after LISTEN: whatever commits from now on is announced
            self.listening.set()
            self._say(connection, [hello_notice(self.presence.replica)])
            self._share_all_at = 0.0  # now: what changed while nobody listened included
            while not self._stop.is_set():
                # Notices that came in while a pg_notify of ours ran are in connection.notifies
                # already (libpq read them off the socket): no waiting for the socket then.
                wait = min(1.0, max(0.0, self._share_all_at - time.monotonic()))
                ready, _, _ = select.select(
                    [connection, self._wake_reader], [], [], 0 if connection.notifies else wait
                )
                if self._wake_reader in ready:
                    self._drain_wakes()
                if connection in ready:
                    connection.poll()
                while connection.notifies:
                    self._received(connection.notifies.pop(0))
                self._share(connection)
            self._say(connection, [bye_notice(self.presence.replica)])
        finally:
            self.listening.clear()
            connection.close()

    def _received(self, notice: Any) -> None:
        if notice.channel != persistence.PRESENCE_CHANNEL:
            message = self.messages.one(int(notice.payload))
            if message is not None:
                self.broker.publish(message)
            return
        presence = decode_notice(notice.payload)
        if presence is None or presence.replica == self.presence.replica:
            return
        if presence.hello:  # a replica (re)started listening: tell it who follows here
            self._share_all_at = 0.0
            return
        if presence.bye:
            changed = self.presence.forget(presence.replica)
        else:
            changed = self.presence.receive(presence.replica, presence.rosters, ttl=presence.ttl)
        for room in changed:
            self.broker.roster_changed(room)

    def _share(self, connection: Any) -> None:
        changed = self.presence.take_changed_here()
        if time.monotonic() >= self._share_all_at:
            # The rooms that emptied here too, then every roster (others forget what is not
            # repeated); and what other replicas stopped repeating is forgotten here.
            changed.update(self.presence.here())
            self._share_all_at = time.monotonic() + self.share_seconds
            for room in self.presence.expire():
                self.broker.roster_changed(room)
        if changed:
            ttl = self.share_seconds * 3
            self._say(connection, encode_notices(self.presence.replica, changed, ttl=ttl))

    def _say(self, connection: Any, payloads: Iterable[str]) -> None:
        with connection.cursor() as cursor:
            for payload in payloads:
                cursor.execute("SELECT pg_notify(%s, %s)", (persistence.PRESENCE_CHANNEL, payload))

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):  # full: it is awake anyway
            self._wake_writer.send(b"\0")

    def _drain_wakes(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            while self._wake_reader.recv(4096):
                pass

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

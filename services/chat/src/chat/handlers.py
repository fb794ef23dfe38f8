"""HTTP handlers: parse -> call the domain -> shape the response. Bound by operationId.

``follow_room`` and ``page`` are ``async``: a live stream must not hold a worker thread.
The page's script and styles (``script``, ``style``) are files, read once: its
Content-Security-Policy runs nothing inline. A browser asks again each time (``no-cache``) and
gets a 304 while its copy's ETag still matches, so a new version is never hidden behind an old
cached one.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import connexion
import orjson
from starlette.background import BackgroundTask
from starlette.responses import Response, StreamingResponse

from chassis import ServiceUnavailable, current_service, current_session
from chassis.responses import offset_page, rfc3339
from chat import domain
from chat.app import ChatComponents
from chat.books_api import Catalogue
from chat.live import CLOSED, PRESENCE, Broker, Follower, TooManyFollowers
from chat.presence import Roster
from chat.settings import SERVICE_DIR

STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
STREAM_START = b"retry: 2000\n: following\n\n"
# After a capped catch-up: ask the client to come back at once (the next stream restores the
# usual delay) for the rest.
STREAM_TO_CONTINUE = b"retry: 100\n: more to catch up: reconnect with Last-Event-ID\n\n"


async def page() -> Response:
    return Response(current_service().component(ChatComponents).page, media_type="text/html")


@dataclass(frozen=True)
class Asset:
    """A file of the page, with the ETag of its content."""

    body: bytes
    media_type: str
    etag: str

    @classmethod
    def load(cls, name: str, media_type: str) -> Asset:
        body = (SERVICE_DIR / "web" / name).read_bytes()
        return cls(body, media_type, f'"{hashlib.sha256(body).hexdigest()[:32]}"')

    def response(self, if_none_match: str | None) -> Response:
        headers = {"Cache-Control": "no-cache", "ETag": self.etag}
        if if_none_match is not None and self.matches(if_none_match):
            return Response(status_code=304, headers=headers)
        return Response(self.body, media_type=self.media_type, headers=headers)

    def matches(self, if_none_match: str) -> bool:
        """RFC 9110 13.1.2: ``*``, or any of the listed tags, weak ones too."""
        tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        return "*" in tags or self.etag in tags


SCRIPT = Asset.load("app.js", "text/javascript")
STYLE = Asset.load("app.css", "text/css")


async def script() -> Response:
    return SCRIPT.response(connexion.request.headers.get("if-none-match"))


async def style() -> Response:
    return STYLE.response(connexion.request.headers.get("if-none-match"))


def list_rooms(limit: int = 50, offset: int = 0) -> dict[str, Any]:
    parts = current_service().component(ChatComponents)
    page = domain.list_rooms(current_session(), parts.books, limit=limit, offset=offset)
    live = parts.broker.presence.rosters(room["name"] for room in page.rooms)
    items = [room_json(room, live[room["name"]]) for room in page.rooms]
    body = offset_page(items, total=page.total, limit=limit, offset=offset)
    body["catalogue"] = catalogue_json(page.catalogue)
    return body


def create_room(body: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, str]]:
    parts = current_service().component(ChatComponents)
    room = domain.create_room(current_session(), name=body["name"], title=body["title"])
    live = parts.broker.presence.roster(room["name"])
    return room_json(room, live), 201, {"Location": f"/rooms/{room['name']}"}


def get_room(room: str) -> dict[str, Any]:
    parts = current_service().component(ChatComponents)
    found = domain.get_room(current_session(), parts.books, name=room)
    return room_json(found, parts.broker.presence.roster(found["name"]))


def list_messages(room: str, limit: int = 50, before: int | None = None) -> dict[str, Any]:
    parts = current_service().component(ChatComponents)
    page, cursor = domain.list_messages(
        current_session(), parts.books, room=room, before=before, limit=limit
    )
    return {"items": [message_json(m) for m in page], "next_cursor": cursor}


def post_message(room: str, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    parts = current_service().component(ChatComponents)
    message = domain.post_message(
        current_session(),
        parts.books,
        parts.feed,
        room=room,
        author=body["author"],
        text=body["text"],
    )
    return message_json(message), 201


async def follow_room(room: str, name: str | None = None, presence: bool = False) -> Response:
    service = current_service()
    parts = service.component(ChatComponents)
    last_seen = connexion.request.headers.get("last-event-id")
    after = await service.in_session(
        domain.resume_point, parts.books, room=room, last_seen=int(last_seen) if last_seen else None
    )
    try:
        # Before the catch-up query: whatever commits meanwhile arrives live, nothing slips by.
        follower = parts.broker.subscribe(room, after=after, name=name, wants_presence=presence)
    except TooManyFollowers:
        raise ServiceUnavailable(
            "room: this replica follows as many rooms as it may", retry_after_seconds=5
        ) from None
    try:
        missed, more = await service.in_session(
            domain.missed_messages, room=room, after=after, limit=parts.settings.live.catch_up_limit
        )
    except BaseException:
        parts.broker.unsubscribe(follower)
        raise
    caught_up_to = missed[-1]["id"] if missed else after
    follower.advance(caught_up_to)  # the broker need not queue these again
    stream = _events(
        follower,
        missed,
        caught_up_to=caught_up_to,
        more=more,
        heartbeat=parts.settings.live.heartbeat_seconds,
    )
    # The background task unsubscribes even when the client leaves before the stream starts
    # (an unstarted generator never runs its finally); unsubscribing twice is harmless.
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers=STREAM_HEADERS,
        background=BackgroundTask(_unsubscribe, parts.broker, follower),
    )


async def _unsubscribe(broker: Broker, follower: Follower) -> None:
    """On the event loop, like every Broker method but publish (a sync background task would
    run on a worker thread)."""
    broker.unsubscribe(follower)


async def _events(
    follower: Follower,
    missed: list[dict[str, Any]],
    *,
    caught_up_to: int,
    more: bool,
    heartbeat: float,
) -> AsyncIterator[bytes]:
    """The catch-up, then live messages. A capped catch-up ends the stream instead: the
    client's reconnect continues it, and no stream holds more than one batch. A follower that
    asked for presence gets the room's roster first and again whenever it changes."""
    broker = current_service().component(ChatComponents).broker
    sent = caught_up_to
    told = None
    try:
        yield STREAM_START
        if follower.wants_presence:
            told = broker.presence.roster(follower.room)
            yield presence_event(told)
        for message in missed:
            yield sse(message)
        if more:
            yield STREAM_TO_CONTINUE
            return
        while True:
            try:
                message = await asyncio.wait_for(follower.queue.get(), heartbeat)
            except TimeoutError:
                yield b": keep-alive\n\n"
                continue
            if message is CLOSED:
                return
            if message is not PRESENCE and message["id"] > sent:
                # (a message both caught up from the database and announced live is skipped)
                sent = message["id"]
                yield sse(message)
            if follower.presence_due:
                follower.presence_due = False
                roster = broker.presence.roster(follower.room)
                if roster != told:
                    told = roster
                    yield presence_event(roster)
    finally:
        broker.unsubscribe(follower)


def presence_event(roster: Roster) -> bytes:
    """No ``id``: a presence event leaves the client's Last-Event-ID as it was."""
    return b"event: presence\ndata: %s\n\n" % orjson.dumps(roster.json())


def sse(message: dict[str, Any]) -> bytes:
    return b"event: message\nid: %d\ndata: %s\n\n" % (
        message["id"],
        orjson.dumps(message_json(message)),
    )


def room_json(room: dict[str, Any], live: Roster) -> dict[str, Any]:
    last = room.get("last_message_at")
    return {
        "name": room["name"],
        "title": room["title"],
        "kind": room["kind"],
        "book_id": room.get("book_id"),
        "last_message_at": rfc3339(last) if last else None,
        "live": live.json(),
    }


def catalogue_json(catalogue: Catalogue) -> dict[str, Any]:
    fetched = catalogue.fetched_at
    return {
        "status": catalogue.status.value,
        "fetched_at": rfc3339(fetched) if fetched else None,
        "truncated": catalogue.truncated,
    }


def message_json(message: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": message["id"],
        "room": message["room"],
        "author": message["author"],
        "text": message["text"],
        "verified": message["verified"],
        "created_at": rfc3339(message["created_at"]),
    }

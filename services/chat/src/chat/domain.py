"""Rooms and messages: which rooms exist, who may post where, what a message records."""

from __future__ import annotations

import heapq
import re
from dataclasses import dataclass
from itertools import islice
from typing import Any

from sqlalchemy.orm import Session

from chassis import ConflictError, NotFoundError, UnprocessableError
from chat import persistence
from chat.books_api import BookDirectory, Catalogue
from chat.live import LiveFeed

BOOK_ROOM = re.compile(r"^book-([1-9][0-9]{0,9})$")


def book_id_of(room: str) -> int | None:
    match = BOOK_ROOM.fullmatch(room)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class RoomPage:
    rooms: list[dict[str, Any]]
    total: int
    catalogue: Catalogue


def list_rooms(session: Session, books: BookDirectory, *, limit: int, offset: int) -> RoomPage:
    """Every stored room and a room for every book in books' catalogue (stored or not yet):
    those with messages first, most recently active first, then the quiet book rooms by book
    id, then the quiet free rooms by name. Books being unreachable only costs the catalogue's
    rooms and titles (``RoomPage.catalogue`` says so), never the answer."""
    catalogue = books.catalogue()
    wanted = offset + limit
    stored = persistence.list_rooms(session, limit=wanted)
    names = {book_id: book_room_name(book_id) for book_id in catalogue.titles}
    already = persistence.stored_rooms(session, names=list(names.values()))
    not_stored = [
        _book_room(names[book_id], book_id, title)
        for book_id, title in catalogue.titles.items()
        if names[book_id] not in already
    ]
    # Both in the listing's order; the catalogue's rooms are all quiet book rooms.
    merged = heapq.merge(stored, not_stored, key=_listing_order)
    rooms = [_current_title(room, books) for room in islice(merged, offset, wanted)]
    total = persistence.count_rooms(session) + len(not_stored)
    return RoomPage(rooms, total, catalogue)


def _listing_order(room: dict[str, Any]) -> tuple[Any, ...]:
    last = room.get("last_message_at")
    if last is not None:
        return (0, -last.timestamp(), 0, 0, room["name"])
    return (1, 0.0, 0 if room["kind"] == "book" else 1, room.get("book_id") or 0, room["name"])


def book_room_name(book_id: int) -> str:
    return f"book-{book_id}"


def get_room(session: Session, books: BookDirectory, *, name: str) -> dict[str, Any]:
    room = persistence.fetch_room(session, name=name)
    if room is not None:
        return _with_book_title(session, books, room)
    book_id = book_id_of(name)
    if book_id is None:
        raise NotFoundError(f"room: there is no room {name!r}", field="room")
    lookup = books.lookup(book_id)
    if lookup.exists is False:
        raise NotFoundError(f"room: there is no book {book_id}", field="room")
    return _book_room(name, book_id, lookup.title)


def create_room(session: Session, *, name: str, title: str) -> dict[str, Any]:
    if name.startswith("book-"):
        raise UnprocessableError(
            "name: rooms named book-... belong to books and exist already", field="name"
        )
    try:
        persistence.insert_room(session, name=name, title=title, kind="free", book_id=None)
    except persistence.RoomExists:
        raise ConflictError(f"name: the room {name!r} exists already", field="name") from None
    room = persistence.fetch_room(session, name=name)
    assert room is not None
    return room


def post_message(
    session: Session, books: BookDirectory, feed: LiveFeed, *, room: str, author: str, text: str
) -> dict[str, Any]:
    """Stores the message and hands it to the live feed as it commits."""
    verified: bool | None = None
    book_id = book_id_of(room)
    if book_id is not None:
        lookup = books.lookup(book_id)
        if lookup.exists is False:
            raise NotFoundError(f"room: there is no book {book_id}", field="room")
        verified = lookup.exists is True
        persistence.ensure_room(
            session,
            name=room,
            title=book_room_title(book_id, lookup.title),
            kind="book",
            book_id=book_id,
            refresh_title=lookup.title is not None,  # never put a placeholder back
        )
    # Held until the commit: ids of one room become visible in id order (Last-Event-ID).
    if not persistence.lock_room(session, name=room):
        raise NotFoundError(f"room: there is no room {room!r}", field="room")
    message = persistence.insert_message(
        session, room=room, author=author.strip(), text_=text, verified=verified
    )
    feed.commit(session, message)
    return message


def list_messages(
    session: Session, books: BookDirectory, *, room: str, before: int | None, limit: int
) -> tuple[list[dict[str, Any]], int | None]:
    get_room(session, books, name=room)
    page = persistence.fetch_page(session, room=room, before=before, limit=limit + 1)
    more = len(page) > limit
    page = page[:limit]
    return page, page[-1]["id"] if more else None


def resume_point(
    session: Session, books: BookDirectory, *, room: str, last_seen: int | None
) -> int:
    """The id a follower's stream continues after: its ``Last-Event-ID``, or the room's newest
    message for a new follower. An id beyond the newest (another database's) means the newest."""
    get_room(session, books, name=room)
    latest = persistence.latest_message_id(session, room=room)
    return latest if last_seen is None else min(last_seen, latest)


def missed_messages(
    session: Session, *, room: str, after: int, limit: int
) -> tuple[list[dict[str, Any]], bool]:
    """Up to ``limit`` messages after ``after``, oldest first, and whether more follow."""
    found = persistence.fetch_after(session, room=room, after=after, limit=limit + 1)
    return found[:limit], len(found) > limit


def book_room_title(book_id: int, title: str | None) -> str:
    """``title`` is None when books could not be asked: a placeholder until it can."""
    return f"Book {book_id}: {title}" if title else f"Book {book_id}"


def _with_book_title(
    session: Session, books: BookDirectory, room: dict[str, Any]
) -> dict[str, Any]:
    """A book room created while books was unreachable has a placeholder title: ask again. A
    book renamed since its room was stored shows the title books gave last (when cached)."""
    if room["kind"] != "book":
        return room
    book_id = room["book_id"]
    known = books.known(book_id)
    title = known.title if known else None
    if title is None and room["title"] == book_room_title(book_id, None):
        title = books.lookup(book_id).title
    if title is None or room["title"] == book_room_title(book_id, title):
        return room
    room = {**room, "title": book_room_title(book_id, title)}
    persistence.set_title(session, name=room["name"], title=room["title"])
    return room


def _current_title(room: dict[str, Any], books: BookDirectory) -> dict[str, Any]:
    """A listed book room shows the title books gave last (cached), else the stored one."""
    if room["kind"] != "book":
        return room
    known = books.known(room["book_id"])
    if known is None or known.title is None:
        return room
    return {**room, "title": book_room_title(room["book_id"], known.title)}


def _book_room(name: str, book_id: int, title: str | None) -> dict[str, Any]:
    return {
        "name": name,
        "title": book_room_title(book_id, title),
        "kind": "book",
        "book_id": book_id,
        "created_at": None,
    }

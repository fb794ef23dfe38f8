"""chat's tables and every SQL statement it runs. Functions take the session explicitly."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    case,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from chassis.db import NAMING_CONVENTION

NOTIFY_CHANNEL = "chat_messages"
PRESENCE_CHANNEL = "chat_presence"  # replicas share who follows their rooms (chat.live)
IN_LIST_SIZE = 500  # names per IN (...): well below SQLite's limit on bound parameters

metadata = MetaData(naming_convention=NAMING_CONVENTION)

rooms = Table(
    "rooms",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("title", String(200), nullable=False),
    Column("kind", String(8), nullable=False),
    Column("book_id", Integer),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

messages = Table(
    "messages",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("room", String(64), ForeignKey("rooms.name", ondelete="CASCADE"), nullable=False),
    Column("author", String(50), nullable=False),
    Column("text", String(2000), nullable=False),
    Column("verified", Boolean),
    Column("created_at", DateTime(timezone=True), nullable=False),
)


class RoomExists(Exception):
    pass


def now() -> datetime:
    return datetime.now(UTC)


def fetch_room(session: Session, *, name: str) -> dict[str, Any] | None:
    last = (
        select(func.max(messages.c.created_at))
        .where(messages.c.room == rooms.c.name)
        .scalar_subquery()
        .label("last_message_at")
    )
    row = session.execute(select(rooms, last).where(rooms.c.name == name)).mappings().first()
    return dict(row) if row else None


def insert_room(session: Session, *, name: str, title: str, kind: str, book_id: int | None) -> None:
    try:
        with session.begin_nested():
            session.execute(
                insert(rooms).values(
                    name=name, title=title, kind=kind, book_id=book_id, created_at=now()
                )
            )
    except IntegrityError as exc:
        raise RoomExists from exc


def ensure_room(
    session: Session,
    *,
    name: str,
    title: str,
    kind: str,
    book_id: int | None,
    refresh_title: bool = False,
) -> None:
    """Creates the room unless it exists (concurrent posters may race to create it); with
    ``refresh_title`` an existing room takes ``title`` too."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(rooms).values(
        name=name, title=title, kind=kind, book_id=book_id, created_at=now()
    )
    if refresh_title:  # the WHERE spares the write (and its row version) when nothing changed
        session.execute(
            statement.on_conflict_do_update(
                index_elements=["name"],
                set_={"title": statement.excluded.title},
                where=rooms.c.title != statement.excluded.title,
            )
        )
    else:
        session.execute(statement.on_conflict_do_nothing(index_elements=["name"]))


def set_title(session: Session, *, name: str, title: str) -> None:
    session.execute(
        update(rooms).where(rooms.c.name == name, rooms.c.title != title).values(title=title)
    )


def lock_room(session: Session, *, name: str) -> bool:
    """Locks the room's row until the transaction ends; False when there is no such room.

    Posts to one room then insert and commit one at a time, so their ids become visible in id
    order (a follower resuming after id N can never miss a smaller id committed later).
    PostgreSQL needs the lock; SQLite ignores FOR UPDATE as it serialises writers anyway.
    """
    locked = session.execute(
        select(rooms.c.name).where(rooms.c.name == name).with_for_update()
    ).first()
    return locked is not None


def list_rooms(session: Session, *, limit: int) -> list[dict[str, Any]]:
    """The first ``limit`` rooms: those with messages, most recently active first, then the
    quiet book rooms by book id, then the quiet free rooms by name (chat.domain merges the
    catalogue's rooms into this order)."""
    last = (
        select(messages.c.room, func.max(messages.c.created_at).label("last_message_at"))
        .group_by(messages.c.room)
        .subquery()
    )
    rows = session.execute(
        select(rooms, last.c.last_message_at)
        .outerjoin(last, last.c.room == rooms.c.name)
        .order_by(
            last.c.last_message_at.desc().nulls_last(),
            case((rooms.c.kind == "book", 0), else_=1),
            rooms.c.book_id,
            rooms.c.name,
        )
        .limit(limit)
    ).mappings()
    return [dict(row) for row in rows]


def count_rooms(session: Session) -> int:
    return int(session.execute(select(func.count()).select_from(rooms)).scalar_one())


def stored_rooms(session: Session, *, names: Sequence[str]) -> set[str]:
    """Which of ``names`` are rooms stored here."""
    found: set[str] = set()
    for start in range(0, len(names), IN_LIST_SIZE):
        chunk = names[start : start + IN_LIST_SIZE]
        found.update(session.execute(select(rooms.c.name).where(rooms.c.name.in_(chunk))).scalars())
    return found


def insert_message(
    session: Session, *, room: str, author: str, text_: str, verified: bool | None
) -> dict[str, Any]:
    values = {
        "room": room,
        "author": author,
        "text": text_,
        "verified": verified,
        "created_at": now(),
    }
    message_id = session.execute(
        insert(messages).values(**values).returning(messages.c.id)
    ).scalar_one()
    return {"id": message_id, **values}


def announce(session: Session, *, room: str, message_id: int) -> None:
    """PostgreSQL delivers the notice to every listening replica when the transaction commits."""
    session.execute(
        text("SELECT pg_notify(:channel, :payload)"),
        {"channel": NOTIFY_CHANNEL, "payload": f"{message_id}"},
    )


def fetch_message(session: Session, *, message_id: int) -> dict[str, Any] | None:
    row = session.execute(select(messages).where(messages.c.id == message_id)).mappings().first()
    return dict(row) if row else None


def latest_message_id(session: Session, *, room: str) -> int:
    """The room's newest message id, 0 when it has none."""
    latest = session.execute(
        select(func.coalesce(func.max(messages.c.id), 0)).where(messages.c.room == room)
    ).scalar_one()
    return int(latest)


def fetch_page(
    session: Session, *, room: str, before: int | None, limit: int
) -> list[dict[str, Any]]:
    """Newest first."""
    conditions = [messages.c.room == room]
    if before is not None:
        conditions.append(messages.c.id < before)
    rows = session.execute(
        select(messages).where(*conditions).order_by(messages.c.id.desc()).limit(limit)
    ).mappings()
    return [dict(row) for row in rows]


def fetch_after(session: Session, *, room: str, after: int, limit: int) -> list[dict[str, Any]]:
    """Oldest first: what a reconnecting follower missed."""
    rows = session.execute(
        select(messages)
        .where(messages.c.room == room, messages.c.id > after)
        .order_by(messages.c.id)
        .limit(limit)
    ).mappings()
    return [dict(row) for row in rows]

"""books' tables and every SQL statement it runs. Functions take the session explicitly.

Searches ignore case in every script, on both databases: lower() folds ASCII only in SQLite
and in a PostgreSQL database whose locale is C, so they go through :class:`UnicodeLower`,
which is lower() with an ICU collation on PostgreSQL and Python's ``str.lower`` on SQLite (see
:func:`install_sql_functions`, called by the app factory for the service's engine).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    Engine,
    ForeignKey,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    bindparam,
    collate,
    delete,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.expression import Executable
from sqlalchemy.sql.functions import FunctionElement

from chassis.db import NAMING_CONVENTION

metadata = MetaData(naming_convention=NAMING_CONVENTION)

books = Table(
    "books",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("isbn", String(13), nullable=False, unique=True),
    Column("title", String(300), nullable=False),
    Column("author", String(200), nullable=False, index=True),
    Column("price", Numeric(10, 2, asdecimal=True), nullable=False),
    Column("stock", Integer, nullable=False, server_default="0"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("stock >= 0", name="stock_not_negative"),
    CheckConstraint("price >= 0", name="price_not_negative"),
)

reservations = Table(
    "reservations",
    metadata,
    Column(
        "book_id",
        Integer,
        ForeignKey("books.id", ondelete="RESTRICT"),
        primary_key=True,
    ),
    Column("order_id", String(64), primary_key=True),
    Column("quantity", Integer, nullable=False),
    # NULL only on a tombstone: a release that found nothing reserved
    Column("unit_price", Numeric(10, 2, asdecimal=True)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # Set once released. The row stays, so a reservation arriving after its release (a late
    # retry of the caller) finds it and is refused instead of taking stock nobody will return.
    Column("released_at", DateTime(timezone=True)),
    CheckConstraint(
        "released_at IS NOT NULL OR (quantity > 0 AND unit_price IS NOT NULL)",
        name="held_reservation_complete",
    ),
)


# PostgreSQL's root ICU locale: Unicode case mapping whatever the database's own locale is.
# Present wherever PostgreSQL is built with ICU (Debian's, the postgres Docker images, ...).
UNICODE_COLLATION = "und-x-icu"
SQLITE_UNICODE_LOWER = "books_unicode_lower"
LIKE_ESCAPE = "\\"


class UnicodeLower(FunctionElement[str]):
    """``lower(text)`` for every script, not only ASCII (rendered for SQLite and PostgreSQL,
    the databases books runs on)."""

    name = "unicode_lower"
    type = String()
    inherit_cache = True


@compiles(UnicodeLower, "postgresql")
def _unicode_lower_postgresql(element: UnicodeLower, compiler: SQLCompiler, **kw: Any) -> str:
    (argument,) = element.clauses
    return f"lower({compiler.process(collate(argument, UNICODE_COLLATION), **kw)})"


@compiles(UnicodeLower, "sqlite")
def _unicode_lower_sqlite(element: UnicodeLower, compiler: SQLCompiler, **kw: Any) -> str:
    return f"{SQLITE_UNICODE_LOWER}({compiler.process(element.clauses, **kw)})"


def install_sql_functions(engine: Engine) -> None:
    """Gives every new SQLite connection of ``engine`` the function behind :class:`UnicodeLower`
    (PostgreSQL needs none). Call once, before the engine's first connection."""
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _add_functions)


def _add_functions(dbapi_connection: Any, _: Any) -> None:
    dbapi_connection.create_function(SQLITE_UNICODE_LOWER, 1, _lower, deterministic=True)


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value  # NULL stays NULL


def contains_text(column: ColumnElement[str], text: str) -> ColumnElement[bool]:
    """``column`` holds ``text`` somewhere, ignoring case; ``%``, ``_`` and ``\\`` in ``text``
    match themselves. Both sides are lowered by the same SQL function, so they agree."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return UnicodeLower(column).like(UnicodeLower(f"%{escaped}%"), escape=LIKE_ESCAPE)


@dataclass(frozen=True)
class BookFilter:
    author: str | None = None
    title_words: str | None = None


class DuplicateIsbn(Exception):
    pass


class StillReferenced(Exception):
    """A reservation (held or released) still points at the book."""


def now() -> datetime:
    return datetime.now(UTC)


# Built once: the hottest statement (every read, reservation and write re-reads a book) skips
# rebuilding the select and its cache key on each call; SQLAlchemy caches its compiled form.
_BOOK_BY_ID = select(books).where(books.c.id == bindparam("book_id"))


def fetch_book(session: Session, *, book_id: int) -> dict[str, Any] | None:
    row = session.execute(_BOOK_BY_ID, {"book_id": book_id}).mappings().first()
    return dict(row) if row else None


def fetch_page(
    session: Session, *, where: BookFilter, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    conditions = []
    if where.author:
        conditions.append(contains_text(books.c.author, where.author))
    if where.title_words:
        conditions += [contains_text(books.c.title, word) for word in where.title_words.split()]
    total = session.execute(select(func.count()).select_from(books).where(*conditions)).scalar_one()
    rows = session.execute(
        select(books).where(*conditions).order_by(books.c.id).limit(limit).offset(offset)
    ).mappings()
    return [dict(row) for row in rows], total


def insert_book(session: Session, *, values: dict[str, Any]) -> dict[str, Any]:
    stamp = now()
    try:
        with session.begin_nested():
            book_id = session.execute(
                insert(books)
                .values(**values, created_at=stamp, updated_at=stamp)
                .returning(books.c.id)
            ).scalar_one()
    except IntegrityError as exc:
        raise DuplicateIsbn from exc
    book = fetch_book(session, book_id=book_id)
    assert book is not None
    return book


def update_book(session: Session, *, book_id: int, values: dict[str, Any]) -> dict[str, Any] | None:
    try:
        with session.begin_nested():
            changed = _rows_changed(
                session,
                update(books).where(books.c.id == book_id).values(**values, updated_at=now()),
            )
    except IntegrityError as exc:
        raise DuplicateIsbn from exc
    return fetch_book(session, book_id=book_id) if changed else None


def lock_book(session: Session, *, book_id: int) -> bool:
    """Locks the book's row until the transaction ends (PostgreSQL); False when it is gone."""
    found = session.execute(
        select(books.c.id).where(books.c.id == book_id).with_for_update()
    ).first()
    return found is not None


def delete_book(session: Session, *, book_id: int) -> bool:
    """Deletes the book; :class:`StillReferenced` while a reservation row points at it."""
    try:
        with session.begin_nested():
            return bool(_rows_changed(session, delete(books).where(books.c.id == book_id)))
    except IntegrityError as exc:
        raise StillReferenced from exc


def has_reservations(session: Session, *, book_id: int) -> bool:
    """True while some order holds copies of the book (released ones do not count)."""
    found = session.execute(
        select(reservations.c.order_id)
        .where(reservations.c.book_id == book_id, reservations.c.released_at.is_(None))
        .limit(1)
    ).first()
    return found is not None


def delete_released(session: Session, *, book_id: int) -> None:
    """Forgets the book's released reservations: with the book gone, nothing can be reserved."""
    session.execute(
        delete(reservations).where(
            reservations.c.book_id == book_id, reservations.c.released_at.is_not(None)
        )
    )


def fetch_reservation(session: Session, *, book_id: int, order_id: str) -> dict[str, Any] | None:
    row = (
        session.execute(
            select(reservations).where(
                reservations.c.book_id == book_id, reservations.c.order_id == order_id
            )
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


def insert_reservation(
    session: Session, *, book_id: int, order_id: str, quantity: int, unit_price: Decimal
) -> dict[str, Any] | None:
    """The new reservation, or None when this order id already holds one for this book.

    The primary key settles races: a concurrent insert of the same (book, order) waits for
    the first transaction and then conflicts, so an order is never reserved twice.
    """
    values = {
        "book_id": book_id,
        "order_id": order_id,
        "quantity": quantity,
        "unit_price": unit_price,
        "created_at": now(),
    }
    try:
        with session.begin_nested():
            session.execute(insert(reservations).values(**values))
    except IntegrityError:
        return None
    return values


def take_stock(session: Session, *, book_id: int, quantity: int) -> int | None:
    """Atomically takes ``quantity`` copies; the stock left, or None when there are too few.

    One conditional UPDATE: the row lock serialises concurrent takers, and the condition is
    re-checked on the locked row, so stock never goes below zero.
    """
    return session.execute(
        update(books)
        .where(books.c.id == book_id, books.c.stock >= quantity)
        .values(stock=books.c.stock - quantity, updated_at=now())
        .returning(books.c.stock)
    ).scalar_one_or_none()


def mark_released(session: Session, *, book_id: int, order_id: str) -> int | None:
    """Marks a held reservation released and returns its quantity; None when none is held."""
    return session.execute(
        update(reservations)
        .where(
            reservations.c.book_id == book_id,
            reservations.c.order_id == order_id,
            reservations.c.released_at.is_(None),
        )
        .values(released_at=now())
        .returning(reservations.c.quantity)
    ).scalar_one_or_none()


def insert_tombstone(session: Session, *, book_id: int, order_id: str) -> bool:
    """Records a release for an order that holds nothing of the book, so that its reservation
    cannot be taken later. False when a row for the pair exists already: a reservation (or
    tombstone) committed concurrently, which the primary key made this insert wait for."""
    stamp = now()
    try:
        with session.begin_nested():
            session.execute(
                insert(reservations).values(
                    book_id=book_id,
                    order_id=order_id,
                    quantity=0,
                    created_at=stamp,
                    released_at=stamp,
                )
            )
    except IntegrityError:
        return False
    return True


def give_back_stock(session: Session, *, book_id: int, quantity: int) -> None:
    session.execute(
        update(books)
        .where(books.c.id == book_id)
        .values(stock=books.c.stock + quantity, updated_at=now())
    )


def count_books(session: Session) -> int:
    return session.execute(select(func.count()).select_from(books)).scalar_one()


def isbns(session: Session) -> set[str]:
    return set(session.execute(select(books.c.isbn)).scalars())


def _rows_changed(session: Session, statement: Executable) -> int:
    """How many rows an UPDATE or DELETE changed (for those, execute returns a CursorResult)."""
    return cast("CursorResult[Any]", session.execute(statement)).rowcount

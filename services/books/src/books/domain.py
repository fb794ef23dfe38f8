"""The catalog's rules: what may be created, changed, reserved and released."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from books import persistence
from books.persistence import BookFilter
from chassis import ConflictError, NotFoundError

MAX_PAGE_SIZE = 100


def list_books(
    session: Session, *, where: BookFilter, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    return persistence.fetch_page(
        session, where=where, limit=min(limit, MAX_PAGE_SIZE), offset=offset
    )


def get_book(session: Session, *, book_id: int) -> dict[str, Any]:
    book = persistence.fetch_book(session, book_id=book_id)
    if book is None:
        raise NotFoundError(f"book_id: no book with id {book_id}", field="book_id")
    return book


def create_book(session: Session, *, fields: dict[str, Any]) -> dict[str, Any]:
    values = {**fields, "price": Decimal(fields["price"]), "stock": fields.get("stock", 0)}
    try:
        return persistence.insert_book(session, values=values)
    except persistence.DuplicateIsbn:
        raise _duplicate_isbn(fields["isbn"]) from None


def update_book(session: Session, *, book_id: int, changes: dict[str, Any]) -> dict[str, Any]:
    values = dict(changes)
    if "price" in values:
        values["price"] = Decimal(values["price"])
    try:
        book = persistence.update_book(session, book_id=book_id, values=values)
    except persistence.DuplicateIsbn:
        raise _duplicate_isbn(changes["isbn"]) from None
    if book is None:
        raise NotFoundError(f"book_id: no book with id {book_id}", field="book_id")
    return book


def delete_book(session: Session, *, book_id: int) -> None:
    # Locked first: a reservation or release (tombstone) of this book waits until the delete
    # is done, rather than slipping in between the check and the delete.
    if not persistence.lock_book(session, book_id=book_id):
        raise NotFoundError(f"book_id: no book with id {book_id}", field="book_id")
    if persistence.has_reservations(session, book_id=book_id):
        raise _holds_reservations(book_id)
    persistence.delete_released(session, book_id=book_id)
    try:
        persistence.delete_book(session, book_id=book_id)
    except persistence.StillReferenced:  # SQLite ignores the lock: a reservation came first
        raise _holds_reservations(book_id) from None


def reserve(
    session: Session, *, book_id: int, order_id: str, quantity: int
) -> tuple[dict[str, Any], bool]:
    """Reserves copies for an order: ``(reservation, created_now)``; never twice per order."""
    book = get_book(session, book_id=book_id)
    reservation = persistence.insert_reservation(
        session, book_id=book_id, order_id=order_id, quantity=quantity, unit_price=book["price"]
    )
    if reservation is None:
        return _existing(session, book_id=book_id, order_id=order_id, quantity=quantity), False
    if persistence.take_stock(session, book_id=book_id, quantity=quantity) is None:
        # Raising rolls back the whole request transaction, the reservation row included.
        raise ConflictError(
            f"quantity: only {_stock(session, book_id)} copies of book {book_id} are left, "
            f"{quantity} requested",
            field="quantity",
            title="Not enough stock",
        )
    return reservation, True


def release(session: Session, *, book_id: int, order_id: str) -> bool:
    """Releases an order's reservation and restores its stock; False when none was held.

    A release always wins: when nothing is held yet, a tombstone is left so that a reservation
    for this order arriving later (a caller's request still queued when it gave up and
    compensated) is refused rather than taking copies nobody will give back.
    """
    # A reservation committed while this runs shows up on the next pass; a third is not needed.
    for _ in range(3):
        quantity = persistence.mark_released(session, book_id=book_id, order_id=order_id)
        if quantity is not None:
            persistence.give_back_stock(session, book_id=book_id, quantity=quantity)
            return True
        existing = persistence.fetch_reservation(session, book_id=book_id, order_id=order_id)
        if existing is not None:
            if existing["released_at"] is not None:
                return False  # released before: nothing more to do
            continue  # committed just now: release it on the next pass
        if persistence.fetch_book(session, book_id=book_id) is None:
            return False  # no book, so nothing can be reserved later either
        if persistence.insert_tombstone(session, book_id=book_id, order_id=order_id):
            return False
    raise RuntimeError(f"release of order {order_id} on book {book_id} did not settle")


def _existing(session: Session, *, book_id: int, order_id: str, quantity: int) -> dict[str, Any]:
    existing = persistence.fetch_reservation(session, book_id=book_id, order_id=order_id)
    if existing is None:  # the insert failed on the book, deleted meanwhile, not on the order
        raise NotFoundError(f"book_id: no book with id {book_id}", field="book_id")
    if existing["released_at"] is not None:
        raise ConflictError(
            f"order_id: order {order_id} released its reservation of book {book_id}; "
            "a released reservation is never taken again (use a new order id)",
            field="order_id",
            title="Reservation released",
        )
    if existing["quantity"] != quantity:
        raise ConflictError(
            f"quantity: order {order_id} already reserved {existing['quantity']} copies of "
            f"book {book_id}, not {quantity}",
            field="quantity",
        )
    return existing


def _stock(session: Session, book_id: int) -> int:
    return int(get_book(session, book_id=book_id)["stock"])


def _holds_reservations(book_id: int) -> ConflictError:
    return ConflictError(
        f"book_id: book {book_id} holds stock reservations; release them first", field="book_id"
    )


def _duplicate_isbn(isbn: str) -> ConflictError:
    return ConflictError(f"isbn: a book with isbn {isbn} already exists", field="isbn")

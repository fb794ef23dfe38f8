"""HTTP handlers: parse -> call the domain -> shape the response. Bound by operationId."""

from __future__ import annotations

from typing import Any

from books import domain
from books.persistence import BookFilter
from chassis import current_session
from chassis.responses import offset_page, rfc3339


def list_books(
    limit: int = 20, offset: int = 0, author: str | None = None, q: str | None = None
) -> dict[str, Any]:
    items, total = domain.list_books(
        current_session(),
        where=BookFilter(author=author, title_words=q),
        limit=limit,
        offset=offset,
    )
    return offset_page([book_json(b) for b in items], total=total, limit=limit, offset=offset)


def create_book(body: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, str]]:
    book = domain.create_book(current_session(), fields=body)
    return book_json(book), 201, {"Location": f"/books/{book['id']}"}


def get_book(book_id: int) -> dict[str, Any]:
    return book_json(domain.get_book(current_session(), book_id=book_id))


def update_book(book_id: int, body: dict[str, Any]) -> dict[str, Any]:
    return book_json(domain.update_book(current_session(), book_id=book_id, changes=body))


def delete_book(book_id: int) -> tuple[None, int]:
    domain.delete_book(current_session(), book_id=book_id)
    return None, 204


def reserve_stock(book_id: int, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    reservation, created = domain.reserve(
        current_session(), book_id=book_id, order_id=body["order_id"], quantity=body["quantity"]
    )
    return reservation_json(reservation), 201 if created else 200


def release_stock(book_id: int, order_id: str) -> tuple[None, int]:
    domain.release(current_session(), book_id=book_id, order_id=order_id)
    return None, 204


def book_json(book: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": book["id"],
        "isbn": book["isbn"],
        "title": book["title"],
        "author": book["author"],
        "price": f"{book['price']:.2f}",
        "stock": book["stock"],
        "created_at": rfc3339(book["created_at"]),
        "updated_at": rfc3339(book["updated_at"]),
    }


def reservation_json(reservation: dict[str, Any]) -> dict[str, Any]:
    return {
        "book_id": reservation["book_id"],
        "order_id": reservation["order_id"],
        "quantity": reservation["quantity"],
        "unit_price": f"{reservation['unit_price']:.2f}",
        "created_at": rfc3339(reservation["created_at"]),
    }

"""What shop asks of books: a price, a reservation, a release. Answers become domain results."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from chassis import ServiceClient, UnprocessableError


@dataclass(frozen=True)
class Refused:
    """books answered and said no (not enough stock, no such book): final, not transient."""

    book_id: int
    reason: str


def price_of(books: ServiceClient, *, book_id: int, position: int) -> Decimal:
    """The book's current price; an unknown book is the client's mistake (422)."""
    response = books.get("/books/{book_id}", book_id=book_id)
    if response.status_code == 404:
        raise UnprocessableError(
            f"items[{position}].book_id: there is no book {book_id}",
            field=f"items[{position}].book_id",
        )
    response.raise_for_status()
    return Decimal(response.json()["price"])


def reservation_id(order_id: str, attempt: int) -> str:
    """The order id books knows an attempt's reservations by.

    books refuses a reservation once its id was released (so a late one cannot leak stock),
    hence every new run of an order's saga reserves under a new id. The first attempt uses
    the bare order id, as orders placed before attempts were counted did.
    """
    return order_id if attempt == 1 else f"{order_id}_{attempt}"


def reserve(
    books: ServiceClient, *, reservation: str, book_id: int, quantity: int
) -> Refused | None:
    """Reserves stock (idempotent per reservation id, so the client may retry it); None on
    success. Dependency trouble (unreachable, 5xx, timeout, open breaker) is raised."""
    response = books.post(
        "/books/{book_id}/reservations",
        book_id=book_id,
        json={"order_id": reservation, "quantity": quantity},
        headers={"Idempotency-Key": f"{reservation}:{book_id}"},
    )
    if response.status_code in (200, 201):
        return None
    if response.status_code in (404, 409, 422):
        detail = response.json().get("detail", f"books refused with {response.status_code}")
        return Refused(book_id, detail)
    response.raise_for_status()
    return Refused(book_id, f"books answered {response.status_code}")


def release(books: ServiceClient, *, reservation: str, book_id: int) -> None:
    """Releases a reservation of one book (idempotent: nothing reserved is fine, and books
    then refuses that reservation if it arrives later)."""
    books.delete("/books/{book_id}/reservations/{order_id}", book_id=book_id, order_id=reservation)

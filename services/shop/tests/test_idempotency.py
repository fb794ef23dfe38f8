"""An Idempotency-Key places one order, however often and however concurrently it is sent."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from starlette.testclient import TestClient

if TYPE_CHECKING:
    from conftest import BooksProcess, Catalog, ShopProcessFactory

pytestmark = pytest.mark.postgres

Problem = Callable[..., dict[str, Any]]
SENDERS = 10


def test_the_same_key_and_body_replay_the_same_order(shop: TestClient, catalog: Catalog) -> None:
    first_book, second_book = catalog.add_book(stock=5), catalog.add_book(stock=5)
    body = {
        "items": [
            {"book_id": first_book, "quantity": 2},
            {"book_id": second_book, "quantity": 1},
        ]
    }
    headers = {"Idempotency-Key": "replay-1"}

    first = shop.post("/orders", json=body, headers=headers)
    replay = shop.post("/orders", json=body, headers=headers)
    # The same items in another order are the same order.
    reordered = shop.post("/orders", json={"items": body["items"][::-1]}, headers=headers)

    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    for again in (replay, reordered):
        assert again.status_code == 200, again.text
        assert again.headers["idempotent-replayed"] == "true"
        assert again.headers["location"] == first.headers["location"]
        assert again.json() == first.json()
    assert (catalog.stock(first_book), catalog.stock(second_book)) == (3, 4)
    assert shop.get("/orders").json()["total"] == 1


def test_the_same_key_with_another_body_is_refused(
    shop: TestClient, catalog: Catalog, problem: Problem
) -> None:
    book = catalog.add_book(stock=5)
    headers = {"Idempotency-Key": "replay-2"}
    one, two = ({"items": [{"book_id": book, "quantity": n}]} for n in (1, 2))
    first = shop.post("/orders", json=one, headers=headers)
    assert first.status_code == 201

    other = shop.post("/orders", json=two, headers=headers)

    body = problem(other, 422, "Idempotency-Key")
    assert body["order_id"] == first.json()["id"]
    assert catalog.stock(book) == 4
    assert shop.get("/orders").json()["total"] == 1


def test_concurrent_posts_with_one_key_place_exactly_one_order(
    shop_process: ShopProcessFactory, catalog: Catalog
) -> None:
    book = catalog.add_book(stock=10)
    shop = shop_process()  # a real server: requests really run at the same time
    body = {"items": [{"book_id": book, "quantity": 2}]}
    start = threading.Barrier(SENDERS)

    def send(_: int) -> httpx.Response:
        with httpx.Client(base_url=shop.url, timeout=20) as client:
            client.get("/health/live")  # connect before the barrier
            start.wait(timeout=20)
            return client.post("/orders", json=body, headers={"Idempotency-Key": "race-1"})

    with ThreadPoolExecutor(SENDERS) as pool:
        responses = list(pool.map(send, range(SENDERS)))

    assert Counter(r.status_code for r in responses) == {201: 1, 200: SENDERS - 1}, [
        r.text for r in responses
    ]
    orders = {r.json()["id"] for r in responses}
    assert len(orders) == 1
    assert {r.json()["status"] for r in responses} == {"confirmed"}
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == SENDERS - 1
    listed = httpx.get(f"{shop.url}/orders", timeout=5).json()
    assert [o["id"] for o in listed["items"]] == list(orders)
    # One reservation: stock taken once, and it is the order's existing reservation (200).
    assert catalog.stock(book) == 8
    held = catalog.reserve(book, order_id=orders.pop(), quantity=2)
    assert held.status_code == 200, held.text
    assert catalog.stock(book) == 8


def test_an_out_of_stock_rejection_replays_as_the_same_409(
    shop: TestClient, catalog: Catalog, problem: Problem
) -> None:
    book = catalog.add_book(stock=1)
    body = {"items": [{"book_id": book, "quantity": 5}]}
    headers = {"Idempotency-Key": "replay-out-of-stock"}

    first = problem(shop.post("/orders", json=body, headers=headers), 409, "quantity")
    again = shop.post("/orders", json=body, headers=headers)

    assert again.status_code == 409
    assert again.json()["order_id"] == first["order_id"]
    assert shop.get("/orders").json()["total"] == 1
    assert catalog.stock(book) == 1


def test_a_retry_after_books_was_unavailable_places_the_same_order(
    shop: TestClient, catalog: Catalog, books: BooksProcess
) -> None:
    book = catalog.add_book(stock=3)
    body = {"items": [{"book_id": book, "quantity": 2}]}
    headers = {"Idempotency-Key": "replay-after-outage"}
    # Prices can be read, reservations fail: the order is compensated and rejected.
    books.inject(error_rate=1.0, status=503, routes=["/books/{book_id}/reservations"])
    try:
        failed = shop.post("/orders", json=body, headers=headers)
    finally:
        books.heal()
    assert failed.status_code == 503, failed.text
    order_id = failed.json()["order_id"]
    assert shop.get(f"/orders/{order_id}").json()["status"] == "rejected"
    assert catalog.stock(book) == 3
    # shop released what it had tried to reserve, so a reservation of that attempt still on
    # its way to books (a request queued there when shop gave up) can never take stock
    late = catalog.reserve(book, order_id=order_id, quantity=2)
    assert late.status_code == 409, late.text
    assert catalog.stock(book) == 3

    retried = shop.post("/orders", json=body, headers=headers)

    assert retried.status_code == 201, retried.text
    assert retried.json()["id"] == order_id
    assert retried.json()["status"] == "confirmed"
    assert catalog.stock(book) == 1
    assert shop.get("/orders").json()["total"] == 1

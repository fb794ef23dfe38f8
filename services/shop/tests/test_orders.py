"""Placing, reading, listing and cancelling orders against a real books and real PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
from starlette.testclient import TestClient

if TYPE_CHECKING:
    from conftest import BooksProcess, Catalog, MakeShop

pytestmark = pytest.mark.postgres

Problem = Callable[..., dict[str, Any]]
NO_SUCH_BOOK = 2_147_483_647


def order(*items: tuple[int, int]) -> dict[str, Any]:
    return {"items": [{"book_id": book, "quantity": quantity} for book, quantity in items]}


def test_an_order_is_priced_by_books_and_takes_the_stock(
    shop: TestClient, catalog: Catalog
) -> None:
    # 0.10 x 3 is 0.30000000000000004 in floats: only exact decimals give "0.30".
    dime = catalog.add_book(price="0.10", stock=10)
    novel = catalog.add_book(price="19.99", stock=5)

    response = shop.post("/orders", json=order((dime, 3), (novel, 2)))

    assert response.status_code == 201, response.text
    placed = response.json()
    assert placed["status"] == "confirmed"
    assert placed["reason"] is None
    assert response.headers["location"] == f"/orders/{placed['id']}"
    assert placed["items"] == [
        {"book_id": dime, "quantity": 3, "unit_price": "0.10"},
        {"book_id": novel, "quantity": 2, "unit_price": "19.99"},
    ]
    expected = catalog.price(dime) * 3 + catalog.price(novel) * 2
    assert placed["total"] == "40.28" == f"{expected:.2f}"
    assert Decimal(placed["total"]) == expected
    assert (catalog.stock(dime), catalog.stock(novel)) == (7, 3)

    read = shop.get(f"/orders/{placed['id']}")
    assert read.status_code == 200
    assert read.json() == placed
    listed = shop.get("/orders").json()
    assert listed["total"] == 1
    assert [o["id"] for o in listed["items"]] == [placed["id"]]
    assert shop.get("/orders", params={"status": "confirmed"}).json()["total"] == 1
    assert shop.get("/orders", params={"status": "rejected"}).json()["total"] == 0


def test_the_client_cannot_set_prices(shop: TestClient, catalog: Catalog, problem: Problem) -> None:
    book = catalog.add_book(price="25.00", stock=3)
    body = {"items": [{"book_id": book, "quantity": 1, "unit_price": "0.01"}]}

    problem(shop.post("/orders", json=body), 400, "unit_price")

    assert catalog.stock(book) == 3
    assert shop.get("/orders").json()["total"] == 0


def test_not_enough_stock_rejects_the_order_and_releases_what_was_reserved(
    shop: TestClient, catalog: Catalog, problem: Problem
) -> None:
    plenty = catalog.add_book(stock=4)
    scarce = catalog.add_book(stock=2)

    response = shop.post("/orders", json=order((plenty, 1), (scarce, 3)))

    body = problem(response, 409)
    order_id = body["order_id"]
    assert "stock" in body["detail"]
    recorded = shop.get(f"/orders/{order_id}").json()
    assert recorded["status"] == "rejected"
    assert recorded["reason"].startswith("out_of_stock")
    assert shop.get("/orders", params={"status": "rejected"}).json()["total"] == 1
    # Compensated: the first book's copy is back, and books holds the order's reservation of
    # every item as released, so a late reservation under its id is refused, not taken.
    assert (catalog.stock(plenty), catalog.stock(scarce)) == (4, 2)
    for book in (plenty, scarce):
        late = catalog.reserve(book, order_id=order_id, quantity=1)
        assert late.status_code == 409, late.text
        assert "released" in late.json()["detail"]
    assert (catalog.stock(plenty), catalog.stock(scarce)) == (4, 2)


def test_cancelling_releases_the_stock_once_and_only_confirmed_orders(
    shop: TestClient, catalog: Catalog, problem: Problem
) -> None:
    book = catalog.add_book(stock=5)
    placed = shop.post("/orders", json=order((book, 2))).json()
    assert catalog.stock(book) == 3

    cancelled = shop.post(f"/orders/{placed['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert catalog.stock(book) == 5
    again = shop.post(f"/orders/{placed['id']}/cancel")
    assert again.status_code == 200
    assert again.json()["status"] == "cancelled"
    assert catalog.stock(book) == 5  # released once, not twice
    assert shop.get(f"/orders/{placed['id']}").json()["status"] == "cancelled"

    rejected = problem(shop.post("/orders", json=order((book, 6))), 409)
    problem(shop.post(f"/orders/{rejected['order_id']}/cancel"), 409, "status")
    problem(shop.post("/orders/no-such-order/cancel"), 404, "order_id")
    problem(shop.get("/orders/no-such-order"), 404, "order_id")
    assert catalog.stock(book) == 5


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        pytest.param({"items": []}, 400, "items", id="no-items"),
        pytest.param(order((1, 0)), 400, "items.0.quantity", id="quantity-0"),
        pytest.param(
            {"items": [{"book_id": "1", "quantity": 1}]}, 400, "items.0.book_id", id="id-string"
        ),
        pytest.param({**order((1, 1)), "coupon": "FREE"}, 400, "coupon", id="unknown-field"),
        pytest.param(order((1, 1), (1, 2)), 422, "items[1].book_id", id="same-book-twice"),
        pytest.param(order((NO_SUCH_BOOK, 1)), 422, "items[0].book_id", id="unknown-book"),
    ],
)
def test_bad_orders_are_refused_naming_the_field(
    shop: TestClient,
    catalog: Catalog,
    problem: Problem,
    body: dict[str, Any],
    status: int,
    field: str,
) -> None:
    stock = catalog.stock(1)

    problem(shop.post("/orders", json=body), status, field)

    assert shop.get("/orders").json()["total"] == 0
    assert catalog.stock(1) == stock


def test_a_cancel_books_interrupts_stops_claiming_stock_and_is_finished_later(
    make_shop: MakeShop, catalog: Catalog, books: BooksProcess
) -> None:
    shop = make_shop(ORDERS__PENDING_GRACE_SECONDS="0.5", ORDERS__RECOVERY_INTERVAL_SECONDS="0.3")
    first, second = catalog.add_book(stock=5), catalog.add_book(stock=5)
    placed = shop.post("/orders", json=order((first, 1), (second, 2))).json()
    books.inject(error_rate=1.0, status=503, routes=["/books/{book_id}/reservations/{order_id}"])
    try:
        interrupted = shop.post(f"/orders/{placed['id']}/cancel")
        assert interrupted.status_code == 503, interrupted.text
        # No longer confirmed: the order stops claiming copies books may put back on sale.
        assert shop.get(f"/orders/{placed['id']}").json()["status"] == "cancelling"
    finally:
        books.heal()
    deadline = time.monotonic() + 15
    while shop.get(f"/orders/{placed['id']}").json()["status"] != "cancelled":
        assert time.monotonic() < deadline, "recovery did not finish the cancellation"
        time.sleep(0.2)
    assert (catalog.stock(first), catalog.stock(second)) == (5, 5)
    again = shop.post(f"/orders/{placed['id']}/cancel")
    assert again.status_code == 200
    assert again.json()["status"] == "cancelled"


def test_shop_reserves_with_its_own_credential_and_a_refused_one_takes_nothing(
    make_shop: MakeShop, catalog: Catalog, books: BooksProcess
) -> None:
    book = catalog.add_book(stock=3)
    # The default shop holds a stock:reserve token of its own (conftest.shop_environment).
    assert make_shop().post("/orders", json=order((book, 1))).json()["status"] == "confirmed"

    misconfigured = make_shop(DEPENDENCIES__BOOKS__TOKEN=books.token("catalog:write"))
    refused = misconfigured.post("/orders", json=order((book, 1)))

    # Not the caller's fault, and not settled: recovery finishes it once the credential works.
    assert refused.status_code == 503, refused.text
    pending = misconfigured.get(f"/orders/{refused.json()['order_id']}").json()
    assert pending["status"] == "pending"
    assert "refused this service's credential (403)" in pending["reason"]
    assert "dependencies.books.token" in pending["reason"]
    assert catalog.stock(book) == 2

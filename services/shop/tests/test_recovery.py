"""A shop process killed mid-saga leaves a PENDING order; the next process settles it."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import httpx
import pytest
from starlette.testclient import TestClient

from chassis.testing import MetricsSnapshot, ServiceProcess
from shop.domain import CRASH_EXIT_CODE

if TYPE_CHECKING:
    from conftest import (
        BooksProcess,
        Catalog,
        MakeShop,
        ShopProcessFactory,
        ShopTables,
    )

pytestmark = pytest.mark.postgres

FAST_RECOVERY = {
    "ORDERS__PENDING_GRACE_SECONDS": "1",
    "ORDERS__RECOVERY_INTERVAL_SECONDS": "0.5",
}
SETTLE_SECONDS = 5.0


def crash_while_ordering(
    shop_process: ShopProcessFactory, shop_tables: ShopTables, book: int, quantity: int
) -> str:
    """Places an order on a shop that dies right after reserving; returns the order id."""
    crashing = shop_process(ORDERS__CRASH_AFTER_RESERVING="true", **FAST_RECOVERY)
    body = {"items": [{"book_id": book, "quantity": quantity}]}
    with pytest.raises(httpx.TransportError):
        httpx.post(f"{crashing.url}/orders", json=body, timeout=10)
    assert crashing.wait_exit() == CRASH_EXIT_CODE == 137
    [(order_id, status)] = shop_tables.orders()
    assert status == "pending"
    return order_id


def wait_for_status(shop: ServiceProcess, order_id: str, seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while True:
        status: str = httpx.get(f"{shop.url}/orders/{order_id}", timeout=5).json()["status"]
        if status != "pending" or time.monotonic() > deadline:
            return status
        time.sleep(0.1)


def test_a_restarted_shop_confirms_the_order_a_crash_left_pending(
    shop_process: ShopProcessFactory, shop_tables: ShopTables, catalog: Catalog
) -> None:
    book = catalog.add_book(stock=10)
    order_id = crash_while_ordering(shop_process, shop_tables, book, quantity=3)
    assert catalog.stock(book) == 7  # reserved before the crash

    restarted = shop_process(**FAST_RECOVERY)  # without the crash flag

    assert wait_for_status(restarted, order_id, SETTLE_SECONDS) == "confirmed"
    assert catalog.stock(book) == 7  # reserved exactly once
    held = catalog.reserve(book, order_id=order_id, quantity=3)
    assert held.status_code == 200, held.text  # the reservation the crashed process made
    assert catalog.stock(book) == 7


def test_an_order_left_pending_waits_for_books_then_is_confirmed(
    shop_process: ShopProcessFactory,
    make_shop: MakeShop,
    shop_tables: ShopTables,
    catalog: Catalog,
    books: BooksProcess,
) -> None:
    book = catalog.add_book(stock=10)
    order_id = crash_while_ordering(shop_process, shop_tables, book, quantity=2)
    books.kill()

    # The restart is in-process this time (a fresh shop on the same database, as fast to
    # check as a process and one process start cheaper).
    restarted = make_shop(DEPENDENCIES__BOOKS__BREAKER__OPEN_SECONDS="1", **FAST_RECOVERY)

    deadline = time.monotonic() + SETTLE_SECONDS
    while books_calls(restarted) == 0:
        assert time.monotonic() < deadline, "recovery did not try to settle the order"
        time.sleep(0.05)
    tried = books_calls(restarted)
    time.sleep(1.5)  # the grace period and more: the next rounds claim the order again
    assert books_calls(restarted) > tried, "recovery did not try again"
    assert shop_tables.status(order_id) == "pending"
    assert restarted.get(f"/orders/{order_id}").json()["status"] == "pending"
    books.start()
    deadline = time.monotonic() + SETTLE_SECONDS
    while shop_tables.status(order_id) == "pending" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert restarted.get(f"/orders/{order_id}").json()["status"] == "confirmed"
    assert catalog.stock(book) == 8


def books_calls(shop: TestClient) -> float:
    """Calls the shop made to books, refused or answered."""
    snapshot = MetricsSnapshot(shop.get("/metrics").text)
    calls = snapshot.value("http_client_request_duration_seconds_count", peer_service="books")
    return 0.0 if calls != calls else calls  # NaN: none yet

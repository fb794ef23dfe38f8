"""Two sagas of one order (the live one and recovery) never both decide. Confirming and
starting to compensate both need a PENDING order without a reason, so the first saga to do
either wins and the other follows it: it never releases a confirmed order's stock, and never
confirms an order whose stock is being released."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest

from chassis import ServiceClient
from chassis.db import Database
from shop import domain, persistence
from shop.app import ShopComponents
from shop.recovery import recover_pending

if TYPE_CHECKING:
    from conftest import BooksProcess, Catalog, MakeShop

pytestmark = pytest.mark.postgres

RESERVATIONS = "/books/{book_id}/reservations"
NO_RECOVERY_ROUNDS = {"ORDERS__RECOVERY_INTERVAL_SECONDS": "3600"}


@pytest.fixture
def parts(make_shop: MakeShop) -> tuple[Database, ServiceClient]:
    shop = make_shop(**NO_RECOVERY_ROUNDS)
    service = shop.app
    return service.database, service.component(ShopComponents).books  # type: ignore[attr-defined]


def pending_order(database: Database, *items: tuple[int, int]) -> dict[str, Any]:
    order_id = str(uuid.uuid4())
    with database.session_scope() as session:
        persistence.insert_pending(
            session,
            order_id=order_id,
            items=[{"book_id": b, "quantity": q, "unit_price": Decimal("9.99")} for b, q in items],
            total=Decimal("0"),
            idempotency_key=None,
            fingerprint="test",
        )
    return fetch(database, order_id)


def fetch(database: Database, order_id: str) -> dict[str, Any]:
    with database.session_scope() as session:
        order = persistence.fetch_order(session, order_id=order_id)
    assert order is not None
    return order


def give_up(database: Database, order_id: str, reason: str) -> None:
    """What a saga does when it stops trying run 1: record why, so nobody confirms it."""
    with database.session_scope() as session:
        assert persistence.start_compensating(session, order_id=order_id, attempt=1, reason=reason)


def settle(database: Database, books: ServiceClient, order: dict[str, Any]) -> domain.Settlement:
    with database.session_scope() as session:
        return domain.settle(session, books, order=order, budget_seconds=30)


def test_a_saga_whose_order_another_is_compensating_releases_instead_of_confirming(
    parts: tuple[Database, ServiceClient], catalog: Catalog
) -> None:
    database, books = parts
    book = catalog.add_book(stock=5)
    order = pending_order(database, (book, 2))
    # the other saga gave up first
    give_up(database, order["id"], "books_unavailable: it timed out")

    outcome = settle(database, books, order)  # this one reserves everything, too late

    assert (outcome.status, outcome.reason) == ("rejected", "books_unavailable: it timed out")
    assert fetch(database, order["id"])["status"] == "rejected"
    assert catalog.stock(book) == 5
    assert catalog.reserve(book, order_id=order["id"], quantity=2).status_code == 409


def test_a_saga_whose_order_another_confirmed_keeps_its_stock_reserved(
    parts: tuple[Database, ServiceClient], catalog: Catalog, books: BooksProcess
) -> None:
    database, client = parts
    book = catalog.add_book(stock=5)
    order = pending_order(database, (book, 2))
    assert catalog.reserve(book, order_id=order["id"], quantity=2).status_code == 201
    with database.session_scope() as session:  # the other saga reserved and confirmed
        assert persistence.confirm(session, order_id=order["id"], attempt=1)

    books.inject(error_rate=1.0, status=503, routes=[RESERVATIONS])
    try:
        outcome = settle(database, client, order)  # this one finds books unavailable
    finally:
        books.heal()

    assert outcome.status == "confirmed"
    assert fetch(database, order["id"])["status"] == "confirmed"
    assert catalog.stock(book) == 3  # not released under the confirmed order


def test_recovery_finishes_a_compensation_without_reserving_again(
    parts: tuple[Database, ServiceClient], catalog: Catalog
) -> None:
    database, books = parts
    reserved, untouched = catalog.add_book(stock=5), catalog.add_book(stock=5)
    order = pending_order(database, (reserved, 1), (untouched, 1))
    assert catalog.reserve(reserved, order_id=order["id"], quantity=1).status_code == 201
    give_up(database, order["id"], "out_of_stock: x")  # then the saga's process died releasing

    assert recover_pending(database, books, older_than=0.0) == 1

    settled = fetch(database, order["id"])
    assert (settled["status"], settled["reason"]) == ("rejected", "out_of_stock: x")
    assert (catalog.stock(reserved), catalog.stock(untouched)) == (5, 5)
    # both are released at books: a reservation still on its way is refused
    assert catalog.reserve(untouched, order_id=order["id"], quantity=1).status_code == 409


# -- a run of the saga never touches a later run of the same order ----------------------------


class AfterReserving:
    """The books client, calling ``meanwhile`` after its n-th reservation: what another saga
    of the same order does while this one is between two books calls."""

    def __init__(self, books: ServiceClient, n: int, meanwhile: Callable[[], None]) -> None:
        self.books, self.n, self.meanwhile, self.sent = books, n, meanwhile, 0

    def post(self, *args: Any, **kwargs: Any) -> Any:
        answer = self.books.post(*args, **kwargs)
        self.sent += 1
        if self.sent == self.n:
            self.meanwhile()
        return answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self.books, name)


def reject_and_retry(database: Database, books: ServiceClient, order_id: str) -> None:
    """Run 1 gives up and compensates, then the client retries with the same key (run 2)."""
    give_up(database, order_id, "books_unavailable: slow")
    with database.session_scope() as session:
        assert domain.compensate(session, books, order_id, 1).status == "rejected"
    with database.session_scope() as session:
        assert persistence.retry(session, order_id=order_id)


def test_a_late_compensation_of_run_one_leaves_run_two_alone(
    parts: tuple[Database, ServiceClient], catalog: Catalog
) -> None:
    database, books = parts
    first, second = catalog.add_book(stock=5), catalog.add_book(stock=5)
    order = pending_order(database, (first, 1), (second, 1))
    give_up(database, order["id"], "books_unavailable: slow")

    def recovery_finishes_run_one_late() -> None:
        with database.session_scope() as session:
            domain.compensate(session, books, order["id"], 1)

    with database.session_scope() as session:
        assert domain.compensate(session, books, order["id"], 1).status == "rejected"
    with database.session_scope() as session:
        assert persistence.retry(session, order_id=order["id"])
    slow = AfterReserving(books, 1, recovery_finishes_run_one_late)
    outcome = settle(database, slow, fetch(database, order["id"]))  # type: ignore[arg-type]

    assert outcome.status == "confirmed"
    assert fetch(database, order["id"])["status"] == "confirmed"
    assert (catalog.stock(first), catalog.stock(second)) == (4, 4)


def test_a_stale_run_one_neither_confirms_nor_rejects_run_two(
    parts: tuple[Database, ServiceClient], catalog: Catalog
) -> None:
    database, books = parts
    first, second = catalog.add_book(stock=5), catalog.add_book(stock=5)
    order = pending_order(database, (first, 1), (second, 1))
    stale = fetch(database, order["id"])  # recovery's copy of run 1

    slow = AfterReserving(books, 1, lambda: reject_and_retry(database, books, order["id"]))
    with database.session_scope() as session:
        outcome = domain.settle(
            session,
            slow,
            order=stale,
            budget_seconds=30,
            wait_out_trouble=True,  # type: ignore[arg-type]
        )

    assert outcome.status == "rejected"  # run 1 was replaced
    now = fetch(database, order["id"])
    assert (now["status"], now["attempt"], now["reason"]) == ("pending", 2, None)
    assert (catalog.stock(first), catalog.stock(second)) == (5, 5)  # run 2 has reserved nothing


def test_run_ones_tombstone_is_not_recorded_as_run_twos_refusal(
    parts: tuple[Database, ServiceClient], catalog: Catalog
) -> None:
    database, books = parts
    book = catalog.add_book(stock=5)
    order = pending_order(database, (book, 1))
    stale = fetch(database, order["id"])
    reject_and_retry(database, books, order["id"])

    with database.session_scope() as session:  # books refuses run 1's reservation: released
        domain.settle(session, books, order=stale, budget_seconds=30, wait_out_trouble=True)

    now = fetch(database, order["id"])
    assert (now["status"], now["attempt"], now["reason"]) == ("pending", 2, None)
    assert catalog.stock(book) == 5


def test_recovery_out_of_time_compensates_rather_than_holding_stock_for_ever(
    parts: tuple[Database, ServiceClient], catalog: Catalog
) -> None:
    """Waiting out trouble is for books being down; a saga that runs out of its budget (books
    too slow for the order's size) would run out again on every round."""
    database, books = parts
    book = catalog.add_book(stock=5)
    order = pending_order(database, (book, 2))
    assert catalog.reserve(book, order_id=order["id"], quantity=2).status_code == 201

    with database.session_scope() as session:
        outcome = domain.settle(
            session, books, order=order, budget_seconds=-1, wait_out_trouble=True
        )

    assert outcome.status == "rejected"
    assert catalog.stock(book) == 5

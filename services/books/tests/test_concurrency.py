"""Reservations under concurrency on a real PostgreSQL: never oversold, never twice per order,
never held after a release.

Requests go through the whole ASGI app from many threads at once. The TestClient does not
serialise them: its portal runs every request on one event loop, and the chassis hands each
synchronous handler to its worker threads (pool_size + max_overflow of them), each with its own
session and transaction. ``in_flight`` proves the overlap: the tests fail if at most one
reservation is ever being handled at a time. A real ``books serve`` process would add nothing
to what is being tested (the database's row locking) but start-up time.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from books import domain
from books.persistence import books, reservations

pytestmark = pytest.mark.parametrize(
    "database_kind", [pytest.param("postgresql", marks=pytest.mark.postgres)]
)


class InFlight:
    """Wraps ``domain.reserve`` and records how many calls ever ran at the same time."""

    def __init__(self, reserve):
        self.reserve = reserve
        self.lock = threading.Lock()
        self.now = 0
        self.peak = 0

    def __call__(self, *args, **kwargs):
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        try:
            time.sleep(0.005)  # widen the window in which transactions overlap
            return self.reserve(*args, **kwargs)
        finally:
            with self.lock:
                self.now -= 1


@pytest.fixture
def in_flight(monkeypatch):
    wrapper = InFlight(domain.reserve)
    monkeypatch.setattr(domain, "reserve", wrapper)
    return wrapper


def all_at_once(count, call):
    """Runs ``call(i)`` for i in range(count) on as many threads, released together."""
    start = threading.Barrier(count)

    def run(i):
        start.wait(timeout=60)
        return call(i)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


def test_fifty_orders_for_ten_copies_reserve_exactly_ten(client, create_book, engine, in_flight):
    book = create_book(stock=10)
    url = f"/books/{book['id']}/reservations"
    observed_stock = []
    done = threading.Event()

    def watch_stock():
        while not done.is_set():
            observed_stock.append(client.get(f"/books/{book['id']}").json()["stock"])

    watcher = threading.Thread(target=watch_stock)
    watcher.start()
    try:
        responses = all_at_once(
            50, lambda i: client.post(url, json={"order_id": f"order-{i}", "quantity": 1})
        )
    finally:
        done.set()
        watcher.join()

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201] * 10 + [409] * 40
    assert all("quantity" in r.json()["detail"] for r in responses if r.status_code == 409)
    assert in_flight.peak > 1
    assert observed_stock
    assert min(observed_stock) >= 0
    with engine.connect() as connection:
        stock = connection.execute(select(books.c.stock)).scalar_one()
        rows = connection.execute(
            select(func.count(), func.sum(reservations.c.quantity)).select_from(reservations)
        ).one()
    assert stock == 0
    assert tuple(rows) == (10, 10)
    winners = {r.json()["order_id"] for r in responses if r.status_code == 201}
    with engine.connect() as connection:
        assert set(connection.execute(select(reservations.c.order_id)).scalars()) == winners


def test_ten_concurrent_requests_for_one_order_reserve_once(client, create_book, engine, in_flight):
    book = create_book(stock=10)
    url = f"/books/{book['id']}/reservations"

    responses = all_at_once(10, lambda _: client.post(url, json={"order_id": "o-1", "quantity": 3}))

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] * 9 + [201]
    assert len({response.text for response in responses}) == 1
    assert in_flight.peak > 1
    with engine.connect() as connection:
        assert connection.execute(select(books.c.stock)).scalar_one() == 7
        assert connection.execute(select(func.count()).select_from(reservations)).scalar_one() == 1


def test_a_release_racing_its_reservation_always_wins(client, create_book, engine):
    """Each order's reservation and release are sent at the same moment. Whichever lands first,
    no copy stays reserved: a release first leaves a tombstone that refuses the reservation."""
    book = create_book(stock=100)
    url = f"/books/{book['id']}/reservations"
    orders = 12

    def reserve_or_release(i):
        order_id = f"race-{i // 2}"
        if i % 2:
            return "release", client.delete(f"{url}/{order_id}")
        return "reserve", client.post(url, json={"order_id": order_id, "quantity": 2})

    answers = all_at_once(orders * 2, reserve_or_release)

    assert {r.status_code for kind, r in answers if kind == "release"} == {204}
    reserve_statuses = Counter(r.status_code for kind, r in answers if kind == "reserve")
    assert set(reserve_statuses) <= {201, 409}, reserve_statuses
    with engine.connect() as connection:
        assert connection.execute(select(books.c.stock)).scalar_one() == 100
        held = connection.execute(
            select(func.count())
            .select_from(reservations)
            .where(reservations.c.released_at.is_(None))
        ).scalar_one()
    assert held == 0


def test_deleting_a_book_while_a_release_of_it_lands_never_answers_500(client, create_book):
    """A release of a book nothing holds leaves a tombstone row pointing at the book: the delete
    must either go first (the release then finds no book) or answer 409, never fail."""
    books_made = [create_book(stock=1)["id"] for _ in range(10)]

    def delete_or_release(i):
        book = books_made[i // 2]
        if i % 2:
            return "release", client.delete(f"/books/{book}/reservations/order-{book}")
        return "delete", client.delete(f"/books/{book}")

    answers = all_at_once(len(books_made) * 2, delete_or_release)

    assert {r.status_code for kind, r in answers if kind == "release"} == {204}
    assert {r.status_code for kind, r in answers if kind == "delete"} <= {204, 409}, [
        r.text for kind, r in answers if kind == "delete" and r.status_code not in (204, 409)
    ]

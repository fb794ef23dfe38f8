"""Chat is best effort: chat down (refusing, or hanging) never fails an order nor slows it."""

from __future__ import annotations

import statistics
import time
from typing import TYPE_CHECKING

import pytest
from starlette.testclient import TestClient

from chassis.testing import MetricsSnapshot

if TYPE_CHECKING:
    from conftest import BlackHole, Catalog, ChatSink, MakeShop

pytestmark = pytest.mark.postgres

ORDERS = 10
WARM_UP = 2
MARGIN_SECONDS = 0.050


def timed_order(shop: TestClient, book: int) -> float:
    started = time.perf_counter()
    response = shop.post("/orders", json={"items": [{"book_id": book, "quantity": 1}]})
    elapsed = time.perf_counter() - started
    assert response.status_code == 201, response.text
    return elapsed


def chat_notices_lost(shop: TestClient) -> float:
    """Notices whose call to chat failed, or that chat's open breaker turned away."""
    snapshot = MetricsSnapshot(shop.get("/metrics").text)
    counts = [
        snapshot.value("circuit_breaker_calls_total", peer_service="chat", outcome=outcome)
        for outcome in ("failure", "rejected")
    ]
    return sum(count for count in counts if count == count)  # NaN: none yet


def test_chat_down_neither_fails_nor_slows_orders(
    make_shop: MakeShop, catalog: Catalog, chat_sink: ChatSink, black_hole: BlackHole
) -> None:
    notices = ORDERS + WARM_UP
    book = catalog.add_book(stock=3 * notices)
    shops = {
        "up": make_shop(DEPENDENCIES__CHAT__BASE_URL=chat_sink.url),
        "refusing": make_shop(),  # chat's base URL is a closed port
        "hanging": make_shop(DEPENDENCIES__CHAT__BASE_URL=black_hole.url),
    }
    for _ in range(WARM_UP):
        for shop in shops.values():
            timed_order(shop, book)

    latencies: dict[str, list[float]] = {name: [] for name in shops}
    for _ in range(ORDERS):  # interleaved, so that machine noise hits all alike
        for name, shop in shops.items():
            latencies[name].append(timed_order(shop, book))

    median = {name: statistics.median(samples) for name, samples in latencies.items()}
    for down in ("refusing", "hanging"):
        assert median[down] - median["up"] < MARGIN_SECONDS, {
            name: f"{seconds * 1000:.1f} ms" for name, seconds in median.items()
        }
    # Every configuration really tried its notices: one delivered them, the others lost them.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (
        chat_sink.posts < notices or chat_notices_lost(shops["refusing"]) < notices
    ):
        time.sleep(0.05)
    assert chat_sink.posts == notices
    assert chat_notices_lost(shops["refusing"]) == notices
    assert chat_notices_lost(shops["up"]) == 0
    assert catalog.stock(book) == 0

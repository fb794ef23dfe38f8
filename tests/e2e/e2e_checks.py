"""Checks of shop's breaker to books that the breaking and outage scenarios share (design §7)."""

from __future__ import annotations

import math
import time

from e2e_stack import Stack, wait_until

# design §7: a window of 20 calls, at least 10 before it may trip, opens at 50% failures. So
# from a closed breaker with up to 20 successes in its window, a full outage opens it after at
# least 5 failed calls (5 successes + 5 failures) and at most 10 (10 + 10).
WINDOW = 20
MINIMUM_CALLS = 10
FAILURE_RATE = 0.5
FEWEST_FAILURES = math.ceil(MINIMUM_CALLS * FAILURE_RATE)
MOST_FAILURES = math.ceil(WINDOW * FAILURE_RATE)
FAST_CALLS = 100
# An open breaker answers without calling books: about a millisecond on a quiet machine. The
# bound is a tenth of the 2 s read timeout a call to a hung books would wait, since a busy 2-core
# CI machine has stretched that millisecond's p99 to 57 ms; the problem's detail proves the rest.
FAST_P99_SECONDS = 0.200


def failures_to_books(stack: Stack) -> float:
    value = stack.metrics("shop").value(
        "circuit_breaker_calls_total", peer_service="books", outcome="failure"
    )
    return 0.0 if math.isnan(value) else value  # NaN: no failure counted yet


def open_shop_breaker(stack: Stack, book_id: int) -> int:
    """Places orders until shop's breaker to books is open; returns how many it took."""
    placed = 0

    def opened() -> bool:
        nonlocal placed
        response = stack.order([(book_id, 1)])
        placed += 1
        assert response.status_code in (502, 503, 504), response.text
        return stack.breaker("shop", "books") == "open"

    wait_until(opened, timeout=30, interval=0, message="shop's breaker to books never opened")
    return placed


def assert_fails_fast_while_open(stack: Stack, book_id: int) -> None:
    durations = []
    for _ in range(FAST_CALLS):
        started = time.perf_counter()
        response = stack.order([(book_id, 1)])
        durations.append(time.perf_counter() - started)
        assert response.status_code == 503, response.text
        assert "circuit breaker is open" in response.json()["detail"]
        assert int(response.headers["Retry-After"]) >= 1
    durations.sort()
    p99 = durations[int(0.99 * len(durations)) - 1]  # nearest rank
    assert p99 < FAST_P99_SECONDS, f"p99 {p99 * 1000:.1f} ms; slowest {durations[-5:]}"


def assert_degraded_not_down(stack: Stack) -> None:
    readiness = stack.readiness("shop")
    assert readiness.status_code == 200, readiness.text
    body = readiness.json()
    assert body["status"] == "DEGRADED"
    assert body["checks"]["books"]["breaker"] == "open"
    assert body["checks"]["database"]["status"] == "UP"


def assert_open_in_metrics(stack: Stack) -> None:
    metrics = stack.metrics("shop")
    assert metrics.value("circuit_breaker_state", peer_service="books", state="open") == 1
    assert metrics.value("circuit_breaker_state", peer_service="books", state="closed") == 0
    if stack.prometheus is None:
        return
    prometheus = stack.prometheus
    query = 'circuit_breaker_state{job="shop", peer_service="books", state="open"}'
    wait_until(
        lambda: [r for r in prometheus.query(query) if r["value"] == 1],
        timeout=15,
        interval=0.25,
        message=f"Prometheus never saw {query} == 1",
    )


def assert_recovers(stack: Stack, book_id: int) -> None:
    """After open_seconds the breaker lets trial calls through; they succeed and close it."""
    half_open = wait_until(
        lambda: stack.breaker("shop", "books") == "half_open",
        timeout=stack.breaker_open_seconds + 10,
        interval=0.2,
        message="shop's breaker to books did not go half-open",
    )
    assert half_open
    assert stack.readiness("shop").json()["status"] == "DEGRADED"

    def ordered() -> bool:
        response = stack.order([(book_id, 1)])
        assert response.status_code in (201, 503), response.text
        return response.status_code == 201

    wait_until(ordered, timeout=15, interval=0.2, message="orders never succeeded after heal")

    def closed() -> bool:
        if stack.breaker("shop", "books") == "closed":
            return True
        assert stack.order([(book_id, 1)]).status_code == 201
        return False

    wait_until(closed, timeout=15, interval=0.1, message="shop's breaker to books did not close")
    assert stack.readiness("shop").json()["status"] == "UP"
    assert stack.order([(book_id, 1)]).status_code == 201

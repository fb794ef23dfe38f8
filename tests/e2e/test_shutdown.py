"""Graceful shutdown: SIGTERM with requests in flight; each accepted request completes and the
process exits 0 within its bound. Runs last: it leaves the service stopped (the next scenario,
if any, restarts it)."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import httpx
import pytest
from e2e_stack import SHUTDOWN_GRACE_SECONDS, LocalStack, wait_until

from chassis.testing import ServiceProcess

IN_FLIGHT = 8
LATENCY_MS = 1500
EXIT_BOUND_SECONDS = SHUTDOWN_GRACE_SECONDS + 5  # drain (0) + grace + flushing telemetry


def sigterm_with_requests_in_flight(
    stack: LocalStack,
    process: ServiceProcess,
    method: str,
    send: Callable[[httpx.Client], httpx.Response],
) -> list[httpx.Response]:
    """Starts IN_FLIGHT requests, waits until the service holds them all, sends SIGTERM."""
    client = httpx.Client(timeout=30)
    pool = ThreadPoolExecutor(IN_FLIGHT)
    try:
        futures: list[Future[httpx.Response]] = [
            pool.submit(send, client) for _ in range(IN_FLIGHT)
        ]

        def all_in_flight() -> bool:
            active = stack.metrics(process.name).value(
                "http_server_active_requests", http_request_method=method
            )
            # a GET /metrics counts itself as an active GET
            return active >= IN_FLIGHT + (method == "GET")

        wait_until(
            all_in_flight,
            timeout=10,
            interval=0.05,
            message=f"{process.name} never held {IN_FLIGHT} requests",
        )
        signalled = time.monotonic()
        process.signal(signal.SIGTERM)
        responses = [future.result(timeout=EXIT_BOUND_SECONDS) for future in futures]
        code = process.wait_exit(EXIT_BOUND_SECONDS)
        elapsed = time.monotonic() - signalled
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        client.close()
    assert code == 0, process.log_tail()
    assert elapsed < EXIT_BOUND_SECONDS, f"exited {elapsed:.1f}s after SIGTERM"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{process.url}/health/live", timeout=2)
    return responses


def test_books_finishes_requests_in_flight_on_sigterm(local_stack: LocalStack) -> None:
    stack = local_stack
    book = stack.canary_book
    stack.inject("books", latency_ms=LATENCY_MS, routes=["/books/{book_id}"])
    responses = sigterm_with_requests_in_flight(
        stack,
        stack.processes["books"],
        "GET",
        lambda client: client.get(f"{stack.url('books')}/books/{book}"),
    )
    assert [r.status_code for r in responses] == [200] * IN_FLIGHT
    assert all(r.json()["id"] == book for r in responses)


def test_shop_finishes_orders_in_flight_on_sigterm(local_stack: LocalStack) -> None:
    stack = local_stack
    book = stack.canary_book
    assert book is not None
    stock_before = stack.stock(book)
    # the orders wait in books' reservation call while shop gets the signal
    stack.inject("books", latency_ms=LATENCY_MS, routes=["/books/{book_id}/reservations"])
    responses = sigterm_with_requests_in_flight(
        stack,
        stack.processes["shop"],
        "POST",
        lambda client: client.post(
            f"{stack.url('shop')}/orders",
            json={"items": [{"book_id": book, "quantity": 1}]},
            headers={"Idempotency-Key": f"e2e-shutdown-{uuid.uuid4()}"},
        ),
    )
    assert [r.status_code for r in responses] == [201] * IN_FLIGHT, [r.text for r in responses]
    assert all(r.json()["status"] == "confirmed" for r in responses)
    stack.heal("books")
    assert stack.stock(book) == stock_before - IN_FLIGHT

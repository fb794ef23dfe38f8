"""Prometheus scrapes every service and the RED, client and breaker queries answer."""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable
from typing import Any

import pytest
from e2e_stack import SERVICES, Prometheus, Stack, unavailable, wait_until

REQUESTS = "http_server_request_duration_seconds"
CLIENT = "http_client_request_duration_seconds"
JOBS = f'job=~"{"|".join(SERVICES)}"'  # every service folder


@pytest.fixture
def prometheus(stack: Stack) -> Prometheus:
    if stack.prometheus is None:
        unavailable("no Prometheus: set E2E_PROMETHEUS_URL")
    return stack.prometheus


def make_traffic(stack: Stack) -> None:
    """Requests of every kind the queries below look for, including a 5xx and client calls."""
    book = stack.canary_book
    assert book is not None
    stack.http.get(f"{stack.url('books')}/books", params={"limit": 5})
    stack.http.get(f"{stack.url('books')}/books/{book}")
    placed = stack.order([(book, 1)])
    assert placed.status_code == 201, placed.text
    stack.http.get(f"{stack.url('shop')}/orders/{placed.json()['id']}")
    stack.http.post(
        f"{stack.url('chat')}/rooms/book-{book}/messages", json={"author": "e2e", "text": "hi"}
    )
    # chat asks books about a book it has never seen (a 404, cached only briefly)
    stack.http.get(f"{stack.url('chat')}/rooms/book-{secrets.randbelow(10**9) + 10**9}")
    stack.inject("books", error_rate=1.0, routes=["/books"])
    failed = stack.http.get(f"{stack.url('books')}/books")
    stack.heal("books")
    assert failed.status_code == 500, failed.text


def by(results: list[dict[str, Any]], *labels: str) -> dict[tuple[str, ...], float]:
    return {tuple(r["metric"].get(label, "") for label in labels): r["value"] for r in results}


def eventually(
    prometheus: Prometheus,
    query: str,
    accept: Callable[[list[dict[str, Any]]], bool],
    traffic: Callable[[], None],
) -> list[dict[str, Any]]:
    """Sends traffic and polls ``query`` until ``accept(results)`` holds: a rate needs a series
    to grow between two scrapes, and a series' first sample does not count as growth."""
    last: list[dict[str, Any]] = []

    def answer() -> list[dict[str, Any]] | None:
        nonlocal last
        traffic()
        last = prometheus.query(query)
        return last if accept(last) else None

    return wait_until(answer, timeout=30, interval=0.5, message=lambda: f"{query}\nanswered {last}")


def test_prometheus_scrapes_every_service(stack: Stack, prometheus: Prometheus) -> None:
    def all_up() -> bool:
        up = by(prometheus.query(f"up{{{JOBS}}}"), "job")
        return all(up.get((name,)) == 1 for name in SERVICES)

    wait_until(all_up, timeout=20, interval=0.5, message=lambda: str(prometheus.targets()))
    info = prometheus.query("service_info")
    assert {("books", "books"), ("shop", "shop"), ("chat", "chat")} <= set(
        by(info, "job", "service")
    )
    # the scrape config drops the copy Prometheus would keep of service_info's own label
    assert not [r["metric"] for r in info if "exported_service" in r["metric"]]


def test_red_client_and_breaker_queries_return_data(stack: Stack, prometheus: Prometheus) -> None:
    def check(query: str, accept: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
        return eventually(prometheus, query, accept, lambda: make_traffic(stack))

    routes = {
        ("books", "/books/{book_id}"),
        ("books", "/books"),
        ("shop", "/orders"),
        ("chat", "/rooms/{room}/messages"),
    }
    check(
        f"sum by (job, http_route) (rate({REQUESTS}_count{{{JOBS}}}[1m]))",
        lambda r: routes <= {k for k, v in by(r, "job", "http_route").items() if v > 0},
    )

    errors = (
        f'sum by (job) (rate({REQUESTS}_count{{{JOBS}, http_response_status_code=~"5.."}}[1m]))'
        f" / sum by (job) (rate({REQUESTS}_count{{{JOBS}}}[1m]))"
    )
    ratios = by(check(errors, lambda r: by(r, "job").get(("books",), 0) > 0), "job")
    assert all(0 <= ratio <= 1 for ratio in ratios.values()), ratios

    p95 = f"histogram_quantile(0.95, sum by (job, le) (rate({REQUESTS}_bucket{{{JOBS}}}[1m])))"
    quantiles = by(check(p95, lambda r: len(r) == len(SERVICES)), "job")
    assert all(0 < value < 10 and not math.isnan(value) for value in quantiles.values()), quantiles

    peers = {("shop", "books"), ("shop", "chat"), ("chat", "books")}
    check(
        f"sum by (job, peer_service) (rate({CLIENT}_count{{{JOBS}}}[1m]))",
        lambda r: peers <= {k for k, v in by(r, "job", "peer_service").items() if v > 0},
    )

    closed = {
        ("books", "closed"): 1,
        ("books", "open"): 0,
        ("books", "half_open"): 0,
        ("chat", "closed"): 1,
        ("chat", "open"): 0,
        ("chat", "half_open"): 0,
    }
    check(
        'circuit_breaker_state{job="shop"}',
        lambda r: by(r, "peer_service", "state") == closed,
    )
    check(
        "sum by (job, peer_service, outcome) (rate(circuit_breaker_calls_total[1m]))",
        lambda r: by(r, "job", "peer_service", "outcome").get(("shop", "books", "success"), 0) > 0,
    )


def test_request_histograms_carry_trace_exemplars(stack: Stack, prometheus: Prometheus) -> None:
    make_traffic(stack)
    query = f'{REQUESTS}_bucket{{job="shop", http_route="/orders"}}'

    def trace_ids() -> set[str]:
        return {
            exemplar["labels"].get("trace_id", "")
            for series in prometheus.exemplars(query)
            for exemplar in series["exemplars"]
        }

    found = wait_until(trace_ids, timeout=20, interval=0.5, message=f"no exemplars for {query}")
    assert all(len(trace_id) == 32 for trace_id in found), found

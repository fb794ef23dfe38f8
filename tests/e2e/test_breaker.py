"""Breaking books through fault injection opens shop's breaker; healing closes it (design §7)."""

from __future__ import annotations

from e2e_checks import (
    FEWEST_FAILURES,
    MOST_FAILURES,
    assert_degraded_not_down,
    assert_fails_fast_while_open,
    assert_open_in_metrics,
    assert_recovers,
    failures_to_books,
    open_shop_breaker,
)
from e2e_stack import Stack


def test_breaking_books_opens_shops_breaker_and_healing_closes_it(stack: Stack) -> None:
    book = stack.canary_book
    assert book is not None
    failures_before = failures_to_books(stack)
    stack.inject("books", outage=True)

    open_shop_breaker(stack, book)
    failed_calls = failures_to_books(stack) - failures_before
    assert FEWEST_FAILURES <= failed_calls <= MOST_FAILURES, (
        f"opened after {failed_calls} failed calls"
    )
    assert_fails_fast_while_open(stack, book)
    assert_degraded_not_down(stack)
    assert_open_in_metrics(stack)

    stack.heal("books")
    assert_recovers(stack, book)
    if stack.local:
        transitions = [
            (line["previous_state"], line["state"])
            for line in stack.processes["shop"].log_lines()  # type: ignore[attr-defined]
            if line.get("message") == "circuit breaker state changed"
            and line.get("peer_service") == "books"
        ]
        assert ("closed", "open") in transitions, transitions
        assert transitions[-2:] == [("open", "half_open"), ("half_open", "closed")], transitions

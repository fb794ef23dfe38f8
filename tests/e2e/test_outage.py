"""A real outage: books killed, then restarted on the same port; shop rides it out unrestarted."""

from __future__ import annotations

from e2e_checks import (
    assert_degraded_not_down,
    assert_fails_fast_while_open,
    assert_open_in_metrics,
    assert_recovers,
    open_shop_breaker,
)
from e2e_stack import LocalStack


def test_books_killed_then_restarted_without_restarting_shop(local_stack: LocalStack) -> None:
    stack = local_stack
    book = stack.canary_book
    assert book is not None
    shop = stack.processes["shop"]
    books = stack.processes["books"]
    shop_pid = shop.pid

    books.kill()
    orders = open_shop_breaker(stack, book)
    assert orders <= 10, f"took {orders} orders to open"
    assert_fails_fast_while_open(stack, book)
    assert_degraded_not_down(stack)
    assert_open_in_metrics(stack)

    books.start()  # the same port; waits until ready
    assert_recovers(stack, book)
    assert shop.running
    assert shop.pid == shop_pid

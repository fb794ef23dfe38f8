"""The showcase trace: one POST /orders is one trace across shop, books and chat."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import pytest
from e2e_stack import Span, Stack, unavailable, wait_until


@dataclass(frozen=True)
class Showcase:
    trace_id: str
    caller_span_id: str  # the span id our traceparent claimed as the parent
    book_id: int
    order_id: str


@pytest.fixture(scope="module")
def showcase(stack: Stack) -> Showcase:
    stack.ensure_healthy()
    book_id = stack.create_book(stock=5, title="A traced book")  # chat has never looked it up
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    response = stack.order([(book_id, 1)], traceparent=f"00-{trace_id}-{span_id}-01")
    assert response.status_code == 201, response.text
    return Showcase(trace_id, span_id, book_id, response.json()["id"])


def _one(spans: list[Span], *, service: str, kind: str, name: str) -> list[Span]:
    return [s for s in spans if (s.service, s.kind, s.name) == (service, kind, name)]


def _expected_tree(spans: list[Span], showcase: Showcase) -> dict[str, Span] | None:
    """The showcase's spans by role, or None while some are still missing."""
    by_id = {span.span_id: span for span in spans}

    def under(ancestor: Span, candidates: list[Span]) -> Span | None:
        for span in candidates:
            parent = span.parent_id
            while parent is not None:
                if parent == ancestor.span_id:
                    return span
                parent = by_id[parent].parent_id if parent in by_id else None
        return None

    def child_of(parent: Span | None, **what: str) -> Span | None:
        if parent is None:
            return None
        return next((s for s in _one(spans, **what) if s.parent_id == parent.span_id), None)

    tree: dict[str, Span | None] = {}
    servers = _one(spans, service="shop", kind="server", name="POST /orders")
    tree["shop"] = shop = next((s for s in servers if s.parent_id == showcase.caller_span_id), None)
    if shop is None:
        return None
    price = "GET /books/{book_id}"
    reserve = "POST /books/{book_id}/reservations"
    notice = "POST /rooms/{room}/messages"
    tree["shop->books price"] = under(shop, _one(spans, service="shop", kind="client", name=price))
    tree["books price"] = child_of(
        tree["shop->books price"], service="books", kind="server", name=price
    )
    tree["shop->books reserve"] = under(
        shop, _one(spans, service="shop", kind="client", name=reserve)
    )
    tree["books reserve"] = child_of(
        tree["shop->books reserve"], service="books", kind="server", name=reserve
    )
    tree["shop->chat notice"] = under(shop, _one(spans, service="shop", kind="client", name=notice))
    tree["chat notice"] = child_of(
        tree["shop->chat notice"], service="chat", kind="server", name=notice
    )
    tree["chat->books lookup"] = (
        under(tree["chat notice"], _one(spans, service="chat", kind="client", name=price))
        if tree["chat notice"]
        else None
    )
    tree["books lookup"] = child_of(
        tree["chat->books lookup"], service="books", kind="server", name=price
    )
    if any(span is None for span in tree.values()):
        return None
    return {role: span for role, span in tree.items() if span is not None}


def test_one_order_is_one_trace_across_the_three_services(stack: Stack, showcase: Showcase) -> None:
    if stack.traces is None:
        unavailable("no trace source: set E2E_JAEGER_URL")
    traces = stack.traces

    def tree() -> dict[str, Span] | None:
        return _expected_tree(traces.spans(showcase.trace_id), showcase)

    found = wait_until(
        tree,
        timeout=20,
        interval=0.25,
        message=lambda: (
            "incomplete showcase trace; spans: "
            + "\n".join(
                f"  {s.service} {s.kind} {s.name} {s.span_id}<-{s.parent_id}"
                for s in traces.spans(showcase.trace_id)
            )
        ),
    )
    assert {span.trace_id for span in found.values()} == {showcase.trace_id}
    assert {span.service for span in found.values()} == {"shop", "books", "chat"}
    # Cross-service links are direct parent/child: the callee's server span is the child of
    # the caller's client span.
    assert found["books price"].parent_id == found["shop->books price"].span_id
    assert found["books reserve"].parent_id == found["shop->books reserve"].span_id
    assert found["chat notice"].parent_id == found["shop->chat notice"].span_id
    assert found["books lookup"].parent_id == found["chat->books lookup"].span_id


def test_the_trace_id_is_in_every_services_log_lines(stack: Stack, showcase: Showcase) -> None:
    if not stack.local:
        pytest.skip("reads the processes' stdout: only the local stack captures it")
    processes = stack.processes  # type: ignore[attr-defined]

    def logged_everywhere() -> bool:
        return all(
            any(line.get("trace_id") == showcase.trace_id for line in processes[name].log_lines())
            for name in ("shop", "books", "chat")
        )

    wait_until(logged_everywhere, timeout=10, message="trace id missing from some service's log")
    shop_lines = [
        line for line in processes["shop"].log_lines() if line.get("trace_id") == showcase.trace_id
    ]
    access = [line for line in shop_lines if line.get("route") == "/orders"]
    assert access, shop_lines
    assert access[0]["status"] == 201
    assert access[0]["service"] == "shop"
    assert access[0]["span_id"]

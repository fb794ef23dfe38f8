"""A confirmed order's notice appears live in the book's chat room, as the room page sees it."""

from __future__ import annotations

import json
import queue
import threading
from typing import Any

import httpx
from e2e_stack import Stack


def follow(url: str, messages: queue.Queue[dict[str, Any]], ready: threading.Event) -> None:
    """Reads the room's event stream (what the page's EventSource reads) into ``messages``."""
    with (
        httpx.Client(timeout=httpx.Timeout(5, read=30)) as client,
        client.stream("GET", url) as stream,
    ):
        ready.set()
        for line in stream.iter_lines():
            if line.startswith("data: "):
                messages.put(json.loads(line.removeprefix("data: ")))


def test_an_order_notice_arrives_live_in_the_book_room(stack: Stack) -> None:
    stack.ensure_healthy()
    book_id = stack.create_book(stock=3, title="A book people talk about")
    messages: queue.Queue[dict[str, Any]] = queue.Queue()
    ready = threading.Event()
    events = f"{stack.url('chat')}/rooms/book-{book_id}/events"
    threading.Thread(target=follow, args=(events, messages, ready), daemon=True).start()
    assert ready.wait(10), "the room's event stream did not open"

    order = stack.order([(book_id, 2)])
    assert order.status_code == 201, order.text

    notice = messages.get(timeout=15)
    assert notice["author"] == "shop"
    assert notice["room"] == f"book-{book_id}"
    assert "2 copies" in notice["text"]
    assert notice["verified"] is True

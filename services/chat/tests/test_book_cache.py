"""The book lookup cache is bounded: any book-N room name can be asked for."""

from __future__ import annotations

from typing import Any

import httpx

from chat import books_api
from chat.books_api import BookDirectory


class CountingBooks:
    """Answers like books' GET /books/{book_id}: every even id exists."""

    def __init__(self) -> None:
        self.calls = 0

    def get(self, template: str, **params: Any) -> httpx.Response:
        self.calls += 1
        book_id = params["book_id"]
        if book_id % 2:
            return httpx.Response(404, json={"detail": "no such book"})
        return httpx.Response(200, json={"title": f"Book {book_id}"})


def test_the_cache_never_holds_more_than_its_bound(monkeypatch: Any) -> None:
    monkeypatch.setattr(books_api, "MAX_CACHED", 50)
    books = CountingBooks()
    directory = BookDirectory(books, found_seconds=60, missing_seconds=60)  # type: ignore[arg-type]

    for book_id in range(1, 501):
        directory.lookup(book_id)

    assert len(directory._cache) == 50
    assert directory.lookup(500).exists is True  # the newest answers stay cached
    assert books.calls == 500
    assert directory.lookup(2).title == "Book 2"  # an evicted one is asked again
    assert books.calls == 501

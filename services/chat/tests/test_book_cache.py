"""The book caches: the lookup cache is bounded (any book-N room name can be asked for), and
the catalogue is asked for once however many callers want it at the same time."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from chassis import DependencyUnavailable
from chat import books_api
from chat.books_api import BookDirectory, BookLookup, Catalogue, CatalogueStatus


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


class SlowCatalogue:
    """Answers GET /books (one page of two books) once ``release`` is set; counts the calls."""

    def __init__(self, *, fail: bool = False) -> None:
        self.calls = 0
        self.fail = fail
        self.release = threading.Event()
        self.asked = threading.Event()

    def get(self, template: str, **params: Any) -> httpx.Response:
        assert template == "/books"
        self.calls += 1
        self.asked.set()
        assert self.release.wait(5)
        if self.fail:
            raise DependencyUnavailable("books", "books is unreachable")
        page = {"items": [{"id": 2, "title": "Two"}, {"id": 1, "title": "One"}]}
        return httpx.Response(200, json={**page, "next_offset": None})


@pytest.mark.parametrize("fail", [False, True], ids=["answers", "fails"])
def test_callers_waiting_for_a_catalogue_share_the_one_answer(fail: bool) -> None:
    """While books is slow, callers must not queue up to ask it one after the other."""
    books = SlowCatalogue(fail=fail)
    directory = BookDirectory(books, found_seconds=60, missing_seconds=5)  # type: ignore[arg-type]

    with ThreadPoolExecutor(5) as pool:
        first = pool.submit(directory.catalogue)
        assert books.asked.wait(5)
        others = [pool.submit(directory.catalogue) for _ in range(4)]
        time.sleep(0.1)  # the others now wait for the first
        books.release.set()
        answers = [first.result(5)] + [other.result(5) for other in others]

    assert books.calls == 1
    assert all(answer == answers[0] for answer in answers)
    if fail:
        assert answers[0] == Catalogue(CatalogueStatus.UNAVAILABLE)
    else:
        assert answers[0].status is CatalogueStatus.AVAILABLE
        assert list(answers[0].titles.items()) == [(1, "One"), (2, "Two")]  # in id order
        assert directory.known(2) == BookLookup(True, "Two")


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"items": [], "next_offset": 0}, id="empty-page-claiming-more"),
        pytest.param({"items": [{"id": 1}], "next_offset": None}, id="no-title"),
        pytest.param({"items": [], "next_offset": "1"}, id="offset-not-a-number"),
        pytest.param(["not", "a", "page"], id="not-an-object"),
    ],
)
def test_a_catalogue_page_that_is_not_one_is_refused(body: Any) -> None:
    class Odd:
        def get(self, template: str, **params: Any) -> httpx.Response:
            return httpx.Response(200, json=body)

    directory = BookDirectory(Odd(), found_seconds=60, missing_seconds=5)  # type: ignore[arg-type]

    assert directory.catalogue().status is CatalogueStatus.UNAVAILABLE


def test_a_failed_catalogue_read_is_not_repeated_for_missing_seconds() -> None:
    """While books fails but its breaker is still closed, every room listing must not pay for a
    whole catalogue read again."""
    books = SlowCatalogue(fail=True)
    books.release.set()
    now = [100.0]
    directory = BookDirectory(
        books,  # type: ignore[arg-type]
        found_seconds=60,
        missing_seconds=5,
        clock=lambda: now[0],
    )

    assert directory.catalogue().status is CatalogueStatus.UNAVAILABLE
    assert directory.catalogue().status is CatalogueStatus.UNAVAILABLE
    assert books.calls == 1
    now[0] += 5.1
    assert directory.catalogue().status is CatalogueStatus.UNAVAILABLE
    assert books.calls == 2


def test_with_a_catalogue_to_show_nobody_waits_for_its_refresh() -> None:
    books = SlowCatalogue()
    books.release.set()
    now = [100.0]
    directory = BookDirectory(
        books,  # type: ignore[arg-type]
        found_seconds=60,
        missing_seconds=5,
        catalogue_seconds=60,
        clock=lambda: now[0],
    )
    assert directory.catalogue().status is CatalogueStatus.AVAILABLE
    now[0] += 61  # expired: the next caller refreshes, and books is slow this time
    books.release.clear()
    books.asked.clear()
    with ThreadPoolExecutor(1) as pool:
        refreshing = pool.submit(directory.catalogue)
        assert books.asked.wait(5)
        started = time.monotonic()
        meanwhile = directory.catalogue()
        waited = time.monotonic() - started
        books.release.set()
        assert refreshing.result(5).status is CatalogueStatus.AVAILABLE

    assert waited < 1, "a caller with a catalogue to show waited for books"
    assert meanwhile.status is CatalogueStatus.STALE
    assert list(meanwhile.titles.items()) == [(1, "One"), (2, "Two")]
    assert books.calls == 2

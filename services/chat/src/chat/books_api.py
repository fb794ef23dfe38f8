"""What chat asks books, through the chassis client, with answers cached.

``lookup(book_id)``  does this book exist, and its title (verifies posts to a book room)
``catalogue()``      every book's id and title (lists a room for each book); when books cannot
                     answer, the last catalogue chat got (``stale``) or none (``unavailable``)
``known(book_id)``   what the caches know of a book, without asking books
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import httpx

from chassis import CircuitOpenError, DependencyError, ServiceClient


@dataclass(frozen=True)
class BookLookup:
    exists: bool | None  # None: books could not be asked
    title: str | None = None


UNKNOWN = BookLookup(None)
MAX_CACHED = 10_000
CATALOGUE_PAGE = 100  # books' largest page


class CatalogueStatus(StrEnum):
    AVAILABLE = "available"  # as books answered within the catalogue's cache time
    STALE = "stale"  # books could not be asked: the last catalogue chat got
    UNAVAILABLE = "unavailable"  # books could not be asked and chat never got a catalogue


@dataclass(frozen=True)
class Catalogue:
    status: CatalogueStatus
    titles: Mapping[int, str] = field(default_factory=dict)  # book id -> title, in id order
    fetched_at: datetime | None = None
    truncated: bool = False  # books holds more than the books listed here


NO_CATALOGUE = Catalogue(CatalogueStatus.UNAVAILABLE)


class CatalogueUnreadable(Exception):
    """books answered the listing with something other than a page of books."""


class BookDirectory:
    def __init__(
        self,
        books: ServiceClient,
        *,
        found_seconds: float,
        missing_seconds: float,
        catalogue_seconds: float = 60.0,
        catalogue_max_books: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.books = books
        self.found_seconds = found_seconds
        self.missing_seconds = missing_seconds
        self.catalogue_seconds = catalogue_seconds
        self.catalogue_max_books = catalogue_max_books
        self.clock = clock
        self._cache: dict[int, tuple[BookLookup, float]] = {}
        self._lock = threading.Lock()
        self._catalogue: Catalogue | None = None  # the last one books answered
        self._catalogue_expires = 0.0
        self._last_attempt: Catalogue = NO_CATALOGUE
        self._attempts = 0
        self._failed_until = 0.0  # after a failed read, books is not asked again before this
        self._catalogue_lock = threading.Lock()  # one refresh at a time

    # -- one book -------------------------------------------------------------------------------

    def lookup(self, book_id: int) -> BookLookup:
        cached = self.known(book_id)
        if cached is not None:
            return cached
        try:
            response = self.books.get("/books/{book_id}", book_id=book_id)
        except (DependencyError, CircuitOpenError):
            return UNKNOWN  # never cached: ask again as soon as books is back
        if response.status_code == 404:
            answer, ttl = BookLookup(False), self.missing_seconds
        elif response.status_code == 200:
            answer, ttl = BookLookup(True, response.json().get("title")), self.found_seconds
        else:
            return UNKNOWN
        self._remember(book_id, answer, ttl)
        return answer

    def known(self, book_id: int) -> BookLookup | None:
        """The cached answer for the book, if one is still fresh; never asks books."""
        with self._lock:
            cached = self._cache.get(book_id)
        if cached and cached[1] > self.clock():
            return cached[0]
        return None

    def _remember(self, book_id: int, answer: BookLookup, ttl: float) -> None:
        with self._lock:
            self._cache.pop(book_id, None)  # re-inserted last: the newest answers stay longest
            if len(self._cache) >= MAX_CACHED:  # any book-N can be asked for: bound the memory
                del self._cache[next(iter(self._cache))]
            self._cache[book_id] = (answer, self.clock() + ttl)

    # -- the whole catalogue --------------------------------------------------------------------

    def catalogue(self) -> Catalogue:
        """Every book's title, at most ``catalogue_max_books`` of them (the oldest), cached for
        ``catalogue_seconds``. Never raises: when books cannot answer, the last catalogue it
        gave marked ``stale``, or an empty one marked ``unavailable``. A failed read is not
        retried for ``missing_seconds``; while one refresh runs, callers that have a catalogue
        to show (even a stale one) get it at once instead of waiting for books."""
        attempts_seen = self._attempts
        if self._failed_until > self.clock():
            return self._last_attempt
        if self._catalogue is not None and not self._catalogue_lock.acquire(blocking=False):
            fresh = self._catalogue_expires > self.clock()
            return self._catalogue if fresh else self._stale(self._catalogue)
        if self._catalogue is None:
            self._catalogue_lock.acquire()  # nothing to show yet: wait for the one refresh
        try:
            if self._catalogue is not None and self._catalogue_expires > self.clock():
                return self._catalogue
            if self._attempts != attempts_seen:
                # books answered (or failed to) while this caller waited: share that answer
                # rather than ask again (callers pile up here while books is slow).
                return self._last_attempt
            self._last_attempt = self._refresh()
            self._attempts += 1  # completed attempts
            if self._last_attempt.status is not CatalogueStatus.AVAILABLE:
                self._failed_until = self.clock() + self.missing_seconds
            return self._last_attempt
        finally:
            self._catalogue_lock.release()

    @staticmethod
    def _stale(catalogue: Catalogue) -> Catalogue:
        return Catalogue(
            CatalogueStatus.STALE, catalogue.titles, catalogue.fetched_at, catalogue.truncated
        )

    def _refresh(self) -> Catalogue:
        try:
            titles, truncated = self._read_catalogue()
        except (DependencyError, CircuitOpenError, CatalogueUnreadable):
            return NO_CATALOGUE if self._catalogue is None else self._stale(self._catalogue)
        self._catalogue = Catalogue(CatalogueStatus.AVAILABLE, titles, datetime.now(UTC), truncated)
        self._catalogue_expires = self.clock() + self.catalogue_seconds
        for book_id, title in titles.items():  # posts to these rooms need not ask again
            self._remember(book_id, BookLookup(True, title), self.found_seconds)
        return self._catalogue

    def _read_catalogue(self) -> tuple[dict[int, str], bool]:
        """(titles in id order, whether books holds more), one page of books at a time."""
        titles: dict[int, str] = {}
        offset: int | None = 0
        while offset is not None and len(titles) < self.catalogue_max_books:
            limit = min(CATALOGUE_PAGE, self.catalogue_max_books - len(titles))
            response = self.books.get("/books", params={"limit": limit, "offset": offset})
            if response.status_code != 200:
                raise CatalogueUnreadable(f"books answered {response.status_code}")
            page, offset = _book_page(response)
            titles.update(page)
        return dict(sorted(titles.items())), offset is not None


def _book_page(response: httpx.Response) -> tuple[dict[int, str], int | None]:
    """The titles of one page of ``GET /books`` and the next page's offset."""
    try:
        body: Any = response.json()
        items = body["items"]
        next_offset = body.get("next_offset")
        titles = {int(book["id"]): str(book["title"]) for book in items}
    except (TypeError, KeyError, ValueError) as exc:
        raise CatalogueUnreadable(f"not a page of books: {type(exc).__name__}") from exc
    if next_offset is not None and not isinstance(next_offset, int):
        raise CatalogueUnreadable("next_offset is not an integer")
    if next_offset is not None and not items:
        raise CatalogueUnreadable("an empty page that claims more")  # would loop forever
    return titles, next_offset

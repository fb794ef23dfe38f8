"""Does a book exist? Asked of books through the chassis client, answers cached briefly."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from chassis import CircuitOpenError, DependencyError, ServiceClient


@dataclass(frozen=True)
class BookLookup:
    exists: bool | None  # None: books could not be asked
    title: str | None = None


UNKNOWN = BookLookup(None)
MAX_CACHED = 10_000


class BookDirectory:
    def __init__(
        self,
        books: ServiceClient,
        *,
        found_seconds: float,
        missing_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.books = books
        self.found_seconds = found_seconds
        self.missing_seconds = missing_seconds
        self.clock = clock
        self._cache: dict[int, tuple[BookLookup, float]] = {}
        self._lock = threading.Lock()

    def lookup(self, book_id: int) -> BookLookup:
        with self._lock:
            cached = self._cache.get(book_id)
        if cached and cached[1] > self.clock():
            return cached[0]
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
        with self._lock:
            if len(self._cache) >= MAX_CACHED:  # any book-N can be asked for: bound the memory
                del self._cache[next(iter(self._cache))]
            self._cache[book_id] = (answer, self.clock() + ttl)
        return answer

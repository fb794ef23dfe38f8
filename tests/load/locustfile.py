"""A realistic user mix against books, shop and chat.

    Browser (6)  pages through the catalogue (filters by author or title words), reads books and
                 their chat rooms
    Chatter (2)  reads a room, posts to it, and follows it live for a moment over SSE: the time
                 from posting to receiving the message on the stream is "chat SSE delivery"
    Buyer   (2)  places orders with an Idempotency-Key (sometimes sending it twice, as a client
                 retrying would), reads them back, cancels about half

Targets come from the environment (defaults: the `make dev` / compose host ports)::

    LOAD_BOOKS_URL=http://127.0.0.1:8001 LOAD_SHOP_URL=... LOAD_CHAT_URL=...

plus LOAD_BOOKS_TOKEN (or LOAD_BOOKS_TOKEN_FILE), a catalog:write token for adding the buyers'
books. Headless through tests/load/run.py (`make load`, which mints one), or with the web UI::

    LOAD_BOOKS_TOKEN=$(make -s token) uv run locust -f tests/load/locustfile.py   # :8089

At test start a few books with a large stock are created for the buyers, so that orders measure
the saga and not an empty shelf; the seeded catalogue is what browsers read.
"""

from __future__ import annotations

import os
import random
import secrets
import time
import uuid
from pathlib import Path
from typing import Any

import requests
from locust import HttpUser, between, events, task
from locust.env import Environment

BOOKS = os.environ.get("LOAD_BOOKS_URL", "http://127.0.0.1:8001").rstrip("/")
SHOP = os.environ.get("LOAD_SHOP_URL", "http://127.0.0.1:8002").rstrip("/")
CHAT = os.environ.get("LOAD_CHAT_URL", "http://127.0.0.1:8003").rstrip("/")
# books' writes need a catalog:write token: `make token` prints one (tests/load/run.py mints it);
# LOAD_BOOKS_TOKEN_FILE names a file holding it (compose mounts one).
BOOKS_TOKEN = os.environ.get("LOAD_BOOKS_TOKEN") or (
    Path(os.environ["LOAD_BOOKS_TOKEN_FILE"]).read_text().strip()
    if os.environ.get("LOAD_BOOKS_TOKEN_FILE")
    else ""
)
STOCKED_BOOKS = 5
SSE_WAIT_SECONDS = 5.0
AUTHORS = ["Frank Herbert", "George Orwell", "Jane Austen", "Isaac Asimov", "Nobody Known"]
WORDS = ["the", "world", "dune", "road", "gatsby", "foundation"]

catalogue: list[int] = []  # ids the users pick from, filled at test start
stocked: list[int] = []  # books with a large stock, for the buyers


@events.test_start.add_listener
def prepare(environment: Environment, **_: Any) -> None:
    """Learns the catalogue and adds the buyers' well-stocked books."""
    catalogue.clear()
    stocked.clear()
    with requests.Session() as client:
        listed = client.get(f"{BOOKS}/books", params={"limit": 100}, timeout=10)
        listed.raise_for_status()
        catalogue.extend(book["id"] for book in listed.json()["items"])
        for number in range(STOCKED_BOOKS):
            created = client.post(
                f"{BOOKS}/books",
                json={
                    "isbn": "979" + "".join(secrets.choice("0123456789") for _ in range(10)),
                    "title": f"Load test volume {number + 1}",
                    "author": "Locust",
                    "price": f"{random.randint(5, 40)}.{random.randint(0, 99):02d}",
                    "stock": 1_000_000,
                },
                headers={"Authorization": f"Bearer {BOOKS_TOKEN}"},
                timeout=10,
            )
            if created.status_code in (401, 403):
                raise SystemExit(
                    f"books refused to add the buyers' books ({created.status_code}): set "
                    "LOAD_BOOKS_TOKEN to a token from `make token SCOPE=catalog:write`"
                )
            created.raise_for_status()
            stocked.append(created.json()["id"])
    catalogue.extend(stocked)


class BookshopUser(HttpUser):
    abstract = True
    host = BOOKS  # every request below names its full URL; this only satisfies the web UI
    wait_time = between(0.5, 2.0)

    def book(self) -> int:
        return random.choice(catalogue)


class Browser(BookshopUser):
    weight = 6

    @task(4)
    def page_through_catalogue(self) -> None:
        offset = 0
        for _ in range(random.randint(1, 3)):
            response = self.client.get(
                f"{BOOKS}/books?limit=5&offset={offset}", name="books GET /books"
            )
            next_offset = response.json().get("next_offset") if response.ok else None
            if next_offset is None:
                return
            offset = next_offset

    @task(2)
    def filter_catalogue(self) -> None:
        if random.random() < 0.5:
            query = f"author={random.choice(AUTHORS).replace(' ', '%20')}"
        else:
            query = f"q={random.choice(WORDS)}"
        self.client.get(f"{BOOKS}/books?{query}&limit=10", name="books GET /books?filter")

    @task(4)
    def read_book(self) -> None:
        book = self.book()
        self.client.get(f"{BOOKS}/books/{book}", name="books GET /books/{book_id}")
        if random.random() < 0.5:
            self.client.get(
                f"{CHAT}/rooms/book-{book}/messages?limit=20",
                name="chat GET /rooms/{room}/messages",
            )


class Chatter(BookshopUser):
    weight = 2

    @task(3)
    def read_and_post(self) -> None:
        room = f"book-{self.book()}"
        self.client.get(f"{CHAT}/rooms/{room}", name="chat GET /rooms/{room}")
        self.client.get(
            f"{CHAT}/rooms/{room}/messages?limit=20", name="chat GET /rooms/{room}/messages"
        )
        self.post(room, f"Loving this one ({uuid.uuid4().hex[:6]})")

    @task(1)
    def follow_briefly(self) -> None:
        """Opens the room's event stream, posts, and times the message's arrival on it."""
        room = f"book-{self.book()}"
        stream = self.client.get(
            f"{CHAT}/rooms/{room}/events",
            name="chat GET /rooms/{room}/events (open)",
            stream=True,
            timeout=SSE_WAIT_SECONDS,
        )
        try:
            if not stream.ok:
                return
            text = f"live {uuid.uuid4().hex}"
            posted = time.perf_counter()
            self.post(room, text)
            delivered = self._wait_for(stream, text)
            events.request.fire(
                request_type="SSE",
                name="chat SSE delivery",
                response_time=(time.perf_counter() - posted) * 1000,
                response_length=0,
                exception=None if delivered else TimeoutError("message not delivered"),
                context={},
            )
        finally:
            stream.close()

    def post(self, room: str, text: str) -> None:
        self.client.post(
            f"{CHAT}/rooms/{room}/messages",
            json={"author": f"reader-{random.randint(1, 99)}", "text": text},
            name="chat POST /rooms/{room}/messages",
        )

    @staticmethod
    def _wait_for(stream: Any, text: str) -> bool:
        deadline = time.monotonic() + SSE_WAIT_SECONDS
        try:
            for line in stream.iter_lines(decode_unicode=True):
                if line and line.startswith("data:") and text in line:
                    return True
                if time.monotonic() > deadline:
                    return False
        except Exception:  # a read timeout or a closed stream: not delivered
            return False
        return False


class Buyer(BookshopUser):
    weight = 2

    @task
    def order_and_maybe_cancel(self) -> None:
        items = [
            {"book_id": book, "quantity": random.randint(1, 3)}
            for book in random.sample(stocked, random.choice([1, 1, 2]))
        ]
        key = f"load-{uuid.uuid4()}"
        response = self.client.post(
            f"{SHOP}/orders",
            json={"items": items},
            headers={"Idempotency-Key": key},
            name="shop POST /orders",
        )
        if response.status_code != 201:
            return
        order_id = response.json()["id"]
        if random.random() < 0.2:  # a client retrying: the same order again, never a second
            self.client.post(
                f"{SHOP}/orders",
                json={"items": items},
                headers={"Idempotency-Key": key},
                name="shop POST /orders (replay)",
            )
        self.client.get(f"{SHOP}/orders/{order_id}", name="shop GET /orders/{order_id}")
        if random.random() < 0.5:
            self.client.post(
                f"{SHOP}/orders/{order_id}/cancel", name="shop POST /orders/{order_id}/cancel"
            )
        if random.random() < 0.3:
            self.client.get(f"{SHOP}/orders?limit=10", name="shop GET /orders")

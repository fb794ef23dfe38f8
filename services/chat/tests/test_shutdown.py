"""SIGTERM with followers connected: streams are ended at shutdown, not waited for."""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx

DRAIN_SECONDS = 3.0
GRACE_SECONDS = 10.0  # a stream left open would hold the process this long


@dataclass
class Follower:
    base_url: str
    room: str
    connected: threading.Event
    ended_at: float | None = None
    error: str | None = None

    def run(self) -> None:
        try:
            with httpx.stream(
                "GET", f"{self.base_url}/rooms/{self.room}/events", timeout=30
            ) as response:
                assert response.status_code == 200, response.status_code
                for line in response.iter_lines():
                    if line == ": following":
                        self.connected.set()
            self.ended_at = time.monotonic()
        except Exception as exc:  # reported by the test
            self.error = f"{type(exc).__name__}: {exc}"
            self.connected.set()


def start_follower(base_url: str, room: str) -> tuple[Follower, threading.Thread]:
    follower = Follower(base_url, room, threading.Event())
    thread = threading.Thread(target=follower.run, daemon=True)
    thread.start()
    assert follower.connected.wait(10), "the follower did not connect"
    assert follower.error is None, follower.error
    return follower, thread


def test_sigterm_ends_live_streams_and_exits_cleanly(
    chat_processes: Any, database_url: str, fake_books: Any
) -> None:
    chat = chat_processes.start(
        database_url,
        fake_books.base_url,
        SHUTDOWN__DRAIN_SECONDS=str(DRAIN_SECONDS),
        SHUTDOWN__GRACE_SECONDS=str(GRACE_SECONDS),
    )
    followers = [start_follower(chat.url, f"book-{n % 3 + 1}") for n in range(6)]

    signalled = time.monotonic()
    chat.signal(signal.SIGTERM)

    ready = httpx.get(f"{chat.url}/health/ready", timeout=5)  # still listening: draining
    assert ready.status_code == 503
    assert ready.json()["checks"]["shutdown"]["status"] == "DOWN"
    for follower, thread in followers:
        thread.join(5)
        assert follower.error is None, follower.error  # ended cleanly, not cut off
        assert follower.ended_at is not None
        # Ended when shutdown began, not when the drain closed the listener (nor at the grace).
        assert follower.ended_at - signalled < DRAIN_SECONDS, "streams must end at once"

    # A browser reconnecting to this replica during the drain gets a stream that ends at once
    # (it reconnects elsewhere) instead of one that holds the process until the grace timeout.
    late, thread = start_follower(chat.url, "book-1")
    thread.join(5)
    assert late.error is None, late.error
    assert late.ended_at is not None, "a stream opened during the drain was left open"

    assert chat.wait_exit(GRACE_SECONDS) == 0, chat.log_tail()
    elapsed = time.monotonic() - signalled
    assert elapsed < DRAIN_SECONDS + 4, f"exit took {elapsed:.1f}s"
    assert "service stopped" in chat.log_text()

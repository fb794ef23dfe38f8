"""Within one room, message ids become visible in id order, so ``Last-Event-ID`` can resume.

If two posts to a room got ids 7 and 8 but 8 committed first, a follower that saw 8 and
resumed after it would never get 7. Posts to one room therefore commit one at a time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from chassis.migrations import upgrade
from chat import domain, persistence
from chat.books_api import BookDirectory
from chat.live import Broker, LiveFeed
from chat.settings import SERVICE_DIR

# A post that does not wait for the room's lock finishes in milliseconds; one that waits
# stays blocked for as long as the first transaction is held open.
BLOCKED_SECONDS = 1.5
FINISH_SECONDS = 30.0
NO_BOOKS = cast(BookDirectory, None)  # posts to a free room never ask books


@pytest.fixture
def sessions(postgres_url: str) -> Iterator[sessionmaker[Session]]:
    upgrade(SERVICE_DIR / "migrations", postgres_url)
    engine: Engine = create_engine(postgres_url)
    yield sessionmaker(engine, expire_on_commit=False)
    engine.dispose()


def held_at_commit(session: Session) -> tuple[threading.Event, threading.Event]:
    """Makes ``session.commit()`` wait: returns (reached the commit, let it commit)."""
    reached, release = threading.Event(), threading.Event()
    commit = session.commit

    def held_commit() -> None:
        reached.set()
        assert release.wait(FINISH_SECONDS)
        commit()

    session.commit = held_commit  # type: ignore[method-assign]
    return reached, release


def poster(
    sessions: sessionmaker[Session], session: Session | None = None
) -> Callable[[str], dict[str, Any]]:
    feed = LiveFeed(Broker(buffer=8, max_followers=8), postgres=True)

    def post(text: str) -> dict[str, Any]:
        with session or sessions() as current:
            return domain.post_message(
                current, NO_BOOKS, feed, room="lobby", author="ann", text=text
            )

    return post


@pytest.mark.postgres
def test_a_second_post_to_a_room_waits_until_the_first_commits(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        persistence.insert_room(session, name="lobby", title="Lobby", kind="free", book_id=None)
    first_session = sessions()
    reached, release = held_at_commit(first_session)

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(poster(sessions, first_session), "first")
        assert reached.wait(FINISH_SECONDS), "the first post never reached its commit"
        second = pool.submit(poster(sessions), "second")
        try:
            # Without the room lock the second post would insert and commit at once: a larger
            # id visible before a smaller one.
            assert not _finishes(second, BLOCKED_SECONDS), (
                "the second post committed while the first was still open"
            )
        finally:
            release.set()
        first_id = first.result(FINISH_SECONDS)["id"]
        second_id = second.result(FINISH_SECONDS)["id"]

    assert first_id < second_id
    with sessions() as session:
        stored = persistence.fetch_after(session, room="lobby", after=0, limit=10)
    assert [m["text"] for m in stored] == ["first", "second"]


def _finishes(future: Any, seconds: float) -> bool:
    try:
        future.result(seconds)
    except TimeoutError:
        return False
    return True


def test_a_follower_gets_concurrent_posts_gap_free_and_in_order_on_sqlite(
    chat: Any, follow_while_posting: Any
) -> None:
    received, posted = follow_while_posting(chat.url, "book-1", [chat.url], posters=4, each=10)
    assert received == posted

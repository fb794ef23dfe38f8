"""The chat app factory: settings -> chassis -> API -> books directory and live feed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.trace import SpanProcessor
from sqlalchemy.engine import make_url

from chassis import Service
from chassis.db import Database
from chat import persistence
from chat.books_api import BookDirectory
from chat.live import Broker, LiveFeed, PgListener
from chat.settings import SERVICE_DIR, ChatSettings, load

PAGE = SERVICE_DIR / "web" / "index.html"


@dataclass(frozen=True)
class ChatComponents:
    settings: ChatSettings
    books: BookDirectory
    broker: Broker
    feed: LiveFeed
    page: bytes


def create_service(
    settings: ChatSettings | None = None, *, span_processors: Iterable[SpanProcessor] = ()
) -> Service:
    from chat import handlers  # handlers import this module for ChatComponents

    settings = settings or load()
    service = Service(
        settings,
        spec=SERVICE_DIR / "openapi.yaml",
        handlers=handlers,
        span_processors=span_processors,
    )
    postgres = service.database.dialect == "postgresql"
    broker = Broker(buffer=settings.live.follower_buffer, max_followers=settings.live.max_followers)
    components = ChatComponents(
        settings=settings,
        books=BookDirectory(
            service.client("books"),
            found_seconds=settings.book_cache.found_seconds,
            missing_seconds=settings.book_cache.missing_seconds,
            catalogue_seconds=settings.book_cache.catalogue_seconds,
            catalogue_max_books=settings.book_cache.catalogue_max_books,
        ),
        broker=broker,
        feed=LiveFeed(broker, postgres=postgres),
        page=PAGE.read_bytes(),
    )
    service.provide(components)
    service.on_startup(lambda _: broker.bind(asyncio.get_running_loop()))
    service.shutdown.on_begin(broker.close)  # streams end at once; clients reconnect elsewhere
    if postgres:
        listener = PgListener(
            _psycopg_dsn(service.database.url),
            DatabaseMessages(service.database),
            broker,
            share_seconds=settings.live.presence_share_seconds,
        )
        service.add_check(listener)
        service.on_startup(lambda _: listener.start())
        # Off the event loop: the listener may be waiting for the loop (Broker.positions).
        service.on_shutdown(lambda _: asyncio.to_thread(listener.stop))
    return service


def _psycopg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class DatabaseMessages:
    """The listener's reads (``chat.live.StoredMessages``), each in a short session."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def one(self, message_id: int) -> dict[str, Any] | None:
        with self.database.session_scope() as session:
            return persistence.fetch_message(session, message_id=message_id)

    def after(self, room: str, *, after: int, limit: int) -> list[dict[str, Any]]:
        with self.database.session_scope() as session:
            return persistence.fetch_after(session, room=room, after=after, limit=limit)

"""chat's settings: the chassis sections plus live-stream and cache tuning."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from chassis import Section, Settings, load_settings

SERVICE_DIR = Path(__file__).parent


class LiveSection(Section):
    heartbeat_seconds: float = Field(default=15.0, gt=0)
    # Messages a slow follower may lag behind before its stream is closed (it reconnects).
    follower_buffer: int = Field(default=256, ge=1)
    max_followers: int = Field(default=2000, ge=1)
    # Messages one stream catches up from the database before it ends (bounds its memory);
    # the client reconnects with the last id it got and continues.
    catch_up_limit: int = Field(default=1000, ge=1)
    # How often replicas (on PostgreSQL) repeat who follows their rooms to one another; a
    # replica's followers stop counting elsewhere three times this after it last did.
    presence_share_seconds: float = Field(default=10.0, gt=0, le=3600)


class BookCacheSection(Section):
    found_seconds: float = Field(default=60.0, ge=0)
    missing_seconds: float = Field(default=5.0, ge=0)
    # The catalogue (every book's title, for the room listing): how long it is reused, and
    # how many books it holds at most (the oldest; books serves 100 a call).
    catalogue_seconds: float = Field(default=60.0, ge=0)
    catalogue_max_books: int = Field(default=1000, ge=1, le=100_000)


class ChatSettings(Settings):
    live: LiveSection = LiveSection()
    book_cache: BookCacheSection = BookCacheSection()


def load() -> ChatSettings:
    return load_settings(ChatSettings, SERVICE_DIR)

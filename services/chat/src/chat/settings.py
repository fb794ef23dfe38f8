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


class BookCacheSection(Section):
    found_seconds: float = Field(default=60.0, ge=0)
    missing_seconds: float = Field(default=5.0, ge=0)


class ChatSettings(Settings):
    live: LiveSection = LiveSection()
    book_cache: BookCacheSection = BookCacheSection()


def load() -> ChatSettings:
    return load_settings(ChatSettings, SERVICE_DIR)

"""books' settings: the chassis sections are all it needs."""

from __future__ import annotations

from pathlib import Path

from chassis import Settings, load_settings

SERVICE_DIR = Path(__file__).parent


class BooksSettings(Settings):
    pass


def load() -> BooksSettings:
    return load_settings(BooksSettings, SERVICE_DIR)

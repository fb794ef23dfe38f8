"""Shapes every service answers the same way: timestamps and offset pages."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any


def rfc3339(value: datetime) -> str:
    """RFC 3339 in UTC (``...Z``); SQLite hands back naive datetimes that were stored as UTC."""
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")


def offset_page(items: Sequence[Any], *, total: int, limit: int, offset: int) -> dict[str, Any]:
    """``{items, total, limit, offset, next_offset}``; ``next_offset`` is None on the last page."""
    following = offset + len(items)
    return {
        "items": list(items),
        "total": total,
        "limit": limit,
        "offset": offset,
        "next_offset": following if following < total else None,
    }

"""Handlers of the tiny test service, bound by operationId."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import sqlalchemy as sa

from chassis import ConflictError, NotFoundError, current_service, current_session

SCHEMA = "CREATE TABLE IF NOT EXISTS item (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)"


def create_item(body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    session = current_session()
    exists = session.execute(sa.text("SELECT 1 FROM item WHERE name = :n"), {"n": body["name"]})
    if exists.first() is not None:
        raise ConflictError(f"name: an item named {body['name']!r} exists already")
    session.execute(sa.text("INSERT INTO item (name) VALUES (:n)"), {"n": body["name"]})
    if body.get("fail_after_insert"):
        raise RuntimeError("failed after the insert")
    item_id = session.execute(sa.text("SELECT id FROM item WHERE name = :n"), {"n": body["name"]})
    return {"id": item_id.scalar_one(), "name": body["name"]}, 201


def count_items() -> dict[str, int]:
    return {"count": current_session().execute(sa.text("SELECT count(*) FROM item")).scalar_one()}


def get_item(item_id: int) -> dict[str, Any]:
    row = current_session().execute(
        sa.text("SELECT id, name FROM item WHERE id = :i"), {"i": item_id}
    )
    found = row.first()
    if found is None:
        raise NotFoundError(f"item_id: no item {item_id}")
    return {"id": found.id, "name": found.name}


def boom() -> None:
    raise RuntimeError("internal detail: password=hunter2 SELECT * FROM item")


def where_am_i() -> dict[str, Any]:
    session = current_session()
    return {
        "thread": threading.current_thread().name,
        "in_session": session.execute(sa.text("SELECT 1")).scalar_one() == 1,
        "service": current_service().name,
    }


async def async_hello() -> dict[str, Any]:
    await asyncio.sleep(0)
    return {"thread": threading.current_thread().name, "service": current_service().name}


def slow(seconds: float = 1) -> dict[str, float]:
    time.sleep(seconds)
    return {"slept": seconds}


async def upload(body: bytes) -> dict[str, int]:
    return {"size": len(body)}

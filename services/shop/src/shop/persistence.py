"""shop's tables and every SQL statement it runs. Functions take the session explicitly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import Executable, Update

from chassis.db import NAMING_CONVENTION

metadata = MetaData(naming_convention=NAMING_CONVENTION)

orders = Table(
    "orders",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("status", String(16), nullable=False, index=True),
    Column("total", Numeric(12, 2, asdecimal=True), nullable=False),
    # On a pending order, a reason means its saga gave up and is compensating: nobody may
    # confirm it any more.
    Column("reason", String(500)),
    # Runs of the saga: a retry after books was unavailable reserves under new ids (books
    # refuses reservations it saw released).
    Column("attempt", Integer, nullable=False, server_default="1"),
    Column("idempotency_key", String(100), unique=True),
    Column("fingerprint", String(64)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    CheckConstraint(
        "status IN ('pending', 'confirmed', 'rejected', 'cancelling', 'cancelled')",
        name="status_known",
    ),
)

order_items = Table(
    "order_items",
    metadata,
    Column("order_id", String(36), ForeignKey("orders.id", ondelete="CASCADE"), primary_key=True),
    Column("book_id", Integer, primary_key=True),
    Column("position", Integer, nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("unit_price", Numeric(10, 2, asdecimal=True), nullable=False),
    CheckConstraint("quantity > 0", name="quantity_positive"),
)


class DuplicateKey(Exception):
    """Another request already placed an order with this idempotency key."""


def now() -> datetime:
    return datetime.now(UTC)


def insert_pending(
    session: Session,
    *,
    order_id: str,
    items: list[dict[str, Any]],
    total: Decimal,
    idempotency_key: str | None,
    fingerprint: str,
) -> dict[str, Any]:
    """The new PENDING order, as :func:`fetch_order` would read it (RETURNING: no read back)."""
    stamp = now()
    try:
        with session.begin_nested():
            row = (
                session.execute(
                    insert(orders)
                    .values(
                        id=order_id,
                        status="pending",
                        total=total,
                        idempotency_key=idempotency_key,
                        fingerprint=fingerprint,
                        created_at=stamp,
                        updated_at=stamp,
                    )
                    .returning(*orders.c)
                )
                .mappings()
                .one()
            )
    except IntegrityError as exc:
        raise DuplicateKey from exc
    stored = session.execute(
        insert(order_items).returning(*_ITEM_FIELDS, sort_by_parameter_order=True),
        [{"order_id": order_id, "position": n, **item} for n, item in enumerate(items)],
    ).mappings()
    return {**row, "items": [dict(item) for item in stored]}


def fetch_order(session: Session, *, order_id: str) -> dict[str, Any] | None:
    row = session.execute(select(orders).where(orders.c.id == order_id)).mappings().first()
    if row is None:
        return None
    return {**row, "items": _items(session, [order_id])[order_id]}


def fetch_by_key(session: Session, *, idempotency_key: str) -> dict[str, Any] | None:
    order_id = session.execute(
        select(orders.c.id).where(orders.c.idempotency_key == idempotency_key)
    ).scalar_one_or_none()
    return fetch_order(session, order_id=order_id) if order_id else None


def fetch_page(
    session: Session, *, status: str | None, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    conditions = [orders.c.status == status] if status else []
    total = session.execute(
        select(func.count()).select_from(orders).where(*conditions)
    ).scalar_one()
    rows = session.execute(
        select(orders)
        .where(*conditions)
        .order_by(orders.c.created_at.desc(), orders.c.id)
        .limit(limit)
        .offset(offset)
    ).mappings()
    page = [dict(row) for row in rows]
    items = _items(session, [row["id"] for row in page])
    return [{**row, "items": items[row["id"]]} for row in page], total


def set_status(
    session: Session,
    *,
    order_id: str,
    status: str,
    reason: str | None = None,
    expected: str | None = None,
) -> bool:
    """Moves an order to ``status``; with ``expected``, only from that status (False if not)."""
    statement = update(orders).where(orders.c.id == order_id)
    if expected is not None:
        statement = statement.where(orders.c.status == expected)
    changed = _rows_changed(
        session, statement.values(status=status, reason=reason, updated_at=now())
    )
    return bool(changed)


def confirm(session: Session, *, order_id: str, attempt: int) -> datetime | None:
    """PENDING -> CONFIRMED for this run of the saga, unless one started compensating it; the
    order's new updated_at (None: not confirmed)."""
    changed = session.execute(
        _pending_run(order_id, attempt, compensating=False)
        .values(status="confirmed", updated_at=now())
        .returning(orders.c.updated_at)
    ).first()
    return None if changed is None else changed[0]


def start_compensating(session: Session, *, order_id: str, attempt: int, reason: str) -> bool:
    """Records why this run of a PENDING order is being compensated; False when it was
    confirmed, another saga started compensating it first, or a later run replaced it. From
    then on this run cannot be confirmed."""
    return _move_pending(session, order_id, attempt, compensating=False, reason=reason)


def finish_rejecting(session: Session, *, order_id: str, attempt: int) -> bool:
    """PENDING (compensating, this run) -> REJECTED, keeping its reason."""
    return _move_pending(session, order_id, attempt, compensating=True, status="rejected")


def retry(session: Session, *, order_id: str) -> bool:
    """A REJECTED order back to PENDING for another run of its saga, under new reservations."""
    changed = _rows_changed(
        session,
        update(orders)
        .where(orders.c.id == order_id, orders.c.status == "rejected")
        .values(status="pending", reason=None, attempt=orders.c.attempt + 1, updated_at=now()),
    )
    return bool(changed)


def _move_pending(
    session: Session, order_id: str, attempt: int, *, compensating: bool, **values: Any
) -> bool:
    changed = _rows_changed(
        session,
        _pending_run(order_id, attempt, compensating=compensating).values(
            **values, updated_at=now()
        ),
    )
    return bool(changed)


def _pending_run(order_id: str, attempt: int, *, compensating: bool) -> Update:
    """An UPDATE of a PENDING order only while it is on run ``attempt`` and is (or is not yet)
    compensating: a saga holding an older run of the order can never touch a newer one."""
    return update(orders).where(
        orders.c.id == order_id,
        orders.c.status == "pending",
        orders.c.attempt == attempt,
        orders.c.reason.is_not(None) if compensating else orders.c.reason.is_(None),
    )


def claim_stale(session: Session, *, status: str, older_than: timedelta) -> list[str]:
    """Orders in ``status`` nobody touched for ``older_than`` (a crashed or failed saga);
    claiming one refreshes its stamp so that two recovering processes never take the same."""
    cutoff = now() - older_than
    candidates = session.execute(
        select(orders.c.id).where(orders.c.status == status, orders.c.updated_at < cutoff)
    ).scalars()
    claimed = []
    for order_id in list(candidates):
        won = _rows_changed(
            session,
            update(orders)
            .where(
                orders.c.id == order_id,
                orders.c.status == status,
                orders.c.updated_at < cutoff,
            )
            .values(updated_at=now()),
        )
        if won:
            claimed.append(order_id)
    return claimed


# What an order's "items" hold, in this order.
_ITEM_FIELDS = (order_items.c.book_id, order_items.c.quantity, order_items.c.unit_price)


def _items(session: Session, order_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {order_id: [] for order_id in order_ids}
    if not order_ids:
        return grouped
    rows = session.execute(
        select(order_items)
        .where(order_items.c.order_id.in_(order_ids))
        .order_by(order_items.c.order_id, order_items.c.position)
    ).mappings()
    for row in rows:
        grouped[row["order_id"]].append(
            {
                "book_id": row["book_id"],
                "quantity": row["quantity"],
                "unit_price": row["unit_price"],
            }
        )
    return grouped


def _rows_changed(session: Session, statement: Executable) -> int:
    """How many rows an UPDATE or DELETE changed (for those, execute returns a CursorResult)."""
    return cast("CursorResult[Any]", session.execute(statement)).rowcount

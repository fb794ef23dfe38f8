"""Placing and cancelling orders: a saga over books' stock with compensation.

    place:   read prices -> record PENDING -> reserve each item
             all reserved              -> CONFIRMED (+ a best-effort notice to chat)
             books refused one         -> record the reason -> release every item -> REJECTED (409)
             books unavailable         -> record the reason -> release every item -> REJECTED (503)
             release impossible too    -> stays PENDING with its reason: recovery finishes it
    cancel:  CONFIRMED -> CANCELLING -> release every item -> CANCELLED (repeatable)

A process that dies mid-saga leaves a PENDING order; :mod:`shop.recovery` settles it. Every
books call is idempotent per reservation id, so settling twice does no harm, and books refuses
a reservation that arrives after its release, so a late one cannot leak stock. Confirming and
starting to compensate both need a PENDING order without a reason: whichever of two sagas
(the live one and recovery) gets there first decides, and the other follows.
"""

from __future__ import annotations

import functools
import hashlib
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from chassis import (
    CircuitOpenError,
    ConflictError,
    DependencyError,
    NotFoundError,
    ServiceClient,
    ServiceUnavailable,
    UnprocessableError,
    get_logger,
)
from chassis.errors import ProblemError
from shop import books_api, persistence
from shop.books_api import Refused

log = get_logger("shop.orders")
CRASH_EXIT_CODE = 137


@dataclass(frozen=True)
class OrderRequest:
    items: list[tuple[int, int]]  # (book_id, quantity)
    idempotency_key: str | None = None

    @property
    def fingerprint(self) -> str:
        canonical = ";".join(f"{book}x{quantity}" for book, quantity in sorted(self.items))
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Settlement:
    status: str  # confirmed, rejected, or pending when even compensation failed
    reason: str | None = None
    retry_after_seconds: float | None = None
    confirmed_at: datetime | None = None  # set when this saga confirmed the order


@dataclass(frozen=True)
class Placed:
    order: dict[str, Any]
    replayed: bool


def place_order(
    session: Session,
    books: ServiceClient,
    request: OrderRequest,
    *,
    replay_wait_seconds: float,
    saga_budget_seconds: float,
    crash_after_reserving: bool = False,
) -> Placed:
    _refuse_duplicate_books(request)
    saga = functools.partial(
        _run_saga, session, books, budget=saga_budget_seconds, crash=crash_after_reserving
    )
    if request.idempotency_key:
        earlier = persistence.fetch_by_key(session, idempotency_key=request.idempotency_key)
        if earlier is not None:
            return _replay(session, earlier, request, replay_wait_seconds, saga)
    items: list[dict[str, Any]] = [
        {"book_id": book_id, "quantity": quantity, "unit_price": price}
        for position, (book_id, quantity) in enumerate(request.items)
        for price in [books_api.price_of(books, book_id=book_id, position=position)]
    ]
    order_id = str(uuid.uuid4())
    try:
        order = persistence.insert_pending(
            session,
            order_id=order_id,
            items=items,
            total=sum((i["unit_price"] * i["quantity"] for i in items), Decimal("0")),
            idempotency_key=request.idempotency_key,
            fingerprint=request.fingerprint,
        )
        session.commit()  # the PENDING record exists before any stock is touched
    except persistence.DuplicateKey:
        session.rollback()  # a concurrent request with the same key won the race
        assert request.idempotency_key is not None
        earlier = persistence.fetch_by_key(session, idempotency_key=request.idempotency_key)
        assert earlier is not None
        return _replay(session, earlier, request, replay_wait_seconds, saga)
    return saga(order)


def _run_saga(
    session: Session, books: ServiceClient, order: dict[str, Any], *, budget: float, crash: bool
) -> Placed:
    outcome = settle(
        session, books, order=order, budget_seconds=budget, crash_after_reserving=crash
    )
    if outcome.confirmed_at is not None:  # only status and updated_at changed
        return Placed(
            {**order, "status": "confirmed", "updated_at": outcome.confirmed_at}, replayed=False
        )
    if outcome.status == "confirmed":  # another saga confirmed it
        return Placed(_fetch(session, order["id"]), replayed=False)
    raise _rejection(order["id"], outcome)


def settle(
    session: Session,
    books: ServiceClient,
    *,
    order: dict[str, Any],
    budget_seconds: float,
    crash_after_reserving: bool = False,
    wait_out_trouble: bool = False,
) -> Settlement:
    """Reserves every item, then records CONFIRMED, or compensates and records REJECTED.

    Leaves the order PENDING (for recovery) when books cannot even take the releases, or, with
    ``wait_out_trouble`` (recovery, which has no client waiting), while books is unavailable:
    the next round completes it then, rather than rejecting an order books never refused.
    No reservation starts after ``budget_seconds``: recovery only touches orders pending for
    twice that, so a live saga and recovery rarely work on the same order at once, and when
    they do the order's status decides which of them wins.
    """
    order_id, attempt = order["id"], order["attempt"]
    reservation = books_api.reservation_id(order_id, attempt)
    refusal: Refused | None = None
    trouble: ProblemError | None = None
    stop_at = time.monotonic() + budget_seconds
    for item in order["items"]:
        if time.monotonic() > stop_at:
            trouble = ServiceUnavailable("books answered too slowly to finish the order")
            break
        try:
            refusal = books_api.reserve(
                books, reservation=reservation, book_id=item["book_id"], quantity=item["quantity"]
            )
        except (DependencyError, CircuitOpenError) as exc:
            trouble = exc
        if refusal or trouble:
            break
    if crash_after_reserving:
        log.warning("crashing on purpose after reserving (orders.crash_after_reserving)")
        os._exit(CRASH_EXIT_CODE)
    if wait_out_trouble and isinstance(trouble, DependencyError | CircuitOpenError):
        return Settlement("pending", f"books_unavailable: {trouble.detail}")
    if refusal is None and trouble is None:
        confirmed_at = persistence.confirm(session, order_id=order_id, attempt=attempt)
        if confirmed_at is not None:
            session.commit()
            return Settlement("confirmed", confirmed_at=confirmed_at)
        session.rollback()
        return _follow(session, books, order_id, attempt)  # another saga is compensating it
    retry_after = trouble.headers.get("Retry-After") if trouble else None
    if refusal is not None:
        reason = f"out_of_stock: {refusal.reason}"
    else:
        reason = f"books_unavailable: {trouble.detail if trouble else 'unknown'}"
    if not persistence.start_compensating(
        session, order_id=order_id, attempt=attempt, reason=reason
    ):
        session.rollback()
        return _follow(session, books, order_id, attempt)  # another saga settled it first
    session.commit()
    outcome = compensate(session, books, order_id, attempt)
    if outcome.status == "rejected" and retry_after:
        return Settlement("rejected", outcome.reason, float(retry_after))
    return outcome


def compensate(session: Session, books: ServiceClient, order_id: str, attempt: int) -> Settlement:
    """Releases every item of run ``attempt`` of a compensating PENDING order, then records it
    REJECTED. Does nothing to an order that has moved on (confirmed, rejected, a later run).

    Every item, not only those this saga reserved: another saga may have reserved the rest,
    and a release of what was never reserved makes books refuse it later.
    """
    order = _fetch(session, order_id)
    if not _compensating(order, attempt):
        return _settlement_of(order, attempt)
    reservation = books_api.reservation_id(order_id, attempt)
    for item in order["items"]:
        try:
            books_api.release(books, reservation=reservation, book_id=item["book_id"])
        except (DependencyError, CircuitOpenError):
            log.warning("compensation incomplete; recovery will finish it", order_id=order_id)
            return Settlement(
                "pending", "books_unavailable: the order will be settled automatically"
            )
    if not persistence.finish_rejecting(session, order_id=order_id, attempt=attempt):
        session.rollback()
        return _settlement_of(_fetch(session, order_id), attempt)
    session.commit()
    return Settlement("rejected", order["reason"])


def _follow(session: Session, books: ServiceClient, order_id: str, attempt: int) -> Settlement:
    """The outcome another saga of the same run decided; helps it compensate if it is."""
    order = _fetch(session, order_id)
    if _compensating(order, attempt):
        return compensate(session, books, order_id, attempt)
    return _settlement_of(order, attempt)


def _compensating(order: dict[str, Any], attempt: int) -> bool:
    return order["status"] == "pending" and order["attempt"] == attempt and bool(order["reason"])


def _settlement_of(order: dict[str, Any], attempt: int) -> Settlement:
    """How run ``attempt`` of the order ended, as far as the order row tells."""
    if order["attempt"] != attempt:  # rejected, then retried by the client as a new run
        return Settlement("rejected", "books_unavailable: this run of the order was replaced")
    return Settlement(order["status"], order["reason"])


def cancel_order(session: Session, books: ServiceClient, *, order_id: str) -> dict[str, Any]:
    """CONFIRMED -> CANCELLING (committed) -> release every item -> CANCELLED.

    The order stops claiming its stock before the first release, so a cancel that books
    interrupts never leaves a "confirmed" order whose copies are back on sale; repeating the
    cancel, or recovery, finishes the releases (they are idempotent).
    """
    order = _fetch(session, order_id)
    if order["status"] == "cancelled":
        return order
    if order["status"] == "confirmed":
        persistence.set_status(
            session, order_id=order_id, status="cancelling", expected="confirmed"
        )
        session.commit()
        order = _fetch(session, order_id)
    if order["status"] not in ("cancelling", "cancelled"):
        raise ConflictError(
            f"status: order {order_id} is {order['status']}; only confirmed ones can be cancelled",
            field="status",
        )
    finish_cancelling(session, books, order)
    return _fetch(session, order_id)


def finish_cancelling(session: Session, books: ServiceClient, order: dict[str, Any]) -> None:
    """Releases every item of a CANCELLING order, then records it CANCELLED."""
    reservation = books_api.reservation_id(order["id"], order["attempt"])
    for item in order["items"]:
        books_api.release(books, reservation=reservation, book_id=item["book_id"])
    persistence.set_status(session, order_id=order["id"], status="cancelled", expected="cancelling")
    session.commit()


def get_order(session: Session, *, order_id: str) -> dict[str, Any]:
    return _fetch(session, order_id)


def list_orders(
    session: Session, *, status: str | None, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    return persistence.fetch_page(session, status=status, limit=limit, offset=offset)


def _replay(
    session: Session,
    earlier: dict[str, Any],
    request: OrderRequest,
    wait_seconds: float,
    saga: Callable[[dict[str, Any]], Placed],
) -> Placed:
    """The same key gives the same order. A retry after books was unavailable runs that same
    order's saga again under new reservation ids (the old ones were released); an
    out-of-stock rejection is answered again as the 409 it was."""
    if earlier["fingerprint"] != request.fingerprint:
        raise UnprocessableError(
            "Idempotency-Key: this key was already used for a different order",
            field="Idempotency-Key",
            order_id=earlier["id"],
        )
    order = _settled(session, earlier, wait_seconds)
    reason = order["reason"] or ""
    if order["status"] == "rejected" and reason.startswith("books_unavailable"):
        if persistence.retry(session, order_id=order["id"]):
            session.commit()
            return saga(_fetch(session, order["id"]))
        order = _settled(session, _fetch(session, order["id"]), wait_seconds)
    if order["status"] == "rejected":
        raise _rejection(order["id"], Settlement("rejected", reason))
    return Placed(order, replayed=True)


def _settled(session: Session, order: dict[str, Any], wait_seconds: float) -> dict[str, Any]:
    """The order once no other request is settling it (or as it is when the wait ends)."""
    deadline = time.monotonic() + wait_seconds
    while order["status"] == "pending" and time.monotonic() < deadline:
        session.rollback()  # end the snapshot so the other request's commit becomes visible
        time.sleep(0.05)
        order = _fetch(session, order["id"])
    return order


def _refuse_duplicate_books(request: OrderRequest) -> None:
    seen: set[int] = set()
    for position, (book_id, _) in enumerate(request.items):
        if book_id in seen:
            raise UnprocessableError(
                f"items[{position}].book_id: book {book_id} is already in the order; "
                "raise its quantity instead",
                field=f"items[{position}].book_id",
            )
        seen.add(book_id)


def _rejection(order_id: str, outcome: Settlement) -> ProblemError:
    reason = outcome.reason or "rejected"
    if reason.startswith("out_of_stock"):
        return ConflictError(reason, title="Order rejected", order_id=order_id)
    return ServiceUnavailable(
        reason,
        title="Order rejected" if outcome.status == "rejected" else "Order not settled yet",
        retry_after_seconds=outcome.retry_after_seconds,
        order_id=order_id,
        order_status=outcome.status,
    )


def _fetch(session: Session, order_id: str) -> dict[str, Any]:
    order = persistence.fetch_order(session, order_id=order_id)
    if order is None:
        raise NotFoundError(f"order_id: no order {order_id}", field="order_id")
    return order

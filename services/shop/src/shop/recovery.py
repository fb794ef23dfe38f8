"""Settles orders a crashed process left PENDING, and finishes cancellations books
interrupted (CANCELLING): on start-up, then every interval.

Settling re-runs the saga: books' reservations are idempotent per reservation id, so an order
whose stock was already reserved is completed, and one that cannot be completed is compensated.
An order whose saga had already given up (it has a reason) is only compensated.
"""

from __future__ import annotations

import threading
from datetime import timedelta

from chassis import CircuitOpenError, DependencyError, ServiceClient, get_logger
from chassis.db import Database
from shop import domain, persistence

log = get_logger("shop.recovery")


def recover_pending(database: Database, books: ServiceClient, *, older_than: float) -> int:
    """Settles every stale pending order and finishes every stale cancellation; returns how
    many orders it settled."""
    stale = timedelta(seconds=older_than)
    with database.session_scope() as session:
        pending = persistence.claim_stale(session, status="pending", older_than=stale)
        cancelling = persistence.claim_stale(session, status="cancelling", older_than=stale)
    settled = 0
    for order_id in pending:
        with database.session_scope() as session:
            order = persistence.fetch_order(session, order_id=order_id)
            if order is None or order["status"] != "pending":
                continue
            if order["reason"]:  # its saga had given up: finish the compensation only
                outcome = domain.compensate(session, books, order_id, order["attempt"])
            else:
                outcome = domain.settle(
                    session,
                    books,
                    order=order,
                    budget_seconds=older_than / 2,
                    wait_out_trouble=True,
                )
            log.info("pending order settled", order_id=order_id, status=outcome.status)
            settled += outcome.status != "pending"
    for order_id in cancelling:
        try:
            with database.session_scope() as session:
                order = persistence.fetch_order(session, order_id=order_id)
                if order is None or order["status"] != "cancelling":
                    continue
                domain.finish_cancelling(session, books, order)
        except (DependencyError, CircuitOpenError) as exc:
            log.info("cancellation still unfinished", order_id=order_id, reason=exc.detail)
            continue
        log.info("cancellation finished", order_id=order_id)
        settled += 1
    return settled


class RecoveryLoop:
    """A daemon thread that runs :func:`recover_pending` now and every ``interval`` seconds."""

    def __init__(
        self, database: Database, books: ServiceClient, *, interval: float, older_than: float
    ) -> None:
        self.database = database
        self.books = books
        self.interval = interval
        self.older_than = older_than
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="shop-recovery", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                recover_pending(self.database, self.books, older_than=self.older_than)
            except Exception:
                log.exception("recovery round failed; next round in the usual interval")
            self._stop.wait(self.interval)

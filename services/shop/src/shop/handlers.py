"""HTTP handlers: parse -> call the domain -> shape the response. Bound by operationId."""

from __future__ import annotations

from typing import Any

import connexion

from chassis import current_service, current_session
from chassis.responses import offset_page, rfc3339
from shop import domain
from shop.app import ShopComponents
from shop.domain import OrderRequest


def place_order(body: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, str]]:
    parts = current_service().component(ShopComponents)
    request = OrderRequest(
        items=[(item["book_id"], item["quantity"]) for item in body["items"]],
        idempotency_key=connexion.request.headers.get("idempotency-key"),
    )
    placed = domain.place_order(
        current_session(),
        parts.books,
        request,
        replay_wait_seconds=parts.settings.orders.replay_wait_seconds,
        saga_budget_seconds=parts.settings.orders.pending_grace_seconds / 2,
        crash_after_reserving=parts.settings.orders.crash_after_reserving,
    )
    order = placed.order
    if not placed.replayed:
        parts.notices.order_confirmed(order)
    headers = {"Location": f"/orders/{order['id']}"}
    if placed.replayed:
        headers["Idempotent-Replayed"] = "true"
    return order_json(order), 200 if placed.replayed else 201, headers


def get_order(order_id: str) -> dict[str, Any]:
    return order_json(domain.get_order(current_session(), order_id=order_id))


def list_orders(limit: int = 20, offset: int = 0, status: str | None = None) -> dict[str, Any]:
    orders, total = domain.list_orders(current_session(), status=status, limit=limit, offset=offset)
    return offset_page([order_json(o) for o in orders], total=total, limit=limit, offset=offset)


def cancel_order(order_id: str) -> dict[str, Any]:
    parts = current_service().component(ShopComponents)
    return order_json(domain.cancel_order(current_session(), parts.books, order_id=order_id))


def order_json(order: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": order["id"],
        "status": order["status"],
        "items": [
            {
                "book_id": item["book_id"],
                "quantity": item["quantity"],
                "unit_price": f"{item['unit_price']:.2f}",
            }
            for item in order["items"]
        ],
        "total": f"{order['total']:.2f}",
        "reason": order["reason"],
        "created_at": rfc3339(order["created_at"]),
        "updated_at": rfc3339(order["updated_at"]),
    }

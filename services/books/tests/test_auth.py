"""Who may change books: the catalog needs ``catalog:write``, stock ``stock:reserve``; reading
needs nothing. Every case of the chassis' own token checks is in libs/common/tests/test_auth.py;
here, that books' document secures exactly its writes, each with its own scope."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient

from chassis.auth import secured_operations
from chassis.dev_issuer import DevIssuer

BOOK = {"isbn": "9780441172719", "title": "Dune", "author": "Frank Herbert", "price": "9.99"}
# (method, path, body, the scope it needs)
WRITES = {
    "create_book": ("POST", "/books", BOOK, "catalog:write"),
    "update_book": ("PATCH", "/books/1", {"title": "Dune!"}, "catalog:write"),
    "delete_book": ("DELETE", "/books/1", None, "catalog:write"),
    "reserve_stock": (
        "POST",
        "/books/1/reservations",
        {"order_id": "order-1", "quantity": 1},
        "stock:reserve",
    ),
    "release_stock": ("DELETE", "/books/1/reservations/order-1", None, "stock:reserve"),
}
OTHER_SCOPE = {"catalog:write": "stock:reserve", "stock:reserve": "catalog:write"}


def call(client: TestClient, operation: str, token: str | None = None) -> Any:
    method, path, body, _ = WRITES[operation]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.request(method, path, json=body, headers=headers)


def test_exactly_the_writes_are_secured(anonymous: TestClient) -> None:
    document = anonymous.get("/openapi.json").json()
    assert sorted(secured_operations(document)) == sorted(WRITES)
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {**schemes["bearerAuth"], "type": "http", "scheme": "bearer"}


@pytest.mark.parametrize("operation", WRITES)
def test_a_write_without_a_token_is_a_401(
    anonymous: TestClient, operation: str, problem: Callable[..., Any]
) -> None:
    response = call(anonymous, operation)
    problem(response, 401)
    assert response.headers["www-authenticate"] == 'Bearer realm="books"'


@pytest.mark.parametrize("operation", WRITES)
def test_a_write_with_the_other_scope_is_a_403(
    anonymous: TestClient, token_issuer: DevIssuer, operation: str, problem: Callable[..., Any]
) -> None:
    needed = WRITES[operation][3]
    token = token_issuer.mint(audience="books", scopes=[OTHER_SCOPE[needed]])
    response = call(anonymous, operation, token)
    problem(response, 403)
    assert f'scope="{needed}"' in response.headers["www-authenticate"]


@pytest.mark.parametrize("operation", WRITES)
def test_a_write_with_its_scope_passes_the_gate(
    anonymous: TestClient,
    token_issuer: DevIssuer,
    create_book: Callable[..., dict[str, Any]],
    operation: str,
) -> None:
    create_book(stock=5)  # book 1, through the authorised client
    needed = WRITES[operation][3]
    token = token_issuer.mint(audience="books", scopes=[needed])
    if operation == "create_book":
        body = {**BOOK, "isbn": "9780441013593"}
        response = anonymous.post("/books", json=body, headers={"Authorization": f"Bearer {token}"})
    else:
        response = call(anonymous, operation, token)
    assert response.status_code < 400, response.text


def test_a_token_for_another_service_is_refused(
    anonymous: TestClient, token_issuer: DevIssuer, problem: Callable[..., Any]
) -> None:
    token = token_issuer.mint(audience="shop", scopes=["catalog:write"])
    body = problem(call(anonymous, "create_book", token), 401)
    assert "another audience" in body["detail"]


@pytest.mark.parametrize("path", ["/books", "/books?q=dune", "/books/1"])
def test_reading_the_catalog_needs_no_token(
    anonymous: TestClient, create_book: Callable[..., dict[str, Any]], path: str
) -> None:
    create_book()
    assert anonymous.get(path).status_code == 200

"""Bad input is a 4xx problem+json naming the offending field; a 500 never leaks internals."""

from __future__ import annotations

import json

import pytest

from books import domain

VALID_BOOK = {"isbn": "9780441172719", "title": "Dune", "author": "Frank Herbert", "price": "9.99"}


def without(mapping, key):
    return {k: v for k, v in mapping.items() if k != key}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({**VALID_BOOK, "price": 1.5}, "price", id="price-as-number"),
        pytest.param({**VALID_BOOK, "price": "1.555"}, "price", id="price-three-decimals"),
        pytest.param({**VALID_BOOK, "price": "-1.00"}, "price", id="price-negative"),
        pytest.param({**VALID_BOOK, "stock": "3"}, "stock", id="stock-as-string"),
        pytest.param({**VALID_BOOK, "stock": -1}, "stock", id="stock-negative"),
        pytest.param(without(VALID_BOOK, "title"), "title", id="title-missing"),
        pytest.param({**VALID_BOOK, "title": ""}, "title", id="title-empty"),
        pytest.param({**VALID_BOOK, "isbn": "97804411727"}, "isbn", id="isbn-too-short"),
        pytest.param({**VALID_BOOK, "isbn": "978-0441172719"}, "isbn", id="isbn-with-dash"),
        pytest.param({**VALID_BOOK, "publisher": "Chilton"}, "publisher", id="unknown-field"),
    ],
)
def test_an_invalid_book_is_a_400_naming_the_field(client, problem, body, field):
    problem(client.post("/books", json=body), 400, field)

    assert client.get("/books").json()["total"] == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"order_id": "o-1", "quantity": "1"}, "quantity", id="quantity-as-string"),
        pytest.param({"order_id": "o-1", "quantity": -1}, "quantity", id="quantity-negative"),
        pytest.param({"order_id": "o-1", "quantity": 0}, "quantity", id="quantity-zero"),
        pytest.param({"order_id": "o-1", "quantity": 1.5}, "quantity", id="quantity-fraction"),
        pytest.param({"quantity": 1}, "order_id", id="order-id-missing"),
        pytest.param({"order_id": "o 1!", "quantity": 1}, "order_id", id="order-id-pattern"),
        pytest.param({"order_id": "o-1", "quantity": 1, "note": "x"}, "note", id="unknown-field"),
    ],
)
def test_an_invalid_reservation_is_a_400_naming_the_field(
    client, create_book, problem, body, field
):
    book = create_book(stock=5)

    problem(client.post(f"/books/{book['id']}/reservations", json=body), 400, field)

    assert client.get(f"/books/{book['id']}").json()["stock"] == 5


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"stock": -1}, "stock", id="stock-negative"),
        pytest.param({"price": 1.5}, "price", id="price-as-number"),
        pytest.param({"title": None}, "title", id="title-null"),
        pytest.param({"id": 7}, "id", id="read-only-field"),
    ],
)
def test_an_invalid_patch_is_a_400_naming_the_field(client, create_book, problem, body, field):
    book = create_book()

    problem(client.patch(f"/books/{book['id']}", json=body), 400, field)

    assert client.get(f"/books/{book['id']}").json() == book


def test_an_empty_patch_is_a_400(client, create_book, problem):
    book = create_book()

    problem(client.patch(f"/books/{book['id']}", json={}), 400)

    assert client.get(f"/books/{book['id']}").json() == book


def test_malformed_json_is_a_400(client, problem):
    response = client.post(
        "/books", content=b'{"isbn": "9780441172719",', headers={"content-type": "application/json"}
    )

    problem(response, 400)


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/merge-patch+json"], ids=["post", "patch"]
)
def test_json_that_is_not_utf8_is_a_400_naming_body(client, create_book, problem, content_type):
    book = create_book()
    bad = b'{"title": "\xff\xfe"}'
    if content_type == "application/json":
        response = client.post("/books", content=bad, headers={"Content-Type": content_type})
    else:
        response = client.patch(
            f"/books/{book['id']}", content=bad, headers={"Content-Type": content_type}
        )

    problem(response, 400, "body")
    assert client.get(f"/books/{book['id']}").json() == book


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/books", {**VALID_BOOK, "title": "a\u0000b"}, "title"),
        ("POST", "/books", {**VALID_BOOK, "author": "a\ud800b"}, "author"),
        ("GET", "/books?q=a%00b", None, "q"),
        ("GET", "/books?author=%00", None, "author"),
    ],
)
def test_text_no_database_can_store_is_a_400_naming_the_field(
    client, create_book, problem, method, path, body, field
):
    """PostgreSQL text cannot hold NUL: refused at the edge rather than failing in the database."""
    create_book()
    # json.dumps escapes a lone surrogate as \ud800 (httpx's own encoding would refuse it)
    content = json.dumps(body) if body is not None else None
    headers = {"content-type": "application/json"} if body is not None else {}
    response = client.request(method, path, content=content, headers=headers)

    assert "NUL" in problem(response, 400, field)["detail"]  # or a lone surrogate
    assert client.get("/books").json()["total"] == 1


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/books", "GET, HEAD, POST"),
        ("POST", "/books/1", "DELETE, GET, HEAD, PATCH"),
        ("GET", "/books/1/reservations", "POST"),
    ],
)
def test_a_405_names_every_method_of_the_path(client, problem, method, path, allowed):
    response = client.request(method, path)

    problem(response, 405)
    assert response.headers["allow"] == allowed


def test_a_body_over_max_body_bytes_is_a_413_naming_body(client, problem):
    padding = 64 * 1024  # http.max_body_bytes defaults to 64 KiB
    too_large = json.dumps({**VALID_BOOK, "title": "x" * padding})
    just_under = json.dumps({**VALID_BOOK, "title": "x" * (padding - 200)})
    headers = {"content-type": "application/json"}

    problem(client.post("/books", content=too_large, headers=headers), 413, "body")
    # Under the limit the body reaches validation (the title is far too long for the schema).
    problem(client.post("/books", content=just_under, headers=headers), 400, "title")


def test_an_unknown_query_parameter_is_a_400_naming_it(client, problem):
    problem(client.get("/books", params={"sort": "title"}), 400, "sort")


@pytest.mark.parametrize(
    ("path", "field"),
    [
        pytest.param("/books?limit=101", "limit", id="limit-over-cap"),
        pytest.param("/books?limit=ten", "limit", id="limit-not-integer"),
        pytest.param("/books?offset=-1", "offset", id="offset-negative"),
        pytest.param("/books/0", "book_id", id="book-id-zero"),
    ],
)
def test_an_invalid_parameter_is_a_400_naming_it(client, problem, path, field):
    body = problem(client.get(path), 400, field)

    assert "schema" not in body["detail"]  # no jsonschema error dump


@pytest.mark.every_database
def test_a_duplicate_isbn_is_a_409_on_create_and_on_patch(client, create_book, problem):
    dune = create_book(isbn="9780441172719")
    other = create_book(isbn="9780547928227", title="The Hobbit")

    problem(client.post("/books", json={**VALID_BOOK, "title": "Dune again"}), 409, "isbn")
    problem(client.patch(f"/books/{other['id']}", json={"isbn": dune["isbn"]}), 409, "isbn")

    assert client.get("/books").json()["total"] == 2
    assert client.get(f"/books/{other['id']}").json() == other
    # The refused change did not poison the request's transaction for the next one.
    assert client.patch(f"/books/{other['id']}", json={"stock": 1}).status_code == 200


def test_an_unexpected_error_is_a_500_that_leaks_nothing(client, create_book, monkeypatch, problem):
    book = create_book()

    def broken(*_, **__):
        raise RuntimeError("secret-password-123 SELECT * FROM x")

    monkeypatch.setattr(domain, "get_book", broken)
    response = client.get(f"/books/{book['id']}")

    body = problem(response, 500)
    for leak in ("secret-password-123", "SELECT", "Traceback", "RuntimeError", "books/domain"):
        assert leak not in response.text
    assert body["detail"]

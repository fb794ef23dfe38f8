"""Bad input is a 4xx problem+json naming the field, and nothing of it is stored."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, pool, text
from starlette.testclient import TestClient

from chassis.testing import hermetic_settings, service_client
from chat.app import create_service
from chat.settings import SERVICE_DIR, ChatSettings

Problem = Callable[..., dict[str, Any]]
VALID = {"author": "ann", "text": "hello"}


class Api:
    """One chat for the whole module: refusals change nothing, so the tests cannot interfere
    (and when one does store something, its own before/after comparison fails)."""

    def __init__(self, client: TestClient, database_url: str) -> None:
        self.client = client
        self.engine = create_engine(database_url, poolclass=pool.NullPool)

    def stored(self) -> tuple[int, int]:
        """(rooms, messages) as the database holds them."""
        with self.engine.connect() as connection:
            rooms = connection.execute(text("SELECT count(*) FROM rooms")).scalar_one()
            messages = connection.execute(text("SELECT count(*) FROM messages")).scalar_one()
        return int(rooms), int(messages)


@pytest.fixture(scope="module")
def api(
    new_database: Callable[[Path], str],
    tmp_path_factory: pytest.TempPathFactory,
    module_fake_books: Any,
) -> Iterator[Api]:
    database_url = new_database(tmp_path_factory.mktemp("bad-input"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OTEL_TRACES_EXPORTER", "none")
        settings = hermetic_settings(
            ChatSettings,
            SERVICE_DIR,
            database_url=database_url,
            environ={"DEPENDENCIES__BOOKS__BASE_URL": module_fake_books.base_url},
        )
        with service_client(create_service(settings)) as client:
            api = Api(client, database_url)
            assert (
                client.post("/rooms", json={"name": "lobby", "title": "Lobby"}).status_code == 201
            )
            assert client.post("/rooms/book-1/messages", json=VALID).status_code == 201
            assert api.stored() == (2, 1)
            yield api
            api.engine.dispose()


@pytest.fixture
def client(api: Api) -> TestClient:
    return api.client


@pytest.mark.parametrize("room", ["book-1", "lobby"])
@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({**VALID, "text": ""}, "text", id="empty-text"),
        pytest.param({**VALID, "text": " \t\n "}, "text", id="whitespace-text"),
        pytest.param({**VALID, "text": "x" * 2001}, "text", id="text-2001"),
        pytest.param({**VALID, "text": None}, "text", id="null-text"),
        pytest.param({**VALID, "text": 7}, "text", id="number-text"),
        pytest.param({"author": "ann"}, "text", id="missing-text"),
        pytest.param({**VALID, "author": ""}, "author", id="empty-author"),
        pytest.param({**VALID, "author": "   "}, "author", id="whitespace-author"),
        pytest.param({**VALID, "author": "a" * 51}, "author", id="author-51"),
        pytest.param({"text": "hi"}, "author", id="missing-author"),
        pytest.param({**VALID, "colour": "red"}, "colour", id="unknown-field"),
        pytest.param({**VALID, "verified": True}, "verified", id="client-sets-verified"),
    ],
)
def test_a_bad_message_is_refused_naming_the_field(
    api: Api, problem: Problem, room: str, body: dict[str, Any], field: str
) -> None:
    before = api.stored()

    problem(api.client.post(f"/rooms/{room}/messages", json=body), 400, field)

    assert api.stored() == before


def test_a_body_that_is_not_json_is_refused(api: Api, problem: Problem) -> None:
    before = api.stored()
    response = api.client.post(
        "/rooms/book-1/messages",
        content=b"author=ann&text=hi",
        headers={"content-type": "application/json"},
    )
    assert 400 <= response.status_code < 500
    problem(response, response.status_code)
    assert api.stored() == before


@pytest.mark.parametrize(
    "room",
    [
        pytest.param("Lobby", id="upper-case"),
        pytest.param("BOOK-1", id="upper-case-book"),
        pytest.param("my_room", id="underscore"),
        pytest.param("r" * 65, id="too-long"),
        pytest.param("-lobby", id="leading-dash"),
        pytest.param("caf%C3%A9", id="non-ascii"),
    ],
)
def test_an_invalid_room_name_is_refused_naming_the_room(
    api: Api, problem: Problem, room: str
) -> None:
    before = api.stored()

    problem(api.client.post(f"/rooms/{room}/messages", json=VALID), 400, "room")
    problem(api.client.get(f"/rooms/{room}/messages"), 400, "room")
    problem(api.client.get(f"/rooms/{room}"), 400, "room")
    problem(api.client.get(f"/rooms/{room}/events"), 400, "room")

    assert api.stored() == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"name": "Lobby2", "title": "x"}, "name", id="upper-case"),
        pytest.param({"name": "my_room", "title": "x"}, "name", id="underscore"),
        pytest.param({"name": "r" * 65, "title": "x"}, "name", id="too-long"),
        pytest.param({"name": "", "title": "x"}, "name", id="empty-name"),
        pytest.param({"title": "x"}, "name", id="missing-name"),
        pytest.param({"name": "den", "title": ""}, "title", id="empty-title"),
        pytest.param({"name": "den", "title": "t" * 201}, "title", id="title-201"),
        pytest.param({"name": "den", "title": "x", "kind": "book"}, "kind", id="unknown-field"),
    ],
)
def test_an_invalid_room_is_not_created(
    api: Api, problem: Problem, body: dict[str, Any], field: str
) -> None:
    before = api.stored()

    problem(api.client.post("/rooms", json=body), 400, field)

    assert api.stored() == before


def test_a_message_to_an_unknown_free_room_is_not_found_and_creates_nothing(
    api: Api, problem: Problem
) -> None:
    before = api.stored()

    problem(api.client.post("/rooms/nowhere/messages", json=VALID), 404, "room")
    problem(api.client.get("/rooms/nowhere"), 404, "room")

    assert api.stored() == before


def test_an_oversized_body_is_refused_before_it_is_parsed(api: Api, problem: Problem) -> None:
    before = api.stored()

    body = {"author": "ann", "text": "x" * 70_000}
    problem(api.client.post("/rooms/book-1/messages", json=body), 413, "body")

    assert api.stored() == before


@pytest.mark.parametrize(
    ("query", "field"),
    [
        pytest.param("limit=0", "limit", id="limit-0"),
        pytest.param("limit=101", "limit", id="limit-101"),
        pytest.param("limit=ten", "limit", id="limit-not-a-number"),
        pytest.param("offset=-1", "offset", id="offset-negative"),
        pytest.param("offset=10001", "offset", id="offset-10001"),
        pytest.param("offset=1.5", "offset", id="offset-not-an-integer"),
    ],
)
def test_a_bad_listing_parameter_is_refused_naming_it(
    api: Api, problem: Problem, query: str, field: str
) -> None:
    problem(api.client.get(f"/rooms?{query}"), 400, field)

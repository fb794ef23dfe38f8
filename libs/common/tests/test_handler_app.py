"""HandlerApp: handlers get the arguments connexion would give them, bound once at start-up."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from starlette.testclient import TestClient

from chassis import Service, Settings
from chassis.testing import hermetic_settings, service_client

SPEC = {
    "openapi": "3.0.3",
    "info": {"title": "echo", "version": "1"},
    "paths": {
        "/echo/{item_id}": {
            "parameters": [
                {"name": "item_id", "in": "path", "required": True, "schema": {"type": "integer"}}
            ],
            "get": {
                "operationId": "read",
                "parameters": [
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "default": 5}},
                    {"name": "ratio", "in": "query", "schema": {"type": "number"}},
                    {
                        "name": "tags",
                        "in": "query",
                        "schema": {"type": "array", "items": {"type": "string"}},
                    },
                ],
                "responses": {"200": {"description": "ok"}},
            },
            "post": {
                "operationId": "write",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "responses": {"200": {"description": "ok"}},
            },
            "put": {
                "operationId": "everything",
                "requestBody": {
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "responses": {"200": {"description": "ok"}},
            },
        },
        "/async/{name}": {
            "get": {
                "operationId": "greet",
                "parameters": [
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {"200": {"description": "ok"}},
            }
        },
    },
}


def _handlers() -> ModuleType:
    module = ModuleType("tests_handler_app_handlers")

    def read(
        item_id: int, limit: int, ratio: float | None = None, tags: list[str] | None = None
    ) -> dict[str, Any]:
        return {"item_id": item_id, "limit": limit, "ratio": ratio, "tags": tags}

    def write(item_id: int, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
        return {"item_id": item_id, "body": body}, 201

    def everything(**kwargs: Any) -> dict[str, Any]:
        return {"kwargs": sorted(kwargs)}

    async def greet(name: str) -> dict[str, str]:
        return {"hello": name}

    for function in (read, write, everything, greet):
        setattr(module, function.__name__, function)
    return module


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    (tmp_path / "openapi.yaml").write_text(yaml.safe_dump(SPEC), encoding="utf-8")
    settings = hermetic_settings(
        Settings,
        tmp_path,
        database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
        environ={"SERVICE__NAME": "echo"},
    )
    service = Service(settings, spec=tmp_path / "openapi.yaml", handlers=_handlers())
    try:
        with service_client(service) as client:
            yield client
    finally:
        service.close()


def test_path_and_query_parameters_arrive_typed_with_defaults(client: TestClient) -> None:
    response = client.get("/echo/7", params={"ratio": "0.5", "tags": "a,b"})

    assert response.status_code == 200
    assert response.json() == {"item_id": 7, "limit": 5, "ratio": 0.5, "tags": ["a", "b"]}


def test_the_json_body_arrives_as_body(client: TestClient) -> None:
    response = client.post("/echo/3", json={"x": [1, 2]})

    assert response.status_code == 201
    assert response.json() == {"item_id": 3, "body": {"x": [1, 2]}}


def test_a_handler_taking_kwargs_gets_every_argument(client: TestClient) -> None:
    response = client.put("/echo/3", json={"x": 1})

    assert response.json() == {"kwargs": ["body", "item_id"]}


def test_async_handlers_are_bound_too(client: TestClient) -> None:
    assert client.get("/async/ann").json() == {"hello": "ann"}


def test_invalid_input_is_still_refused_by_connexion(client: TestClient) -> None:
    response = client.get("/echo/1", params={"limit": "many"})

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"


def test_a_path_outside_the_spec_is_a_404_problem(client: TestClient) -> None:
    response = client.get("/nowhere")

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_handlers_are_inspected_once_not_per_request(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """connexion.AsyncApp re-decorates (and inspect.signature()s) its handler on every request,
    the largest cost it added to a request; HandlerApp binds each operation at start-up."""
    client.get("/echo/1")  # the app is built and bound
    calls = 0
    real_signature = inspect.signature

    def counting_signature(*args: Any, **kwargs: Any) -> inspect.Signature:
        nonlocal calls
        calls += 1
        return real_signature(*args, **kwargs)

    monkeypatch.setattr(inspect, "signature", counting_signature)
    for _ in range(3):
        assert client.get("/echo/1").status_code == 200

    assert calls == 0

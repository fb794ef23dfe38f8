"""HandlerApp: handlers get the arguments connexion would give them, bound once at start-up."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, cast

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


# -- the shortcuts taken for requests without a query string, body or content type ------------

EQUIVALENCE_SPEC: dict[str, Any] = {
    **SPEC,
    "paths": {
        **cast(dict[str, Any], SPEC["paths"]),
        "/need/{n}": {
            "get": {
                "operationId": "need",
                "parameters": [
                    {"name": "n", "in": "path", "required": True, "schema": {"type": "integer"}},
                    {"name": "q", "in": "query", "required": True, "schema": {"type": "string"}},
                    {"name": "X-Mode", "in": "header", "schema": {"type": "string", "enum": ["a"]}},
                ],
                "responses": {"200": {"description": "ok"}},
            }
        },
    },
}
EQUIVALENCE_REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/echo/7", {}),
    ("GET", "/echo/7?ratio=0.5&tags=a,b", {}),
    ("GET", "/echo/7?limit=many", {}),
    ("GET", "/echo/7?unknown=1", {}),
    ("GET", "/echo/x", {}),
    ("GET", "/echo/7", {"headers": {"content-type": "application/json"}}),
    ("GET", "/echo/7", {"headers": {"content-type": "text/plain"}, "content": b"hi"}),
    ("GET", "/need/1", {}),
    ("GET", "/need/1?q=", {}),
    ("GET", "/need/1?q=x", {}),
    ("GET", "/need/1?q=x", {"headers": {"x-mode": "b"}}),
    ("POST", "/echo/3", {"json": {"x": [1, 2]}}),
    ("POST", "/echo/3", {}),
    ("PUT", "/echo/3", {"json": {"x": 1}}),
    ("PUT", "/echo/3", {}),
    ("GET", "/async/ann", {}),
]


def _need_handlers() -> ModuleType:
    module = _handlers()

    def need(n: int, q: str) -> dict[str, Any]:
        return {"n": n, "q": q}

    module.need = need  # type: ignore[attr-defined]
    return module


def _answers(tmp_path: Path) -> list[Any]:
    tmp_path.mkdir()
    (tmp_path / "openapi.yaml").write_text(yaml.safe_dump(EQUIVALENCE_SPEC), encoding="utf-8")
    settings = hermetic_settings(
        Settings,
        tmp_path,
        database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
        environ={"SERVICE__NAME": "echo"},
    )
    service = Service(settings, spec=tmp_path / "openapi.yaml", handlers=_need_handlers())
    found = []
    try:
        with service_client(service) as client:
            for method, url, options in EQUIVALENCE_REQUESTS:
                response = client.request(method, url, **options)
                body = response.json()
                if isinstance(body, dict):
                    body.pop("trace_id", None)
                found.append((method, url, response.status_code, response.headers["content-type"]))
                found.append(body)
    finally:
        service.close()
    return found


def test_the_shortcuts_answer_as_connexions_general_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Validation with parameter validators built once, an empty query string not parsed, and
    arguments taken from the path alone when there is nothing else to read: every answer is
    the one connexion's own request handling gives."""
    from connexion.middleware.request_validation import RequestValidationMiddleware
    from connexion.validators import ParameterValidator

    import chassis.handlers
    import chassis.service
    from chassis.validation import NamingParameterValidator

    fast = _answers(tmp_path / "fast")
    monkeypatch.setattr(chassis.service, "RequestValidation", RequestValidationMiddleware)
    monkeypatch.setattr(NamingParameterValidator, "validate", ParameterValidator.validate)
    monkeypatch.setattr(chassis.handlers, "_has_content_type", lambda scope: True)
    general = _answers(tmp_path / "general")

    assert fast == general
    statuses = {entry[2] for entry in fast[::2]}
    assert statuses >= {200, 201, 400}

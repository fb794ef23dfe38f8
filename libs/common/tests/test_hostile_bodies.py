"""Hostile request bodies against every JSON write endpoint of every real service.

Each Python service (every folder under services/ but the Go gateway) is built in-process on a
migrated SQLite database, its dependencies at a closed port, and every operation whose request
body takes JSON is found in its own OpenAPI document: an endpoint added tomorrow is covered
without a change here.

- JSON nested far deeper than Python's parser recurses: 400 naming the body, never a 500;
- a body without a Content-Type, or with one the operation does not take: 415 listing the
  accepted types (detail, ``accepted``, ``Accept`` and ``Accept-Post``/``Accept-Patch``);
- the media type in other letters (``APPLICATION/JSON``): answered exactly as in lower case;
- every operation with a body declares that 415, and the 413 of an oversized body, in the
  document it serves.

The tiny service and a service of this file's own check the same from the handler's side: a
body sent as ``APPLICATION/JSON`` arrives parsed, and an optional body may still be absent.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import service_registry
import yaml
from starlette.testclient import TestClient

from chassis import Service, Settings
from chassis.dev_issuer import DevIssuer
from chassis.migrations import upgrade
from chassis.testing import (
    assert_problem,
    free_port,
    hermetic_environment,
    hermetic_settings,
    reset_logging,
    service_client,
)


def _service_parts(
    manifest: service_registry.ServiceManifest,
) -> tuple[type[Settings], Path, Callable[..., Service]]:
    """Its settings model, its config folder and its ``<package>.app.create_service``."""
    app = importlib.import_module(f"{manifest.package}.app")
    return service_registry.settings_class(manifest), manifest.config_dir, app.create_service


# Every folder under services/ (deploy/service_registry.py): a new service is covered too.
SERVICES = {name: _service_parts(m) for name, m in service_registry.python_services().items()}
DEEP_JSON = b"[" * 10_000 + b"]" * 10_000
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
EVERY_SCOPE = ("catalog:write", "stock:reserve")


# -- what each service's document says --------------------------------------------------------


def _is_json(media_type: str) -> bool:
    kind = media_type.split(";")[0].strip().lower()
    return kind == "application/json" or kind.endswith("+json")


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document.get("paths", {}).items():
        for method in METHODS:
            if isinstance(item.get(method), dict):
                yield path, method, item[method]


def _ref(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """``node``, or what its ``$ref`` points at within ``document``."""
    while "$ref" in node:
        target: Any = document
        for key in node["$ref"].removeprefix("#/").split("/"):
            target = target[key]
        node = target
    return node


def json_writes(service_dir: Path) -> list[tuple[str, str]]:
    """``(method, path)`` of every operation whose request body may be JSON."""
    document = yaml.safe_load((service_dir / "openapi.yaml").read_text(encoding="utf-8"))
    found = []
    for path, method, operation in _operations(document):
        body = _ref(document, operation.get("requestBody") or {})
        if any(_is_json(kind) for kind in body.get("content", {})):
            found.append((method, path))
    return found


ENDPOINTS = [
    pytest.param(name, method, path, id=f"{name} {method.upper()} {path}")
    for name, (_, service_dir, _) in SERVICES.items()
    for method, path in json_writes(service_dir)
]


@dataclass
class Endpoint:
    """One JSON write operation of a running service, as its served document describes it."""

    client: TestClient
    method: str
    url: str
    accepted: list[str]

    @classmethod
    def of(cls, client: TestClient, method: str, path: str) -> Endpoint:
        document = client.get("/openapi.json").json()  # references resolved by connexion
        item = document["paths"][path]
        operation = item[method]
        parameters = [*item.get("parameters", []), *operation.get("parameters", [])]
        url = path
        for parameter in parameters:
            if parameter["in"] == "path":
                url = url.replace(f"{{{parameter['name']}}}", _a_value(parameter["schema"]))
        return cls(client, method, url, list(operation["requestBody"]["content"]))

    @property
    def json_type(self) -> str:
        return next(kind for kind in self.accepted if _is_json(kind))

    def send(self, body: bytes, content_type: str | None) -> httpx.Response:
        headers = {} if content_type is None else {"Content-Type": content_type}
        response = self.client.request(self.method, self.url, content=body, headers=headers)
        assert response.request.headers.get("content-type") == content_type
        return response


def _a_value(schema: dict[str, Any]) -> str:
    """A path parameter value that the schema takes."""
    if schema.get("type") == "integer":
        return str(max(1, schema.get("minimum", 1)))
    pattern = schema.get("pattern")
    candidates = ["book-1", "a1", "1"]
    return next(c for c in candidates if pattern is None or re.search(pattern, c))


# -- the running services -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def running(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    token_issuer: DevIssuer,
) -> Iterator[TestClient]:
    """The service named by the test's parameter, started once for the module; its client
    holds a token with every scope, so that the bodies of secured writes are reached."""
    settings_class, service_dir, create = SERVICES[request.param]
    database_url = f"sqlite:///{tmp_path_factory.mktemp(request.param) / 'service.db'}"
    upgrade(service_dir / "migrations", database_url)
    with pytest.MonkeyPatch.context() as patch:
        hermetic_environment(patch)
        declared = hermetic_settings(settings_class, service_dir).dependencies
        nowhere = f"http://127.0.0.1:{free_port()}"
        environ = {f"DEPENDENCIES__{name.upper()}__BASE_URL": nowhere for name in declared}
        environ["LOGGING__ACCESS_LOG"] = "false"
        environ["AUTH__PUBLIC_KEY"] = token_issuer.public_pem()
        settings = hermetic_settings(
            settings_class, service_dir, database_url=database_url, environ=environ
        )
        token = token_issuer.mint(audience=request.param, scopes=EVERY_SCOPE)
        try:
            with service_client(
                create(settings), headers={"Authorization": f"Bearer {token}"}
            ) as client:
                yield client
        finally:
            reset_logging()


every_json_write = pytest.mark.parametrize(
    ("running", "method", "path"), ENDPOINTS, indirect=["running"]
)


def test_every_service_has_json_writes_to_check() -> None:
    found = {name for name, *_ in (param.values for param in ENDPOINTS)}

    assert found == set(SERVICES)


@every_json_write
def test_json_nested_deeper_than_a_parser_recurses_is_a_400_naming_the_body(
    running: TestClient, method: str, path: str
) -> None:
    endpoint = Endpoint.of(running, method, path)

    problem = assert_problem(endpoint.send(DEEP_JSON, endpoint.json_type), 400, "body")
    assert "nested deeper than" in problem["detail"]


@every_json_write
def test_a_body_without_a_content_type_is_a_415_listing_the_accepted_types(
    running: TestClient, method: str, path: str
) -> None:
    endpoint = Endpoint.of(running, method, path)

    response = endpoint.send(b"{}", None)

    problem = assert_problem(response, 415, "Content-Type")
    assert problem["accepted"] == endpoint.accepted
    for kind in endpoint.accepted:
        assert kind in problem["detail"]
    assert response.headers["Accept"] == ", ".join(endpoint.accepted)
    if method in ("post", "patch"):
        assert response.headers[f"Accept-{method.title()}"] == ", ".join(endpoint.accepted)


@every_json_write
def test_a_media_type_the_operation_does_not_take_is_a_415(
    running: TestClient, method: str, path: str
) -> None:
    endpoint = Endpoint.of(running, method, path)

    response = endpoint.send(b"{}", "text/plain; charset=utf-8")

    problem = assert_problem(response, 415, "Content-Type")
    assert "text/plain" in problem["detail"]
    assert problem["accepted"] == endpoint.accepted


SPELLINGS: dict[str, Callable[[str], str]] = {
    "upper": str.upper,  # APPLICATION/JSON
    "title": lambda kind: f"{kind.title()}; charset=UTF-8",  # Application/Json; charset=UTF-8
}


@every_json_write
@pytest.mark.parametrize("spelling", list(SPELLINGS))
def test_the_media_type_in_other_letters_is_answered_as_in_lower_case(
    running: TestClient, method: str, path: str, spelling: str
) -> None:
    endpoint = Endpoint.of(running, method, path)
    expected = endpoint.send(b"{}", endpoint.json_type)

    response = endpoint.send(b"{}", SPELLINGS[spelling](endpoint.json_type))

    assert response.status_code not in (415, 500), response.text
    assert response.status_code == expected.status_code, response.text
    if response.headers["content-type"].startswith("application/problem+json"):
        assert response.json()["detail"] == expected.json()["detail"]


@pytest.mark.parametrize("running", list(SERVICES), indirect=True)
def test_every_operation_with_a_body_declares_its_415_and_413(running: TestClient) -> None:
    document = running.get("/openapi.json").json()
    with_body = [
        (path, method, operation)
        for path, method, operation in _operations(document)
        if "requestBody" in operation
    ]

    assert with_body
    for path, method, operation in with_body:
        declared = operation["responses"].get("415")
        assert declared, f"{method.upper()} {path} declares no 415"
        assert "application/problem+json" in declared["content"]
        assert "Accept" in declared["headers"]
        too_large = operation["responses"].get("413")
        assert too_large, f"{method.upper()} {path} declares no 413"
        assert "65536 bytes" in too_large["description"]
    for path, method, operation in _operations(document):
        if "requestBody" not in operation:
            assert "415" not in operation["responses"], f"{method.upper()} {path}"
            assert "413" not in operation["responses"], f"{method.upper()} {path}"


# -- the handler's side -------------------------------------------------------------------------


def test_a_body_sent_as_upper_case_json_reaches_the_handler_parsed(service: Service) -> None:
    with service_client(service) as client:
        response = client.post(
            "/items", content=b'{"name": "Ann"}', headers={"Content-Type": "APPLICATION/JSON"}
        )

    assert response.status_code == 201, response.text
    assert response.json()["name"] == "Ann"


def test_the_json_depth_limit_is_a_setting(make_service: Callable[..., Service]) -> None:
    nested = b'{"name": ' + b"[" * 5 + b"]" * 5 + b"}"  # six levels
    json_body = {"Content-Type": "application/json"}
    with service_client(make_service(HTTP__MAX_JSON_DEPTH="5")) as client:
        refused = client.post("/items", content=nested, headers=json_body)
    assert "nested deeper than 5 levels" in assert_problem(refused, 400, "body")["detail"]
    with service_client(make_service(HTTP__MAX_JSON_DEPTH="6")) as client:
        validated = client.post("/items", content=nested, headers=json_body)
    assert "nested deeper" not in validated.text  # reached validation: name is no string


def test_a_binary_body_without_its_content_type_is_a_415(service: Service) -> None:
    with service_client(service) as client:
        response = client.post("/upload", content=b"\x00\x01")

    assert_problem(response, 415, "Content-Type")
    assert response.headers["Accept-Post"] == "application/octet-stream"


OPTIONAL_BODY_SPEC = {
    "openapi": "3.0.3",
    "info": {"title": "notes", "version": "1"},
    "paths": {
        "/notes": {
            "put": {
                "operationId": "put_note",
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "responses": {"200": {"description": "ok"}},
            },
            "post": {
                "operationId": "post_note",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "responses": {"200": {"description": "ok"}},
            },
        },
    },
}


@pytest.fixture
def notes(tmp_path: Path) -> Iterator[TestClient]:
    """A service with an operation whose body is optional (PUT) and one whose body is not."""
    (tmp_path / "openapi.yaml").write_text(yaml.safe_dump(OPTIONAL_BODY_SPEC), encoding="utf-8")
    handlers = ModuleType("tests_hostile_bodies_handlers")

    def put_note(body: Any = None) -> dict[str, Any]:
        return {"body": body}

    handlers.put_note = handlers.post_note = put_note  # type: ignore[attr-defined]
    settings = hermetic_settings(
        Settings,
        tmp_path,
        database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
        environ={"SERVICE__NAME": "notes"},
    )
    service = Service(settings, spec=tmp_path / "openapi.yaml", handlers=handlers)
    try:
        with service_client(service) as client:
            yield client
    finally:
        service.close()


def test_an_optional_body_may_still_be_absent(notes: TestClient) -> None:
    response = notes.put("/notes")

    assert "content-type" not in response.request.headers
    assert response.status_code == 200, response.text
    assert response.json()["body"] in (None, {})  # what connexion makes of no body


def test_an_optional_body_sent_without_its_content_type_is_a_415(notes: TestClient) -> None:
    assert_problem(notes.put("/notes", content=b'{"a": 1}'), 415, "Content-Type")


def test_an_optional_body_in_other_letters_arrives_parsed(notes: TestClient) -> None:
    response = notes.put(
        "/notes", content=b'{"a": 1}', headers={"Content-Type": "Application/JSON"}
    )

    assert response.json() == {"body": {"a": 1}}


def test_a_required_body_absent_is_still_a_400(notes: TestClient) -> None:
    assert_problem(notes.post("/notes"), 400)

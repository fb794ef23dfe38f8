"""ApiDocsMiddleware answers as connexion's SwaggerUIMiddleware, skipping its router for requests
it cannot serve, and serves a document whose server Swagger UI can send requests to."""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import connexion.middleware.swagger_ui
import pytest
import yaml
from connexion.middleware.swagger_ui import SwaggerUIMiddleware

import chassis.service
from chassis import Service
from chassis.middleware.api_docs import ApiDocsAPI, ApiDocsMiddleware, _prefixes
from chassis.testing import hermetic_settings, service_client

REQUESTS = [
    ("GET", "/openapi.json"),
    ("GET", "/openapi.json/"),
    ("GET", "/openapi.yaml"),
    ("POST", "/openapi.json"),
    ("GET", "/ui"),
    ("GET", "/ui/"),
    ("GET", "/ui/index.html"),
    ("GET", "/ui/swagger-ui.css"),
    ("GET", "/ui/no-such-asset.js"),
    ("GET", "/uix"),
    ("GET", "/"),
    ("GET", "/items/count"),
    ("GET", "/items/count/"),
    ("GET", "/items/1"),
    ("GET", "/items/x"),
    ("DELETE", "/items/count"),
    ("GET", "/nowhere"),
    ("GET", "/whereami?x=1"),
    ("GET", "/health/live"),
]
TRACE_ID = re.compile(rb'"trace_id":"[0-9a-f]{32}"')
SPEC_URL = re.compile(r'url: "([^"]*)"')  # in Swagger UI's page: SwaggerUIBundle({url: "..."})


def answers(service: Service) -> list[tuple[Any, ...]]:
    found = []
    with service_client(service, follow_redirects=False) as client:
        for method, path in REQUESTS:
            response = client.request(method, path)
            headers = {k: v for k, v in response.headers.items() if k not in ("date", "etag")}
            body = TRACE_ID.sub(b'"trace_id":"-"', response.content)
            found.append((method, path, response.status_code, headers, body))
    return found


def test_every_request_is_answered_as_connexion_answers_it(
    make_service: Callable[..., Service], monkeypatch: pytest.MonkeyPatch
) -> None:
    ours = answers(make_service())
    monkeypatch.setattr(chassis.service, "ApiDocsMiddleware", SwaggerUIMiddleware)
    # the same document (with a usable server, tested below), through connexion's own routing
    monkeypatch.setattr(connexion.middleware.swagger_ui, "SwaggerUIAPI", ApiDocsAPI)
    theirs = answers(make_service())

    assert ours == theirs
    assert {status for _, _, status, _, _ in ours} >= {200, 307, 404, 405}


def test_only_paths_the_docs_router_could_match_enter_it(service: Service) -> None:
    with service_client(service):
        docs = next(m for m in service.api.middleware_stack if isinstance(m, ApiDocsMiddleware))
        prefixes = docs._prefixes

    assert "/openapi.json" in prefixes
    assert "/ui" in prefixes
    assert not any(prefix == "" for prefix in prefixes)
    assert not "/items/1".startswith(prefixes)


def test_an_api_under_a_base_path_sends_everything_under_it_through_the_router() -> None:
    from starlette.routing import Mount, Route, Router

    async def endpoint(*_: Any) -> None:
        pass

    routes = [
        Mount(
            "/api",
            app=Router([Route("/openapi.json", endpoint), Mount("/ui", app=endpoint)]),
        ),
        Route("/elsewhere/{x}/", endpoint),
    ]

    assert sorted(_prefixes(routes, "")) == [
        "/api",
        "/api/openapi.json",
        "/api/ui",
        "/elsewhere",
    ]


def test_other_scopes_pass_through_untouched() -> None:
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope)

    async def nothing() -> Any:
        return {}

    async def ignore(_: Any) -> None:
        pass

    scope = {"type": "websocket", "path": "/ui"}
    asyncio.run(ApiDocsMiddleware(app)(scope, nothing, ignore))

    assert seen == [scope]


# -- the server the served document names ------------------------------------------------------


def served_servers(client: Any, spec_url: str) -> list[Any]:
    response = client.get(spec_url)
    assert response.status_code == 200, response.text
    document = response.json() if spec_url.endswith(".json") else yaml.safe_load(response.text)
    servers: list[Any] = document["servers"]
    return servers


def swagger_ui_spec_url(client: Any, ui_path: str) -> str:
    """The document Swagger UI's page loads (connexion writes its URL into the page)."""
    page = client.get(ui_path)
    assert page.status_code == 200
    found = SPEC_URL.search(page.text)
    assert found, page.text
    return found.group(1)


def test_an_api_at_the_root_names_the_root_as_its_server(service: Service) -> None:
    # The service's openapi.yaml says "servers: [{url: /}]"; connexion serves it as "".
    with service_client(service) as client:
        spec_url = swagger_ui_spec_url(client, "/ui/")

        assert spec_url == "/openapi.json"
        for url in (spec_url, "/openapi.yaml"):
            assert served_servers(client, url) == [{"url": "/"}], url


def test_behind_a_proxy_the_server_is_the_prefix_the_proxy_announces(service: Service) -> None:
    # uvicorn --root-path (or a proxy's forwarded prefix) sets the ASGI root_path.
    with service_client(service, root_path="/bookshop/tiny") as client:
        spec_url = swagger_ui_spec_url(client, "/ui/")
        servers = served_servers(client, "/openapi.json")
        items = client.get("/items/count")

    assert spec_url == "/bookshop/tiny/openapi.json"
    assert servers == [{"url": "/bookshop/tiny"}]
    assert items.status_code == 200


def test_an_api_under_a_base_path_names_that_path_as_its_server(
    tiny: ModuleType, tmp_path: Path, database_url: str
) -> None:
    document = yaml.safe_load((tiny.SERVICE_DIR / "openapi.yaml").read_text())
    document["servers"] = [{"url": "/api/v1"}]
    (tmp_path / "openapi.yaml").write_text(yaml.safe_dump(document))
    shutil.copy(tiny.SERVICE_DIR / "config.yml", tmp_path)
    settings = hermetic_settings(tiny.TinySettings, tmp_path, database_url=database_url)
    service = Service(settings, spec=tmp_path / "openapi.yaml", handlers=tiny.load_handlers())
    try:
        with service_client(service) as client:
            spec_url = swagger_ui_spec_url(client, "/api/v1/ui/")
            servers = served_servers(client, spec_url)
    finally:
        service.close()

    assert spec_url == "/api/v1/openapi.json"
    assert servers == [{"url": "/api/v1"}]

"""connexion's Swagger UI middleware, entered only by the requests it can answer.

connexion's SwaggerUIMiddleware sends every request through a Starlette router (a mount per API,
then each of its routes' regular expressions) before passing the ones it does not serve (all
API calls) to the next layer. Here a request reaches that router only when its path starts like
one of the router's own routes; any other request goes to the next layer exactly as connexion's
fallback would send it (a copy of the scope as it arrived), without the detour.

The document it serves (``/openapi.json``, ``/openapi.yaml``, and so Swagger UI's) names a usable
server. connexion rewrites an OpenAPI 3 document's ``servers`` to the base path the request came
through (a proxy's ``root_path`` plus where the API is mounted), which is ``""`` for an API at the
root: Swagger UI then lists one blank server and other tools have no base URL. That empty URL
becomes ``"/"``. The URL stays a path, relative to wherever the document was fetched from (as
OpenAPI 3 allows), never an origin built from the request's ``Host``: behind a TLS-terminating
proxy or a port mapping, the origin the service sees is not the one the browser reached.
"""

from __future__ import annotations

from typing import Any

from connexion.middleware.swagger_ui import SwaggerUIAPI, SwaggerUIMiddleware
from connexion.spec import Specification
from starlette.requests import Request
from starlette.routing import BaseRoute, Mount, Route, Router
from starlette.types import Receive, Scope, Send

ROOT_SERVER_URL = "/"


class ApiDocsAPI(SwaggerUIAPI):  # type: ignore[misc]
    """connexion's Swagger UI API whose served document names a usable server."""

    def _spec_for_prefix(self, request: Request) -> dict[str, Any]:
        return with_usable_servers(super()._spec_for_prefix(request))


def with_usable_servers(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` (changed in place) with every empty server URL replaced by ``"/"``."""
    for server in document.get("servers") or []:
        if not server.get("url"):
            server["url"] = ROOT_SERVER_URL
    return document


class ApiDocsMiddleware(SwaggerUIMiddleware):  # type: ignore[misc]
    def add_api(
        self,
        specification: Specification,
        base_path: str | None = None,
        arguments: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        # connexion's add_api, with ApiDocsAPI in place of SwaggerUIAPI
        api = ApiDocsAPI(
            specification,
            base_path=base_path,
            arguments=arguments,
            default=self.default_fn,
            **kwargs,
        )
        self.router.mount(api.base_path, app=api.router)
        self._prefixes = tuple(sorted(set(_prefixes(self.router.routes, ""))))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["path"].startswith(
            getattr(self, "_prefixes", ("",))
        ):
            await self.app(dict(scope), receive, send)  # connexion's fallback: a copy
            return
        await super().__call__(scope, receive, send)


def _prefixes(routes: list[BaseRoute], base: str) -> list[str]:
    """The start of every path a route (or its trailing-slash twin) can match."""
    found = []
    for route in routes:
        if isinstance(route, Mount) and isinstance(route.app, Router):
            if route.path:  # "/base" is redirected to "/base/", the mount's own path
                found.append(base + route.path)
            found += _prefixes(route.app.routes, base + route.path)
        elif isinstance(route, Route | Mount):
            found.append(_literal_start(base + route.path))
        else:  # a route of a kind not expected here: let the router see everything
            found.append("")
    return found


def _literal_start(path: str) -> str:
    # Up to the first parameter, without a trailing slash: the router redirects
    # "/x/" <-> "/x", so both spellings must reach it.
    return path.split("{", 1)[0].rstrip("/")

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

Swagger UI's page starts the UI with an inline script (and styles itself with an inline
``<style>``). The page is sent with the chassis' Content-Security-Policy plus the hash of each
of those blocks as rendered for this request: the script names the document's URL, which holds
the request's root path, so a hash computed once at start-up would hold for one prefix only, and
a rewritten page (an initializer served as a file) would drift from connexion's template. Only
this page, rendered from connexion's own template, is hashed: hashing whatever inline script a
page holds would allow an injected one too.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from connexion.middleware.swagger_ui import SwaggerUIAPI, SwaggerUIMiddleware
from connexion.spec import Specification
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route, Router
from starlette.types import Receive, Scope, Send

from chassis.middleware.security_headers import content_security_policy, source_hash

ROOT_SERVER_URL = "/"
INLINE_SCRIPT = re.compile(r"<script\b(?P<attributes>[^>]*)>(?P<text>.*?)</script\s*>", re.I | re.S)
INLINE_STYLE = re.compile(r"<style\b[^>]*>(?P<text>.*?)</style\s*>", re.I | re.S)
SOURCE_ATTRIBUTE = re.compile(r"\bsrc\s*=", re.I)


class ApiDocsAPI(SwaggerUIAPI):  # type: ignore[misc]
    """connexion's Swagger UI API whose served document names a usable server."""

    def _spec_for_prefix(self, request: Request) -> dict[str, Any]:
        return with_usable_servers(super()._spec_for_prefix(request))

    async def _get_swagger_ui_home(self, request: Request) -> Response:
        page: Response = await super()._get_swagger_ui_home(request)
        page.headers["Content-Security-Policy"] = swagger_ui_policy(bytes(page.body))
        return page


@functools.lru_cache(maxsize=16)  # one page per root path and API, in practice
def swagger_ui_policy(page: bytes) -> str:
    """The chassis' policy, allowing the inline scripts and styles of Swagger UI's ``page``."""
    text = page.decode("utf-8")
    scripts = [
        source_hash(found["text"])
        for found in INLINE_SCRIPT.finditer(text)
        if not SOURCE_ATTRIBUTE.search(found["attributes"])
    ]
    styles = [source_hash(found["text"]) for found in INLINE_STYLE.finditer(text)]
    return content_security_policy(scripts=scripts, styles=styles)


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

"""connexion's Swagger UI middleware, entered only by the requests it can answer.

connexion's SwaggerUIMiddleware sends every request through a Starlette router (a mount per API,
then each of its routes' regular expressions) before passing the ones it does not serve (all
API calls) to the next layer. Here a request reaches that router only when its path starts like
one of the router's own routes; any other request goes to the next layer exactly as connexion's
fallback would send it (a copy of the scope as it arrived), without the detour.
"""

from __future__ import annotations

from typing import Any

from connexion.middleware.swagger_ui import SwaggerUIMiddleware
from starlette.routing import BaseRoute, Mount, Route, Router
from starlette.types import Receive, Scope, Send


class ApiDocsMiddleware(SwaggerUIMiddleware):  # type: ignore[misc]
    def add_api(self, *args: Any, **kwargs: Any) -> None:
        super().add_api(*args, **kwargs)
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

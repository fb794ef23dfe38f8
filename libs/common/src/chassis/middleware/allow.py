"""A 405 names every method its path allows (RFC 9110 §15.5.6), as the OpenAPI document says.

connexion routes each operation on its own, so the 405 it raises lists the methods of one
operation of the path: ``PUT /books`` was answered ``Allow: HEAD, GET``, forgetting POST.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chassis.routes import RouteTable


class AllowHeaderMiddleware:
    def __init__(self, app: ASGIApp, *, routes: RouteTable, allowed: Mapping[str, str]) -> None:
        """``allowed``: route template -> its Allow header value (see ``routes.spec_methods``)."""
        self.app = app
        self.routes = routes
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_allow(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 405:
                allow = self.allowed.get(self.routes.match(scope["path"]))
                if allow is not None:
                    headers = [(k, v) for k, v in message.get("headers", []) if k != b"allow"]
                    message = {**message, "headers": [*headers, (b"allow", allow.encode())]}
            await send(message)

        await self.app(scope, receive, send_with_allow)

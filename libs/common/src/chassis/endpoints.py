"""The endpoints every service exposes (design §4), answered before the API stack."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from chassis.health import HealthRegistry
from chassis.info import ServiceInfo
from chassis.metrics import ServiceMetrics

LIVE = "/health/live"
READY = "/health/ready"
HEALTHCHECK = "/healthcheck"
METRICS = "/metrics"
INFO = "/info"
PATHS = (LIVE, READY, HEALTHCHECK, METRICS, INFO)

Reply = tuple[int, bytes, str]


class ChassisEndpoints:
    def __init__(
        self,
        app: ASGIApp,
        *,
        health: HealthRegistry,
        metrics: ServiceMetrics,
        info: ServiceInfo,
    ) -> None:
        self.app = app
        self.health = health
        self.metrics = metrics
        self.info_body = orjson.dumps(info.as_json())
        self._routes: dict[str, Callable[[Scope], Awaitable[Reply]]] = {
            LIVE: self._live,
            READY: self._ready,
            HEALTHCHECK: self._ready,
            METRICS: self._metrics,
            INFO: self._info,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = self._routes.get(scope["path"]) if scope["type"] == "http" else None
        if endpoint is None or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        status, body, content_type = await endpoint(scope)
        headers = [
            (b"content-type", content_type.encode("latin-1")),
            (b"content-length", str(len(body)).encode("latin-1")),
            (b"cache-control", b"no-store"),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
        )

    async def _live(self, _: Scope) -> Reply:
        return 200, b'{"status":"UP"}', "application/json"

    async def _ready(self, _: Scope) -> Reply:
        readiness = await self.health.readiness()
        return readiness.http_status, orjson.dumps(readiness.as_json()), "application/json"

    async def _metrics(self, scope: Scope) -> Reply:
        accept = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"accept"), None)
        body, content_type = self.metrics.exposition(accept)
        return 200, body, content_type

    async def _info(self, _: Scope) -> Reply:
        return 200, self.info_body, "application/json"

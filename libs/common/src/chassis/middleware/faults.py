"""Fault injection for demos and resilience tests: off unless ``faults.enabled``.

A token-protected admin endpoint sets, at run time, an error rate, an added latency or a full
outage, for the whole service or some route templates::

    PUT    /admin/faults   {"error_rate": 0.5, "latency_ms": 200, "outage": false,
                            "routes": ["/books/{book_id}"], "status": 503}
    GET    /admin/faults   the current faults
    DELETE /admin/faults   heal

``status`` in a PUT is the status of error_rate's random failures; an outage always answers
503. All three answer the faults now in force, as they will act (see :func:`describe`)::

    {"active": true, "outage": true, "error_rate": 0.0, "status": 503, "latency_ms": 0,
     "routes": [], "effect": "every request to any API route answers 503"}

where ``status`` is what a faulted request answers (null while none fails) and ``effect`` says
it in words.

``Authorization: Bearer <faults.token>`` is required (401 without it); with the feature disabled
the endpoint does not exist (404). The chassis' own endpoints (health, metrics, info, admin) are
never faulted, so a broken service can still be observed and healed. Sits inside the telemetry
middleware: injected failures are traced, logged and counted like real ones.
"""

from __future__ import annotations

import asyncio
import hmac
import random
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from chassis.endpoints import PATHS as CHASSIS_PATHS
from chassis.errors import problem_response
from chassis.logging import get_logger
from chassis.routes import RouteTable

ADMIN_PATH = "/admin/faults"
OUTAGE_STATUS = 503
DEFAULT_ERROR_STATUS = 500
EXEMPT = frozenset({*CHASSIS_PATHS, ADMIN_PATH})
log = get_logger("chassis.faults")


@dataclass(frozen=True)
class Faults:
    error_rate: float = 0.0
    status: int = DEFAULT_ERROR_STATUS  # of error_rate's failures; an outage answers 503
    latency_ms: int = 0
    outage: bool = False
    routes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def active(self) -> bool:
        return self.outage or self.error_rate > 0 or self.latency_ms > 0

    @property
    def failure_status(self) -> int | None:
        """What a faulted request answers: the outage's 503, else error_rate's status; None
        when no request fails (healed, or latency only)."""
        if self.outage:
            return OUTAGE_STATUS
        if self.error_rate > 0:
            return self.status
        return None

    def applies_to(self, route: str) -> bool:
        return not self.routes or route in self.routes


HEALTHY = Faults()


class FaultError(ValueError):
    pass


def parse_faults(body: Any) -> Faults:
    """Validates an admin request body; the message names the offending field."""
    if not isinstance(body, dict):
        raise FaultError("body: expected a JSON object")
    unknown = set(body) - {"error_rate", "status", "latency_ms", "outage", "routes"}
    if unknown:
        raise FaultError(f"{sorted(unknown)[0]}: unknown field")
    error_rate = body.get("error_rate", 0.0)
    if not isinstance(error_rate, int | float) or isinstance(error_rate, bool):
        raise FaultError("error_rate: expected a number between 0 and 1")
    if not 0 <= error_rate <= 1:
        raise FaultError("error_rate: expected a number between 0 and 1")
    status = body.get("status", DEFAULT_ERROR_STATUS)
    if not isinstance(status, int) or isinstance(status, bool) or not 500 <= status <= 599:
        raise FaultError("status: expected a 5xx status code")
    latency = body.get("latency_ms", 0)
    if not isinstance(latency, int) or isinstance(latency, bool) or not 0 <= latency <= 60_000:
        raise FaultError("latency_ms: expected whole milliseconds between 0 and 60000")
    outage = body.get("outage", False)
    if not isinstance(outage, bool):
        raise FaultError("outage: expected true or false")
    routes = body.get("routes", [])
    if not isinstance(routes, list) or not all(isinstance(r, str) for r in routes):
        raise FaultError("routes: expected a list of route templates")
    return Faults(float(error_rate), status, latency, outage, tuple(routes))


class FaultInjectionMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str,
        routes: RouteTable,
        rng: random.Random | None = None,
    ) -> None:
        self.app = app
        self.token = token.encode()
        self.routes = routes
        self.rng = rng or random.Random()
        self.faults = HEALTHY

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path == ADMIN_PATH:
            await self._admin(scope, receive, send)
            return
        faults = self.faults
        if not faults.active or path in EXEMPT:
            await self.app(scope, receive, send)
            return
        route = self.routes.match(path)
        if not faults.applies_to(route):
            await self.app(scope, receive, send)
            return
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000)
        if faults.outage:
            response = problem_response(
                OUTAGE_STATUS, "injected fault: the service is in an outage"
            )
            await response(scope, receive, send)
            return
        if faults.error_rate and self.rng.random() < faults.error_rate:
            response = problem_response(faults.status, "injected fault: a random failure")
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _admin(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._authorised(scope):
            response = problem_response(
                401, "Authorization: a valid bearer token is required", field="Authorization"
            )
            response.headers["WWW-Authenticate"] = 'Bearer realm="faults"'
            await response(scope, receive, send)
            return
        method = scope["method"]
        if method == "PUT":
            try:
                self.faults = parse_faults(orjson.loads(await _body(receive)))
            except (FaultError, orjson.JSONDecodeError) as exc:
                await problem_response(400, str(exc))(scope, receive, send)
                return
            answer = describe(self.faults)
            log.warning("faults injected", **{k: v for k, v in answer.items() if v is not None})
        elif method == "DELETE":
            self.faults = HEALTHY
            log.warning("faults healed")
        elif method != "GET":
            await problem_response(405, f"{method} is not allowed here")(scope, receive, send)
            return
        body = orjson.dumps(describe(self.faults))
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _authorised(self, scope: Scope) -> bool:
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, credentials = value.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(
                    credentials.strip(), self.token
                )
        return False


def describe(faults: Faults) -> dict[str, Any]:
    """The admin endpoint's answer: the faults in force and what they do to a request."""
    return {
        "active": faults.active,
        "outage": faults.outage,
        "error_rate": faults.error_rate,
        "status": faults.failure_status,
        "latency_ms": faults.latency_ms,
        "routes": list(faults.routes),
        "effect": effect(faults),
    }


def effect(faults: Faults) -> str:
    """``faults`` in words, e.g. "50% of requests to /books/{book_id} answer 502"."""
    if not faults.active:
        return "none: every request is served normally"
    target = "to " + ", ".join(faults.routes) if faults.routes else "to any API route"
    delay = faults.latency_ms
    if faults.outage:
        text = f"every request {target} answers {OUTAGE_STATUS}"
        return f"{text} after a {delay} ms delay" if delay else text
    if faults.error_rate > 0:
        text = f"{faults.error_rate * 100:g}% of requests {target} answer {faults.status}"
        return f"{text}; every one is delayed {delay} ms" if delay else text
    return f"every request {target} is delayed {delay} ms"


async def _body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)

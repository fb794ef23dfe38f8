"""Server span, RED metrics and one access-log line for every HTTP request.

Outermost layer: it sees requests that connexion answers itself (400, 404, 405), the chassis'
own endpoints and unhandled errors alike, and labels them all by route template.

Probes and scrapes (``PROBE_ROUTES``: liveness, readiness, ``/healthcheck``, ``/metrics``) come
every few seconds from machines; their access-log line is written at DEBUG, so the INFO log
holds the requests people make (``LOGGING__LEVEL=DEBUG`` shows them too). They are traced and
measured like every other request. The status is always a plain ``int``, in the log, the span
and the metric label, whatever an application put in its ``http.response.start``.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.semconv.attributes import (
    client_attributes,
    error_attributes,
    http_attributes,
    url_attributes,
    user_agent_attributes,
)
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chassis.endpoints import HEALTHCHECK, LIVE, METRICS, READY
from chassis.logging import CachedLogger
from chassis.metrics import ServiceMetrics
from chassis.routes import RouteTable, normalise_method
from chassis.tracing import CHASSIS_PROPAGATOR

access_log = CachedLogger("chassis.access")
# Requests machines make every few seconds: their access-log line is DEBUG, not INFO. /info is not
# here: nothing polls it, so its rare requests (a person, a deploy script) are worth a line.
PROBE_ROUTES = frozenset({LIVE, READY, HEALTHCHECK, METRICS})


class _Headers:
    """Getter for the propagator over raw ASGI headers, without building a dict per request."""

    @staticmethod
    def get(carrier: list[tuple[bytes, bytes]], key: str) -> list[str] | None:
        wanted = key.encode("latin-1")
        values = [v.decode("latin-1") for k, v in carrier if k == wanted]
        return values or None

    @staticmethod
    def keys(carrier: list[tuple[bytes, bytes]]) -> list[str]:
        return [k.decode("latin-1") for k, _ in carrier]


_GETTER = _Headers()


def _extract(headers: list[tuple[bytes, bytes]]) -> context.Context:
    """The incoming trace context (``propagate.extract``). With the chassis' propagators
    installed, a request that carries none of their headers gets what they would all return
    for it, an empty context, without asking each of them to look."""
    if propagate.get_global_textmap() is CHASSIS_PROPAGATOR:
        for name, _ in headers:
            if name in _PROPAGATION_HEADERS:
                break
        else:
            return context.Context()
    return propagate.extract(headers, getter=_GETTER)  # type: ignore[arg-type]


_PROPAGATION_HEADERS = frozenset(field.encode("latin-1") for field in CHASSIS_PROPAGATOR.fields)


class TelemetryMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        tracer: trace.Tracer,
        metrics: ServiceMetrics,
        routes: RouteTable,
        access_log_enabled: bool = True,
        probe_routes: Collection[str] = PROBE_ROUTES,
    ) -> None:
        """``probe_routes``: route templates whose access-log line is DEBUG rather than INFO."""
        self.app = app
        self.tracer = tracer
        self.metrics = metrics
        self.routes = routes
        self.access_log_enabled = access_log_enabled
        # Decided per route, by one set lookup on the template the route table hands out.
        self.probe_routes = frozenset(probe_routes)
        # Each label combination's child, looked up once (labels() validates and locks per call).
        # As bounded as the label values: methods are normalised, routes are templates.
        self._active: dict[str, Any] = {}
        self._durations: dict[tuple[str, str, int], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method = normalise_method(scope["method"])
        path = scope["path"]
        route = self.routes.match(path)
        parent = _extract(scope["headers"])
        span = self.tracer.start_span(
            f"{method} {route}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes=_request_attributes(scope, method, route),
        )
        token = context.attach(trace.set_span_in_context(span, parent))
        active = self._active.get(method)
        if active is None:
            active = self._active[method] = self.metrics.server_active.labels(method)
        active.inc()
        status_code = 500
        error_type: str | None = None

        async def send_with_status(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status = message["status"]
                # An IntEnum (HTTPStatus) would log as <HTTPStatus.X: 503> in the console.
                status_code = status if type(status) is int else int(status)
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        except BaseException as exc:
            span.record_exception(exc)
            error_type = type(exc).__qualname__
            raise
        finally:
            duration = time.perf_counter() - started
            active.dec()
            self._finish_span(span, status_code, error_type)
            self._observe(span, method, route, status_code, duration)
            if self.access_log_enabled:
                logger = access_log.get()
                # A failing probe (readiness 503) is news: INFO like any other request.
                quiet = route in self.probe_routes and status_code < 500
                write = logger.debug if quiet else logger.info
                write(
                    "request",
                    method=method,
                    route=route,
                    path=path,
                    status=status_code,
                    duration_ms=round(duration * 1000, 2),
                )
            context.detach(token)
            span.end()

    @staticmethod
    def _finish_span(span: trace.Span, status_code: int, error_type: str | None) -> None:
        span.set_attribute(http_attributes.HTTP_RESPONSE_STATUS_CODE, status_code)
        if error_type is None and status_code >= 500:
            error_type = str(status_code)
        if error_type is not None:  # semconv: the exception's type wins over the status code
            span.set_attribute(error_attributes.ERROR_TYPE, error_type)
            span.set_status(Status(StatusCode.ERROR))

    def _observe(
        self, span: trace.Span, method: str, route: str, status_code: int, duration: float
    ) -> None:
        span_context = span.get_span_context()
        exemplar = (
            {"trace_id": format(span_context.trace_id, "032x")}
            if span_context.trace_flags.sampled
            else None
        )
        key = (method, route, status_code)
        child = self._durations.get(key)
        if child is None:
            child = self.metrics.server_duration.labels(method, route, str(status_code))
            self._durations[key] = child
        child.observe(duration, exemplar=exemplar)


def _request_attributes(scope: Scope, method: str, route: str) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        http_attributes.HTTP_REQUEST_METHOD: method,
        http_attributes.HTTP_ROUTE: route,
        url_attributes.URL_PATH: scope["path"],
        url_attributes.URL_SCHEME: scope.get("scheme", "http"),
    }
    client = scope.get("client")
    if client:
        attributes[client_attributes.CLIENT_ADDRESS] = client[0]
    for name, value in scope["headers"]:
        if name == b"user-agent":
            attributes[user_agent_attributes.USER_AGENT_ORIGINAL] = value.decode("latin-1")
            break
    return attributes

"""The app factory: ``Service(settings, spec=..., handlers=module)`` is a complete ASGI service.

Layers, outermost first (each a small ASGI middleware):

    TelemetryMiddleware   span, RED metrics, access log for every request
    SecurityHeadersMiddleware nosniff on every answer; a Content-Security-Policy on pages
    AllowHeaderMiddleware a 405's Allow lists every method the path's operations take
    RequestBodyMiddleware 413 over the size limit, 400 for JSON that is not UTF-8 or nests too
                          deep; the media type in lower case
    ChassisEndpoints      /health/live, /health/ready, /healthcheck, /metrics, /info
    connexion middleware  Swagger UI, routing, bearer tokens of secured operations
                          (chassis.auth), validation -> ProblemMiddleware -> HandlerApp

Every operation with a request body gets a 415 answer in the OpenAPI document it serves
(:func:`~chassis.middleware.media_types.declare_body_answers`, with its 413), since the chassis
answers one to a body without a Content-Type or with one the operation does not take.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextvars import ContextVar
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import connexion
import yaml
from connexion.middleware.context import ContextMiddleware
from connexion.middleware.lifespan import LifespanMiddleware
from connexion.middleware.response_validation import ResponseValidationMiddleware
from connexion.middleware.routing import RoutingMiddleware
from connexion.middleware.security import SecurityMiddleware
from opentelemetry.sdk.trace import SpanProcessor
from starlette.types import Receive, Scope, Send

from chassis import auth, endpoints
from chassis.client import ServiceClient
from chassis.config import Settings
from chassis.db import Database
from chassis.handlers import HandlerApp, HandlerResolver
from chassis.health import HealthCheck, HealthRegistry, ShutdownState
from chassis.info import collect_info
from chassis.logging import configure_logging, get_logger
from chassis.metrics import ServiceMetrics
from chassis.middleware import faults as faults_middleware
from chassis.middleware.allow import AllowHeaderMiddleware
from chassis.middleware.api_docs import ApiDocsMiddleware
from chassis.middleware.media_types import declare_body_answers
from chassis.middleware.problems import ProblemMiddleware
from chassis.middleware.request_body import RequestBodyMiddleware
from chassis.middleware.security_headers import SecurityHeadersMiddleware
from chassis.middleware.telemetry import TelemetryMiddleware
from chassis.routes import RouteTable, base_path, spec_methods, spec_templates
from chassis.threads import HandlerThreads
from chassis.tracing import TRACER_NAME, build_tracer_provider
from chassis.validation import NamingParameterValidator, RequestValidation, body_validators

log = get_logger("chassis.service")
Hook = Callable[["Service"], Awaitable[None] | None]
API_DOC_ROUTES = ("/openapi.json", "/ui", "/ui/", "/ui/{asset}")
FLUSH_TIMEOUT_MILLIS = 5000

T = TypeVar("T")
_current_service: ContextVar[Service] = ContextVar("chassis_service")


def current_service() -> Service:
    """The service handling the current request (for handlers that need settings or clients)."""
    return _current_service.get()


class SetupLockedError(RuntimeError):
    """Raised when setup is changed after the service has started serving."""


class Service:
    def __init__(
        self,
        settings: Settings,
        *,
        spec: Path,
        handlers: ModuleType,
        span_processors: Iterable[SpanProcessor] = (),
        handler_threads: int | None = None,
    ) -> None:
        self.settings = settings
        self.name = settings.service.name
        configure_logging(self.name, settings.logging)
        self.metrics = ServiceMetrics()
        self.tracer_provider = build_tracer_provider(
            settings, extra_processors=tuple(span_processors)
        )
        self.tracer = self.tracer_provider.get_tracer(TRACER_NAME)
        self.database = Database(settings.database, self.tracer_provider)
        self.shutdown = ShutdownState()
        self.health = HealthRegistry(
            timeout_seconds=settings.health.check_timeout_seconds, shutdown=self.shutdown
        )
        self.health.add(self.database.health_check())
        self.clients: dict[str, ServiceClient] = {}
        for name, section in settings.dependencies.items():
            client = ServiceClient.from_settings(
                name, section, metrics=self.metrics, tracer=self.tracer
            )
            self.clients[name] = client
            self.health.add(client.health_check())
        self.info = collect_info(
            self.name, settings.service.version, settings.environment, spec.parent
        )
        self.metrics.service_info.labels(self.name, self.info.version, self.info.commit).set(1)
        threads = (
            handler_threads
            or settings.http.handler_threads
            # One per pooled connection: more would open and close overflow connections on
            # every burst (a connect, and on SQLite three PRAGMAs, per request).
            or settings.database.pool_size
        )
        self.executor = HandlerThreads(threads, thread_name_prefix=f"{self.name}-handler")
        self._components: dict[type, Any] = {}
        self.faults: faults_middleware.FaultInjectionMiddleware | None = None
        self._startup: list[Hook] = []
        self._shutdown: list[Hook] = []
        self._serving = False
        document = yaml.safe_load(spec.read_text(encoding="utf-8"))  # read once, used twice
        self.api = self._build_api(spec, document, handlers)
        self.asgi = self._build_stack(document)

    async def in_session(self, function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """For ``async def`` handlers: runs ``function(session, *args, **kwargs)`` on a worker
        thread inside a session scope (committed on success, rolled back on error)."""

        def call() -> T:
            with self.database.session_scope() as session:
                return function(session, *args, **kwargs)

        return await self.executor.call(contextvars.copy_context().run, call)

    def provide(self, component: object) -> None:
        """Keeps a service-specific object (its clients, caches, ...) for handlers to find by
        type with :meth:`component`; like Flask's ``app.extensions``, set in the app factory."""
        self._ensure_not_serving("provide")
        self._components[type(component)] = component

    def component(self, kind: type[T]) -> T:
        try:
            found: T = self._components[kind]
        except KeyError:
            raise KeyError(
                f"{self.name} provides no {kind.__name__}; call provide() first"
            ) from None
        return found

    def client(self, name: str) -> ServiceClient:
        """The client of a dependency declared under ``dependencies.<name>`` in the config."""
        try:
            return self.clients[name]
        except KeyError:
            raise KeyError(
                f"{self.name} has no dependency {name!r}; declare dependencies.{name}.base_url"
            ) from None

    # -- setup (locked once serving starts) ---------------------------------------------------

    def add_check(self, check: HealthCheck) -> None:
        self._ensure_not_serving("add_check")
        self.health.add(check)

    def on_startup(self, hook: Hook) -> Hook:
        self._ensure_not_serving("on_startup")
        self._startup.append(hook)
        return hook

    def on_shutdown(self, hook: Hook) -> Hook:
        self._ensure_not_serving("on_shutdown")
        self._shutdown.append(hook)
        return hook

    def _ensure_not_serving(self, what: str) -> None:
        if self._serving:
            raise SetupLockedError(
                f"{what}() was called after {self.name} started serving; "
                "register checks and hooks in the app factory, before serving"
            )

    # -- ASGI ---------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = _current_service.set(self)
        try:
            await self.asgi(scope, receive, send)
        finally:
            _current_service.reset(token)

    def _build_api(
        self, spec: Path, document: dict[str, Any], handlers: ModuleType
    ) -> connexion.ConnexionMiddleware:
        validate_responses = self.settings.http.validate_responses
        middlewares: list[Any] = [ProblemMiddleware, ApiDocsMiddleware, RoutingMiddleware]
        verifier = self._token_verifier(document)
        if verifier is not None:
            middlewares.append(SecurityMiddleware)
        middlewares.append(RequestValidation)
        if validate_responses:
            middlewares.append(ResponseValidationMiddleware)
        middlewares += [LifespanMiddleware, ContextMiddleware]
        # connexion's middlewares around the chassis' HandlerApp rather than connexion.AsyncApp,
        # whose own application re-decorates the handler on every request (handlers.py).
        app = connexion.ConnexionMiddleware(
            HandlerApp(),
            import_name=self.name,
            specification_dir=spec.parent,
            middlewares=middlewares,
            lifespan=self._lifespan,
        )
        app.add_api(
            spec.name,
            resolver=HandlerResolver(handlers, self.database, self.executor),
            strict_validation=True,
            validate_responses=validate_responses,
            validator_map={"parameter": NamingParameterValidator, "body": body_validators()},
            security_map=auth.security_map(verifier) if verifier else None,
        )
        # Before the first request or lifespan, when the middlewares take the loaded document.
        loaded = app.apis[-1].specification
        declare_body_answers(
            loaded.raw, loaded.spec, max_body_bytes=self.settings.http.max_body_bytes
        )
        if verifier is not None:
            auth.declare_auth_responses(loaded.raw, loaded.spec)
        return app

    def _token_verifier(self, document: dict[str, Any]) -> auth.TokenVerifier | None:
        secured = auth.secured_operations(document)
        if not secured:
            return None
        if not self.settings.auth.enabled:
            log.warning("auth is disabled: anyone may call secured operations", operations=secured)
            return None
        return auth.TokenVerifier(self.settings.auth, service_name=self.name)

    def _build_stack(self, document: dict[str, Any]) -> Any:
        api_docs = [base_path(document) + route for route in API_DOC_ROUTES]
        faults = self.settings.faults
        admin = [faults_middleware.ADMIN_PATH] if faults.enabled else []
        routes = RouteTable([*spec_templates(document), *endpoints.PATHS, *api_docs, *admin])
        stack: Any = endpoints.ChassisEndpoints(
            self.api, health=self.health, metrics=self.metrics, info=self.info
        )
        if faults.enabled and faults.token is not None:
            stack = self.faults = faults_middleware.FaultInjectionMiddleware(
                stack, token=faults.token.get_secret_value(), routes=routes
            )
        stack = RequestBodyMiddleware(
            stack,
            max_body_bytes=self.settings.http.max_body_bytes,
            max_json_depth=self.settings.http.max_json_depth,
        )
        stack = AllowHeaderMiddleware(stack, routes=routes, allowed=spec_methods(document))
        stack = SecurityHeadersMiddleware(stack)
        return TelemetryMiddleware(
            stack,
            tracer=self.tracer,
            metrics=self.metrics,
            routes=routes,
            access_log_enabled=self.settings.logging.access_log,
        )

    # -- lifecycle ----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _lifespan(self, _: Any) -> AsyncIterator[None]:
        self._serving = True
        for hook in self._startup:
            await _maybe_await(hook(self))
        log.info("service started", version=self.info.version, commit=self.info.commit)
        try:
            yield
        finally:
            self.shutdown.begin()
            for hook in reversed(self._shutdown):
                try:
                    await _maybe_await(hook(self))
                except Exception:
                    log.exception("shutdown hook failed", hook=getattr(hook, "__name__", "?"))
            log.info("service stopped")
            self.close()

    def close(self) -> None:
        """Flushes telemetry and releases the database and worker threads."""
        self.shutdown.begin()
        self.tracer_provider.force_flush(FLUSH_TIMEOUT_MILLIS)
        self.tracer_provider.shutdown()
        self.database.dispose()
        for client in self.clients.values():
            client.close()
        self.executor.shutdown(wait=False, cancel_futures=True)


async def _maybe_await(result: Awaitable[None] | None) -> None:
    if result is not None:
        await result

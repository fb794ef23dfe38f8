"""The resilient client a service uses to call its dependencies (design §7).

    ServiceClient("books", base_url, ...)  -> httpx.Client
        ResilientTransport                  deadline, breaker, retries with backoff
            one client span + metrics per attempt, W3C trace context and baggage injected
            httpx.HTTPTransport             connect/read timeouts

Exception tree (every one a ProblemError naming the dependency, rendered as problem+json)::

    DependencyError
    ├── DependencyUnavailable   503  connection refused/reset, or the dependency answered 503
    ├── DependencyTimeout       504  a timeout or the call's overall deadline
    └── BadGateway              502  any other 5xx from the dependency, or a 401/403 to this
                                     service's own credential (dependencies.<name>.token)
    CircuitOpenError            503  with Retry-After, raised before trying (chassis.breaker)

Responses below 500 are returned to the caller (a 404 from books is an answer, not a failure),
except a 401 or 403: the call carried the service's credential, so a refusal is a deployment to
fix, not an answer.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import httpx
from opentelemetry import propagate, trace
from opentelemetry.semconv.attributes import (
    error_attributes,
    http_attributes,
    server_attributes,
    url_attributes,
)
from opentelemetry.trace import SpanKind, Status, StatusCode

from chassis.breaker import BreakerPolicy, CircuitBreaker, CircuitOpenError, Outcome, Permit, State
from chassis.config import DependencySection
from chassis.errors import ProblemError
from chassis.health import DEGRADED, DOWN, UP, CheckResult
from chassis.logging import get_logger
from chassis.metrics import ServiceMetrics
from chassis.retry import RetryPolicy, retry_after_seconds

log = get_logger("chassis.client")
TEMPLATE_EXTENSION = "chassis.template"
RESEND_COUNT = "http.request.resend_count"
REFUSED_CREDENTIAL = (HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN)


@dataclass(frozen=True, kw_only=True)
class Timeouts:
    connect_seconds: float = 0.5
    read_seconds: float = 2.0
    deadline_seconds: float = 5.0


DEFAULT_TIMEOUTS = Timeouts()


class DependencyError(ProblemError):
    def __init__(self, dependency: str, detail: str, **kw: Any) -> None:
        super().__init__(detail, title="Dependency failed", dependency=dependency, **kw)
        self.dependency = dependency


class DependencyUnavailable(DependencyError):
    status = HTTPStatus.SERVICE_UNAVAILABLE.value


class DependencyTimeout(DependencyError):
    status = HTTPStatus.GATEWAY_TIMEOUT.value


class BadGateway(DependencyError):
    status = HTTPStatus.BAD_GATEWAY.value


class ResilientTransport(httpx.BaseTransport):
    def __init__(
        self,
        peer: str,
        inner: httpx.BaseTransport,
        *,
        timeouts: Timeouts,
        retry: RetryPolicy,
        breaker: CircuitBreaker | None,
        metrics: ServiceMetrics,
        tracer: trace.Tracer,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.peer = peer
        self.inner = inner
        self.timeouts = timeouts
        self.retry = retry
        self.breaker = breaker
        self.metrics = metrics
        self.tracer = tracer
        self.sleep = sleep
        self.clock = clock
        self.rng = rng or random.Random()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        deadline = self.clock() + self.timeouts.deadline_seconds
        retryable = self.retry.may_retry(request.method, dict(request.headers))
        attempts = self.retry.max_attempts if retryable else 1
        for attempt in range(1, attempts + 1):
            remaining = deadline - self.clock()
            if remaining <= 0:
                raise DependencyTimeout(
                    self.peer, f"{self.peer} did not answer within the deadline"
                )
            permit = self.breaker.acquire() if self.breaker else None  # open: raise, never retry
            self._limit_timeouts(request, remaining)
            started = self.clock()
            try:
                response = self._attempt(request, attempt)
            except httpx.TransportError:
                self._record(permit, failed=True, started=started)
                if attempt == attempts or not self._wait(self._backoff(attempt), deadline):
                    raise
                continue
            self._record(permit, failed=response.status_code >= 500, started=started)
            if response.status_code not in self.retry.retry_statuses or attempt == attempts:
                return response
            asked = retry_after_seconds(response.headers.get("retry-after")) or 0.0
            if not self._wait(max(asked, self._backoff(attempt)), deadline):
                return response
            response.close()
        raise AssertionError("unreachable: the last attempt returns or raises")

    def close(self) -> None:
        self.inner.close()

    def _attempt(self, request: httpx.Request, attempt: int) -> httpx.Response:
        template = request.extensions.get(TEMPLATE_EXTENSION)
        method = request.method
        attributes: dict[str, Any] = {
            http_attributes.HTTP_REQUEST_METHOD: method,
            server_attributes.SERVER_ADDRESS: request.url.host,
            url_attributes.URL_FULL: str(request.url.copy_with(query=None)),
            "peer.service": self.peer,
        }
        if request.url.port:
            attributes[server_attributes.SERVER_PORT] = request.url.port
        if attempt > 1:
            attributes[RESEND_COUNT] = attempt - 1
        name = f"{method} {template}" if template else method
        started = time.perf_counter()
        with self.tracer.start_as_current_span(
            name, kind=SpanKind.CLIENT, attributes=attributes, record_exception=True
        ) as span:
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            request.headers.update(carrier)
            try:
                response = self.inner.handle_request(request)
                response.read()
            except httpx.TransportError as exc:
                span.set_attribute(error_attributes.ERROR_TYPE, type(exc).__name__)
                self._observe(span, method, error_type=type(exc).__name__, started=started)
                raise
            span.set_attribute(http_attributes.HTTP_RESPONSE_STATUS_CODE, response.status_code)
            if response.status_code >= 500:
                span.set_attribute(error_attributes.ERROR_TYPE, str(response.status_code))
                span.set_status(Status(StatusCode.ERROR))
            self._observe(span, method, status=str(response.status_code), started=started)
            return response

    def _observe(
        self,
        span: trace.Span,
        method: str,
        *,
        started: float,
        status: str = "",
        error_type: str = "",
    ) -> None:
        context = span.get_span_context()
        exemplar = {"trace_id": format(context.trace_id, "032x")} if context.is_valid else None
        self.metrics.client_duration.labels(self.peer, method, status, error_type).observe(
            time.perf_counter() - started, exemplar=exemplar
        )

    def _limit_timeouts(self, request: httpx.Request, remaining: float) -> None:
        read = min(self.timeouts.read_seconds, remaining)
        request.extensions["timeout"] = {
            "connect": min(self.timeouts.connect_seconds, remaining),
            "read": read,
            "write": read,
            "pool": min(self.timeouts.connect_seconds, remaining),
        }

    def _record(self, permit: Permit | None, *, failed: bool, started: float) -> None:
        if self.breaker is not None and permit is not None:
            self.breaker.record(permit, failed=failed, duration=self.clock() - started)

    def _backoff(self, attempt: int) -> float:
        return self.retry.backoff(attempt, self.rng)

    def _wait(self, seconds: float, deadline: float) -> bool:
        """Sleeps before a retry; False when the retry could not start before the deadline."""
        if self.clock() + seconds >= deadline:
            return False
        self.metrics.client_retries.labels(self.peer).inc()
        self.sleep(seconds)
        return True


class ServiceClient:
    """Calls one dependency: ``books.get("/books/{book_id}", book_id=7)``."""

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        metrics: ServiceMetrics,
        tracer: trace.Tracer,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        retry: RetryPolicy | None = None,
        breaker: BreakerPolicy | None = None,
        critical: bool = False,
        token: str | None = None,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.critical = critical
        self.metrics = metrics
        self.breaker = (
            CircuitBreaker(
                name,
                breaker,
                clock=clock,
                on_state_change=self._state_changed,
                on_outcome=self._count_outcome,
            )
            if breaker is not None
            else None
        )
        self._show_state(State.CLOSED)
        self.transport = ResilientTransport(
            name,
            transport or httpx.HTTPTransport(),
            timeouts=timeouts,
            retry=retry or RetryPolicy(),
            breaker=self.breaker,
            metrics=metrics,
            tracer=tracer,
            clock=clock,
        )
        # The service credential rides on every call; httpx never logs headers.
        credential = {"Authorization": f"Bearer {token}"} if token else None
        self._http = httpx.Client(base_url=base_url, transport=self.transport, headers=credential)

    @classmethod
    def from_settings(
        cls,
        name: str,
        section: DependencySection,
        *,
        metrics: ServiceMetrics,
        tracer: trace.Tracer,
        transport: httpx.BaseTransport | None = None,
    ) -> ServiceClient:
        breaker = section.breaker
        return cls(
            name,
            section.base_url,
            metrics=metrics,
            tracer=tracer,
            timeouts=Timeouts(
                connect_seconds=section.connect_timeout_seconds,
                read_seconds=section.read_timeout_seconds,
                deadline_seconds=section.deadline_seconds,
            ),
            retry=RetryPolicy(
                max_attempts=section.retry.max_attempts,
                base_seconds=section.retry.base_seconds,
                cap_seconds=section.retry.cap_seconds,
            ),
            breaker=BreakerPolicy(
                window_size=breaker.window_size,
                minimum_calls=breaker.minimum_calls,
                failure_rate_threshold=breaker.failure_rate_threshold,
                slow_call_rate_threshold=breaker.slow_call_rate_threshold,
                slow_call_seconds=breaker.slow_call_ratio * section.read_timeout_seconds,
                open_seconds=breaker.open_seconds,
                half_open_calls=breaker.half_open_calls,
            )
            if breaker.enabled
            else None,
            critical=section.critical,
            token=section.token.get_secret_value() if section.token else None,
            transport=transport,
        )

    # -- calls --------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        template: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        **path_params: Any,
    ) -> httpx.Response:
        """Sends one call; returns answers below 500, raises a DependencyError otherwise."""
        path = template.format(**path_params) if path_params else template
        try:
            response = self._http.request(
                method,
                path,
                json=json,
                params=params,
                headers=headers,
                extensions={TEMPLATE_EXTENSION: template},
            )
        except CircuitOpenError:
            raise
        except httpx.TimeoutException as exc:
            raise DependencyTimeout(
                self.name, f"{self.name} timed out ({type(exc).__name__})"
            ) from exc
        except httpx.TransportError as exc:
            raise DependencyUnavailable(
                self.name, f"{self.name} is unreachable ({type(exc).__name__})"
            ) from exc
        if response.status_code >= 500:
            raise self._server_error(response)
        if response.status_code in REFUSED_CREDENTIAL:
            # Our own credential was refused: a deployment to fix, not the caller's mistake.
            raise BadGateway(
                self.name,
                f"{self.name} refused this service's credential ({response.status_code}); "
                f"check dependencies.{self.name}.token",
            )
        return response

    def get(self, template: str, **kw: Any) -> httpx.Response:
        return self.request("GET", template, **kw)

    def post(self, template: str, **kw: Any) -> httpx.Response:
        return self.request("POST", template, **kw)

    def delete(self, template: str, **kw: Any) -> httpx.Response:
        return self.request("DELETE", template, **kw)

    def close(self) -> None:
        self._http.close()

    def _server_error(self, response: httpx.Response) -> DependencyError:
        status = response.status_code
        detail = f"{self.name} answered {status}"
        if status == HTTPStatus.GATEWAY_TIMEOUT:
            return DependencyTimeout(self.name, detail)
        if status == HTTPStatus.SERVICE_UNAVAILABLE:
            asked = retry_after_seconds(response.headers.get("retry-after"))
            headers = {"Retry-After": str(max(1, round(asked)))} if asked else None
            return DependencyUnavailable(self.name, detail, headers=headers)
        return BadGateway(self.name, detail)

    # -- health and telemetry -----------------------------------------------------------------

    def health_check(self) -> DependencyCheck:
        return DependencyCheck(self)

    def _state_changed(self, previous: State, current: State) -> None:
        self._show_state(current)
        log_method = log.info if current is State.CLOSED else log.warning
        log_method(
            "circuit breaker state changed",
            peer_service=self.name,
            previous_state=previous.value,
            state=current.value,
        )

    def _show_state(self, current: State) -> None:
        for state in State:
            self.metrics.breaker_state.labels(self.name, state.value).set(int(state is current))

    def _count_outcome(self, outcome: Outcome) -> None:
        self.metrics.breaker_calls.labels(self.name, outcome.value).inc()


class DependencyCheck:
    """A neighbour's health as its breaker sees it; never probes the neighbour itself."""

    def __init__(self, client: ServiceClient) -> None:
        self.client = client
        self.name = client.name
        self.critical = client.critical

    async def check(self) -> CheckResult:
        breaker = self.client.breaker
        if breaker is None:
            return CheckResult(UP, {"breaker": "disabled"})
        state = breaker.state
        status = {State.CLOSED: UP, State.HALF_OPEN: DEGRADED, State.OPEN: DOWN}[state]
        details: dict[str, Any] = {"breaker": state.value}
        if state is State.OPEN:
            details["retry_after_seconds"] = round(breaker.retry_after(), 1)
        return CheckResult(status, details)

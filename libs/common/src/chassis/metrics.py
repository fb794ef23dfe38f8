"""The design §5 Prometheus metrics, each name and label defined once here.

Dashboards and alert rules query these names: change one only together with them.
"""

from __future__ import annotations

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)
from prometheus_client.exposition import choose_encoder

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)

HTTP_SERVER_DURATION = "http_server_request_duration_seconds"
HTTP_SERVER_ACTIVE = "http_server_active_requests"
HTTP_CLIENT_DURATION = "http_client_request_duration_seconds"
HTTP_CLIENT_RETRIES = "http_client_retries_total"
BREAKER_STATE = "circuit_breaker_state"
BREAKER_CALLS = "circuit_breaker_calls_total"
SERVICE_INFO = "service_info"
# Every metric the chassis registers, in the order design §5 lists them.
NAMES = (
    HTTP_SERVER_DURATION,
    HTTP_SERVER_ACTIVE,
    HTTP_CLIENT_DURATION,
    HTTP_CLIENT_RETRIES,
    BREAKER_STATE,
    BREAKER_CALLS,
    SERVICE_INFO,
)

METHOD = "http_request_method"
ROUTE = "http_route"
STATUS = "http_response_status_code"
PEER = "peer_service"
ERROR_TYPE = "error_type"
STATE = "state"
OUTCOME = "outcome"

UNMATCHED_ROUTE = "NOT_FOUND"


class ServiceMetrics:
    """The metrics of one service instance, in its own registry so tests never share state."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(collector)
        reg = self.registry
        self.server_duration = Histogram(
            HTTP_SERVER_DURATION,
            "Duration of HTTP server requests.",
            (METHOD, ROUTE, STATUS),
            buckets=DURATION_BUCKETS,
            registry=reg,
        )
        self.server_active = Gauge(
            HTTP_SERVER_ACTIVE, "HTTP requests in flight.", (METHOD,), registry=reg
        )
        self.client_duration = Histogram(
            HTTP_CLIENT_DURATION,
            "Duration of outgoing HTTP requests.",
            (PEER, METHOD, STATUS, ERROR_TYPE),
            buckets=DURATION_BUCKETS,
            registry=reg,
        )
        self.client_retries = Counter(
            HTTP_CLIENT_RETRIES, "Retried outgoing HTTP requests.", (PEER,), registry=reg
        )
        self.breaker_state = Gauge(
            BREAKER_STATE, "Circuit breaker state (1 = current).", (PEER, STATE), registry=reg
        )
        self.breaker_calls = Counter(
            BREAKER_CALLS,
            "Calls through a circuit breaker by outcome.",
            (PEER, OUTCOME),
            registry=reg,
        )
        self.service_info = Gauge(
            SERVICE_INFO, "Service identity.", ("service", "version", "commit"), registry=reg
        )

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """Text format by default, OpenMetrics (with exemplars) when the scraper asks."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type

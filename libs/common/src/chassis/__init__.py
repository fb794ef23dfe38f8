"""A small microservice chassis: build a complete service from its folder in a few lines.

    settings = load_settings(BooksSettings, SERVICE_DIR)
    service = Service(settings, spec=SERVICE_DIR / "openapi.yaml", handlers=handlers)

Everything below is importable, but only the names here are the public API.
"""

import warnings

# connexion imports Starlette's TestClient at import time, which warns about httpx at every start
# of every service; the warning is not ours to act on.
warnings.filterwarnings("ignore", message="Using `httpx`", category=UserWarning)

from chassis.breaker import BreakerPolicy, CircuitBreaker, CircuitOpenError  # noqa: E402
from chassis.cli import ServiceCli  # noqa: E402
from chassis.client import (  # noqa: E402
    BadGateway,
    DependencyError,
    DependencyTimeout,
    DependencyUnavailable,
    ServiceClient,
    Timeouts,
)
from chassis.config import ConfigError, DependencySection, Section, Settings, load_settings  # noqa: E402
from chassis.db import current_session  # noqa: E402
from chassis.errors import (  # noqa: E402
    BadRequestError,
    ChassisError,
    ConflictError,
    DatabaseUnavailable,
    NotFoundError,
    ProblemError,
    ServiceUnavailable,
    UnprocessableError,
)
from chassis.health import DEGRADED, DOWN, UP, CheckResult, FunctionCheck, HealthCheck  # noqa: E402
from chassis.logging import get_logger  # noqa: E402
from chassis.retry import RetryPolicy  # noqa: E402
from chassis.service import Service, SetupLockedError, current_service  # noqa: E402

__all__ = [
    "DEGRADED",
    "DOWN",
    "UP",
    "BadGateway",
    "BadRequestError",
    "BreakerPolicy",
    "ChassisError",
    "CheckResult",
    "CircuitBreaker",
    "CircuitOpenError",
    "ConfigError",
    "ConflictError",
    "DatabaseUnavailable",
    "DependencyError",
    "DependencySection",
    "DependencyTimeout",
    "DependencyUnavailable",
    "FunctionCheck",
    "HealthCheck",
    "NotFoundError",
    "ProblemError",
    "RetryPolicy",
    "Section",
    "Service",
    "ServiceCli",
    "ServiceClient",
    "ServiceUnavailable",
    "Settings",
    "SetupLockedError",
    "Timeouts",
    "UnprocessableError",
    "current_service",
    "current_session",
    "get_logger",
    "load_settings",
]

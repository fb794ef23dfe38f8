"""A small microservice chassis: build a complete service from its folder in a few lines.

    settings = load_settings(BooksSettings, SERVICE_DIR)
    service = Service(settings, spec=SERVICE_DIR / "openapi.yaml", handlers=handlers)

Everything below is importable, but only the names here are the public API.
"""

import importlib
import warnings
from typing import TYPE_CHECKING, Any

# connexion imports Starlette's TestClient at import time, which warns about httpx at every start
# of every service; the warning is not ours to act on.
warnings.filterwarnings("ignore", message="Using `httpx`", category=UserWarning)

# Each public name -> the module that defines it (imported on first use: __getattr__ below).
_EXPORTS = {
    "BreakerPolicy": "chassis.breaker",
    "CircuitBreaker": "chassis.breaker",
    "CircuitOpenError": "chassis.breaker",
    "ServiceCli": "chassis.cli",
    "BadGateway": "chassis.client",
    "DependencyError": "chassis.client",
    "DependencyTimeout": "chassis.client",
    "DependencyUnavailable": "chassis.client",
    "ServiceClient": "chassis.client",
    "Timeouts": "chassis.client",
    "ConfigError": "chassis.config",
    "DependencySection": "chassis.config",
    "Section": "chassis.config",
    "Settings": "chassis.config",
    "load_settings": "chassis.config",
    "current_session": "chassis.db",
    "BadRequestError": "chassis.errors",
    "ChassisError": "chassis.errors",
    "ConflictError": "chassis.errors",
    "DatabaseUnavailable": "chassis.errors",
    "NotFoundError": "chassis.errors",
    "ProblemError": "chassis.errors",
    "ServiceUnavailable": "chassis.errors",
    "UnprocessableError": "chassis.errors",
    "CheckResult": "chassis.health",
    "DEGRADED": "chassis.health",
    "DOWN": "chassis.health",
    "FunctionCheck": "chassis.health",
    "HealthCheck": "chassis.health",
    "UP": "chassis.health",
    "get_logger": "chassis.logging",
    "RetryPolicy": "chassis.retry",
    "Service": "chassis.service",
    "SetupLockedError": "chassis.service",
    "current_service": "chassis.service",
}

if TYPE_CHECKING:
    from chassis.breaker import BreakerPolicy, CircuitBreaker, CircuitOpenError
    from chassis.cli import ServiceCli
    from chassis.client import (
        BadGateway,
        DependencyError,
        DependencyTimeout,
        DependencyUnavailable,
        ServiceClient,
        Timeouts,
    )
    from chassis.config import ConfigError, DependencySection, Section, Settings, load_settings
    from chassis.db import current_session
    from chassis.errors import (
        BadRequestError,
        ChassisError,
        ConflictError,
        DatabaseUnavailable,
        NotFoundError,
        ProblemError,
        ServiceUnavailable,
        UnprocessableError,
    )
    from chassis.health import DEGRADED, DOWN, UP, CheckResult, FunctionCheck, HealthCheck
    from chassis.logging import get_logger
    from chassis.retry import RetryPolicy
    from chassis.service import Service, SetupLockedError, current_service


if not TYPE_CHECKING:  # for type checkers a name not imported above does not exist

    def __getattr__(name: str) -> Any:
        """A public name, imported on first use (PEP 562): `<service> migrate` and `seed` load
        the configuration and the database layer, not the web stack."""
        module = _EXPORTS.get(name)
        if module is None:
            raise AttributeError(f"module 'chassis' has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


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

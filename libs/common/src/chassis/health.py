"""Liveness and readiness (design §4, §7).

A check is any object with a ``name``, a ``critical`` flag and a ``check()`` that returns a
:class:`CheckResult` (sync or async; sync checks run in a worker thread). All checks run
concurrently, each bounded by the per-check timeout. The overall status is:

    DOWN      a critical check is not UP, or shutdown has begun        -> 503
    DEGRADED  only non-critical checks (neighbours, breakers) are not UP -> 200
    UP        everything is UP                                          -> 200
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Status = Literal["UP", "DEGRADED", "DOWN"]
UP: Status = "UP"
DEGRADED: Status = "DEGRADED"
DOWN: Status = "DOWN"


@dataclass(frozen=True)
class CheckResult:
    status: Status
    details: dict[str, Any] = field(default_factory=dict)


class HealthCheck(Protocol):
    name: str
    critical: bool

    def check(self) -> CheckResult | Awaitable[CheckResult]: ...


@dataclass(frozen=True)
class FunctionCheck:
    """Adapts a plain function (sync or async) returning a CheckResult."""

    name: str
    function: Callable[[], CheckResult | Awaitable[CheckResult]]
    critical: bool = False

    def check(self) -> CheckResult | Awaitable[CheckResult]:
        return self.function()


class ShutdownState:
    """Set once when shutdown begins; readiness answers 503 from then on."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._listeners: list[Callable[[], None]] = []

    def on_begin(self, listener: Callable[[], None]) -> None:
        """Calls ``listener`` once when shutdown begins (e.g. to end long-lived streams)."""
        self._listeners.append(listener)

    def begin(self) -> None:
        """Safe in a signal handler: takes no lock another thread holds for long."""
        if self._event.is_set():
            return
        self._event.set()
        for listener in self._listeners:
            listener()

    @property
    def shutting_down(self) -> bool:
        return self._event.is_set()


@dataclass(frozen=True)
class Readiness:
    status: Status
    checks: dict[str, dict[str, Any]]

    @property
    def http_status(self) -> int:
        return 503 if self.status == DOWN else 200

    def as_json(self) -> dict[str, Any]:
        return {"status": self.status, "checks": self.checks}


class HealthRegistry:
    def __init__(self, *, timeout_seconds: float, shutdown: ShutdownState) -> None:
        self.timeout_seconds = timeout_seconds
        self.shutdown = shutdown
        self._checks: dict[str, HealthCheck] = {}

    def add(self, check: HealthCheck) -> None:
        if check.name in self._checks:
            raise ValueError(f"a health check named {check.name!r} is already registered")
        self._checks[check.name] = check

    @property
    def checks(self) -> tuple[HealthCheck, ...]:
        return tuple(self._checks.values())

    async def readiness(self) -> Readiness:
        checks = list(self._checks.values())
        results = await asyncio.gather(*(self._run(check) for check in checks))
        report = {check.name: result for check, result in zip(checks, results, strict=True)}
        if self.shutdown.shutting_down:
            report["shutdown"] = {"status": DOWN, "critical": True, "reason": "shutting down"}
        return Readiness(_overall(report), report)

    async def _run(self, check: HealthCheck) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            result = await asyncio.wait_for(self._call(check), self.timeout_seconds)
        except TimeoutError:
            result = CheckResult(DOWN, {"error": f"timed out after {self.timeout_seconds}s"})
        except Exception as exc:  # a broken check is a failing check, not a broken endpoint
            result = CheckResult(DOWN, {"error": type(exc).__name__})
        return {
            "status": result.status,
            "critical": check.critical,
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            **result.details,
        }

    @staticmethod
    async def _call(check: HealthCheck) -> CheckResult:
        if inspect.iscoroutinefunction(check.check):
            return await check.check()  # type: ignore[no-any-return]
        result = await asyncio.to_thread(check.check)
        if inspect.isawaitable(result):
            return await result
        return result


def _overall(report: dict[str, dict[str, Any]]) -> Status:
    status: Status = UP
    for entry in report.values():
        if entry["status"] == UP:
            continue
        if entry["critical"]:
            return DOWN
        status = DEGRADED
    return status

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from chassis import DEGRADED, DOWN, UP, CheckResult, FunctionCheck
from chassis.health import HealthCheck, HealthRegistry, Readiness, ShutdownState


def registry(*checks: HealthCheck, timeout: float = 2.0) -> HealthRegistry:
    health = HealthRegistry(timeout_seconds=timeout, shutdown=ShutdownState())
    for check in checks:
        health.add(check)
    return health


def readiness(
    health: HealthRegistry, then: Callable[[], object] = lambda: None
) -> tuple[Readiness, float]:
    """The readiness and how long it took; ``then`` runs before the loop waits for threads."""

    async def measure() -> tuple[Readiness, float]:
        started = time.perf_counter()
        result = await health.readiness()
        elapsed = time.perf_counter() - started
        then()
        return result, elapsed

    return asyncio.run(measure())


def up() -> CheckResult:
    return CheckResult(UP)


def down() -> CheckResult:
    return CheckResult(DOWN, {"reason": "no answer"})


async def async_up() -> CheckResult:
    await asyncio.sleep(0)
    return CheckResult(UP, {"flavour": "async"})


class AsyncMethodCheck:
    name = "async-method"
    critical = True

    async def check(self) -> CheckResult:
        await asyncio.sleep(0)
        return CheckResult(UP, {"flavour": "method"})


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Set after the test so that threads of hanging sync checks end."""
    event = threading.Event()
    yield event
    event.set()


def test_no_checks_is_up() -> None:
    result, _ = readiness(registry())

    assert (result.status, result.http_status, result.as_json()) == (
        UP,
        200,
        {"status": UP, "checks": {}},
    )


def test_sync_and_async_checks_both_work() -> None:
    health = registry(
        FunctionCheck("sync", up, critical=True),
        FunctionCheck("async", async_up, critical=True),
        AsyncMethodCheck(),
    )

    result, _ = readiness(health)

    assert result.status == UP
    assert {name: entry["status"] for name, entry in result.checks.items()} == {
        "sync": UP,
        "async": UP,
        "async-method": UP,
    }
    assert result.checks["async"]["flavour"] == "async"
    assert result.checks["async-method"]["flavour"] == "method"
    assert result.checks["sync"]["critical"] is True
    assert result.checks["sync"]["duration_ms"] >= 0


def test_a_sync_check_runs_off_the_event_loop_thread() -> None:
    threads: list[threading.Thread] = []

    def where() -> CheckResult:
        threads.append(threading.current_thread())
        return CheckResult(UP)

    readiness(registry(FunctionCheck("where", where)))

    assert threads
    assert threads[0] is not threading.main_thread()


def test_checks_run_concurrently() -> None:
    async def slow_async() -> CheckResult:
        await asyncio.sleep(0.3)
        return CheckResult(UP)

    def slow_sync() -> CheckResult:
        time.sleep(0.3)
        return CheckResult(UP)

    health = registry(
        FunctionCheck("a", slow_async),
        FunctionCheck("b", slow_sync),
        FunctionCheck("c", slow_async),
    )

    result, elapsed = readiness(health)

    assert result.status == UP
    assert elapsed < 0.6  # one after the other would take 0.9 s


def test_a_hanging_check_is_down_after_the_timeout(release: threading.Event) -> None:
    async def hangs() -> CheckResult:
        await asyncio.sleep(30)
        return CheckResult(UP)

    def blocks() -> CheckResult:
        release.wait(30)
        return CheckResult(UP)

    health = registry(
        FunctionCheck("hangs", hangs),
        FunctionCheck("blocks", blocks, critical=True),
        FunctionCheck("fine", up),
        timeout=0.2,
    )

    result, elapsed = readiness(health, then=release.set)

    assert elapsed < 1.0
    assert result.checks["hangs"]["status"] == DOWN
    assert result.checks["blocks"]["status"] == DOWN
    assert "timed out" in result.checks["blocks"]["error"]
    assert result.checks["fine"]["status"] == UP
    assert result.status == DOWN


def test_an_exception_makes_a_check_down_with_its_class_name_only() -> None:
    def broken() -> CheckResult:
        raise ConnectionRefusedError("postgresql://app:s3cret@db:5432 refused")

    async def broken_async() -> CheckResult:
        raise KeyError("s3cret")

    result, _ = readiness(registry(FunctionCheck("db", broken), FunctionCheck("x", broken_async)))

    assert result.checks["db"]["status"] == DOWN
    assert result.checks["db"]["error"] == "ConnectionRefusedError"
    assert result.checks["x"]["error"] == "KeyError"
    assert "s3cret" not in json.dumps(result.as_json())


def test_a_critical_check_down_makes_readiness_down_503() -> None:
    health = registry(FunctionCheck("database", down, critical=True), FunctionCheck("ok", up))

    result, _ = readiness(health)

    assert (result.status, result.http_status) == (DOWN, 503)
    assert result.checks["database"] == {
        "status": DOWN,
        "critical": True,
        "duration_ms": result.checks["database"]["duration_ms"],
        "reason": "no answer",
    }


def test_a_critical_check_degraded_makes_readiness_down() -> None:
    health = registry(FunctionCheck("database", lambda: CheckResult(DEGRADED), critical=True))

    assert readiness(health)[0].status == DOWN


def test_a_non_critical_check_down_makes_readiness_degraded_200() -> None:
    health = registry(FunctionCheck("database", up, critical=True), FunctionCheck("books", down))

    result, _ = readiness(health)

    assert (result.status, result.http_status) == (DEGRADED, 200)
    assert result.checks["books"]["status"] == DOWN
    assert result.checks["books"]["critical"] is False


def test_shutdown_makes_readiness_down_503_with_a_shutdown_entry() -> None:
    health = registry(FunctionCheck("database", up, critical=True))
    health.shutdown.begin()

    result, _ = readiness(health)

    assert (result.status, result.http_status) == (DOWN, 503)
    assert result.checks["shutdown"]["status"] == DOWN
    assert result.checks["database"]["status"] == UP
    assert health.shutdown.shutting_down


def test_duplicate_check_names_are_refused() -> None:
    health = registry(FunctionCheck("database", up))

    with pytest.raises(ValueError, match="'database' is already registered"):
        health.add(FunctionCheck("database", down))
    assert len(health.checks) == 1

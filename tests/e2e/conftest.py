"""End-to-end scenarios against a whole stack (see e2e_stack.py).

By default the session starts its own stack on free ports (never 8001-8003, so `make dev` may
run alongside) with a throwaway PostgreSQL and a real Prometheus. With E2E_BOOKS_URL,
E2E_SHOP_URL and E2E_CHAT_URL set (plus E2E_PROMETHEUS_URL, E2E_JAEGER_URL, E2E_FAULTS_TOKEN)
the same scenarios run against that stack, e.g. compose; those that kill processes or stop the
database skip there.

Scenarios share the session's stack, so they run in a fixed order (ORDER below; other files
just before the last): the graceful shutdown scenario stops processes and runs last. Before
each scenario the stack is brought back to healthy: no faults, every process and the database
up, breakers closed.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from e2e_stack import (
    SERVICES,
    LocalStack,
    Stack,
    remote_stack_from_environment,
    start_local_stack,
    unavailable,
)

from chassis.testing.postgres import PostgresUnavailable, start_postgres

HERE = Path(__file__).parent
ORDER = [
    "test_trace.py",
    "test_breaker.py",
    "test_metrics.py",
    "test_outage.py",
    "test_no_lost_data.py",
    "test_health.py",
    "test_shutdown.py",
]
LAST = "test_shutdown.py"
SCENARIO_TIMEOUT = 300  # the first scenario also starts the stack
USED: list[str] = []  # which stack the session used, for the summary


def pytest_report_header(config: pytest.Config) -> str | None:
    """Says up front which stack the end-to-end scenarios will use."""
    if not any(
        Path(arg).resolve() == HERE or HERE in Path(arg).resolve().parents for arg in config.args
    ):
        return None
    urls = {name: os.environ.get(f"E2E_{name.upper()}_URL") for name in SERVICES}
    if any(urls.values()):
        return "e2e stack: the running one at " + ", ".join(
            f"{name} {url or '(unset)'}" for name, url in urls.items()
        )
    return "e2e stack: its own, started on free ports (never 8001-8003) with a throwaway PostgreSQL"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if USED:
        terminalreporter.write_line(USED[0])


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Runs the scenarios in ORDER, leaving every other test where it was."""
    slots = [index for index, item in enumerate(items) if HERE in item.path.parents]
    ours = sorted((items[index] for index in slots), key=_position)
    for index, item in zip(slots, ours, strict=True):
        item.add_marker(pytest.mark.timeout(SCENARIO_TIMEOUT))
        items[index] = item


def _position(item: pytest.Item) -> float:
    """A scenario file not in ORDER runs just before the shutdown scenario (which stops
    processes), so that it finds the stack running without a restart."""
    name = item.path.name
    return ORDER.index(name) if name in ORDER else ORDER.index(LAST) - 0.5


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    remote = remote_stack_from_environment()
    if remote is not None:
        USED.append(f"e2e stack used: the running one at {describe(remote)}")
        remote.canary_book = remote.create_book(stock=900_000, title="e2e canary")
        yield remote
        remote.close()
        return
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        unavailable("no `prometheus` binary on PATH (Debian: apt-get install prometheus)")
    try:
        postgres = start_postgres()
    except PostgresUnavailable as exc:
        unavailable(f"PostgreSQL unavailable: {exc}")
        raise
    workdir = tmp_path_factory.mktemp("e2e-stack")
    with postgres:
        for local in start_local_stack(workdir, postgres, prometheus):
            USED.append(f"e2e stack used: its own at {describe(local)}")
            yield local


def describe(stack: Stack) -> str:
    return ", ".join(f"{name} {url}" for name, url in stack.urls.items())


@pytest.fixture(autouse=True)
def healthy(stack: Stack) -> Stack:
    """Every scenario starts from a healthy stack, whatever the previous one left behind."""
    stack.ensure_healthy()
    return stack


@pytest.fixture
def local_stack(stack: Stack) -> LocalStack:
    """The stack, for scenarios that must kill processes or stop the database."""
    if not isinstance(stack, LocalStack):
        # Only against a running stack (compose-check): CI's make test runs these scenarios
        # on its own local stack first.
        pytest.skip("needs the local stack: it kills processes or stops PostgreSQL")
    return stack

"""pytest plugin of the chassis (the ``chassis`` pytest11 entry point): shared test fixtures.

- ``postgres_server`` (session): one throwaway PostgreSQL server for the whole run. Skipped when
  none can be started, except under CI (``CI`` set, not "false"/"0") where that is a failure.
- ``postgres_url`` (function): the SQLAlchemy URL of a fresh, empty database, dropped afterwards.
- ``problem``: ``chassis.testing.assert_problem``, checks a problem+json answer.
- ``browser`` (function): a headless Chromium under Playwright (``chassis.testing.browser``).
  Skipped when none can run, except under CI where that is a failure.
- ``token_issuer`` (session): a :class:`~chassis.dev_issuer.DevIssuer` with a fresh key pair;
  give a service its ``public_pem()`` as ``AUTH__PUBLIC_KEY`` and ``mint(...)`` its tokens.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from chassis.dev_issuer import DevIssuer
from chassis.testing import assert_problem
from chassis.testing.browser import chromium_or_skip
from chassis.testing.postgres import PostgresServer, PostgresUnavailable, start_postgres

if TYPE_CHECKING:
    from playwright.sync_api import Browser


def running_in_ci() -> bool:
    """Whether the ``CI`` environment variable asks for CI behaviour (never skip)."""
    return os.environ.get("CI", "").strip().lower() not in {"", "false", "0"}


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server for the session."""
    with _start_postgres_or_skip() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """SQLAlchemy URL of a fresh empty database, dropped after the test."""
    postgres_server.start()  # no-op unless an earlier test stopped it and failed
    name = f"test_{secrets.token_hex(6)}"
    yield postgres_server.create_database(name)
    postgres_server.start()  # the test may have stopped it
    postgres_server.drop_database(name)


@pytest.fixture
def problem() -> Callable[..., dict[str, Any]]:
    """``problem(response, 404, "book_id")``: see ``chassis.testing.assert_problem``."""
    return assert_problem


@pytest.fixture(scope="session")
def token_issuer() -> DevIssuer:
    """A token issuer with its own key pair, for the whole session."""
    return DevIssuer.generate()


@pytest.fixture
def browser() -> Iterator[Browser]:
    """Debian's headless Chromium driven by Playwright's sync API, closed after the test."""
    with chromium_or_skip(required=running_in_ci()) as launched:
        yield launched


def _start_postgres_or_skip() -> PostgresServer:
    try:
        return start_postgres()
    except PostgresUnavailable as exc:
        reason = str(exc)
    if running_in_ci():
        pytest.fail(f"CI requires PostgreSQL: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL unavailable: {reason}")

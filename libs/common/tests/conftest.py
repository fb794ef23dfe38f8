"""Fixtures of the chassis tests: a hermetic process environment, global state reset after every
test, and a tiny service (tests/tiny_service) built fresh per test."""

from __future__ import annotations

import importlib.util
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import structlog
from opentelemetry import propagate

from chassis import Service
from chassis.testing import SpanRecorder, hermetic_environment, hermetic_settings

TINY_DIR = Path(__file__).parent / "tiny_service"
# Loggers the chassis reconfigures; their state is put back after every test.
TOUCHED_LOGGERS = (
    "",
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "alembic",
    "connexion",
    "httpx",
)


def _load_tiny() -> ModuleType:
    name = "chassis_tests_tiny_service"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, TINY_DIR / "service.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(autouse=True)
def hermetic_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No exporter, no machine variables; logging, structlog and propagation reset afterwards."""
    hermetic_environment(monkeypatch)
    saved = {name: _logger_state(logging.getLogger(name)) for name in TOUCHED_LOGGERS}
    textmap = propagate.get_global_textmap()
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    for name, state in saved.items():
        _restore_logger(logging.getLogger(name), state)
    propagate.set_global_textmap(textmap)


def _logger_state(logger: logging.Logger) -> dict[str, Any]:
    return {
        "handlers": list(logger.handlers),
        "level": logger.level,
        "propagate": logger.propagate,
        "disabled": logger.disabled,
    }


def _restore_logger(logger: logging.Logger, state: dict[str, Any]) -> None:
    for handler in list(logger.handlers):
        if handler not in state["handlers"]:
            logger.removeHandler(handler)
            handler.close()
    for handler in state["handlers"]:
        if handler not in logger.handlers:
            logger.addHandler(handler)
    logger.setLevel(state["level"])
    logger.propagate = state["propagate"]
    logger.disabled = state["disabled"]


@pytest.fixture(scope="session")
def tiny() -> ModuleType:
    """The tiny service module: ``TinySettings``, ``SERVICE_DIR``, ``create_service``."""
    return _load_tiny()


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'tiny.db'}"


@pytest.fixture
def recorder() -> SpanRecorder:
    return SpanRecorder()


@pytest.fixture
def make_service(
    tiny: ModuleType, database_url: str, recorder: SpanRecorder
) -> Iterator[Callable[..., Service]]:
    """Builds the tiny service with hermetic settings (``environ`` adds variables); every span
    goes to ``recorder``. Services are released after the test."""
    built: list[Service] = []

    def make(**environ: str) -> Service:
        settings = hermetic_settings(
            tiny.TinySettings, tiny.SERVICE_DIR, database_url=database_url, environ=environ
        )
        service: Service = tiny.create_service(settings, span_processors=[recorder.processor])
        built.append(service)
        return service

    yield make
    for service in built:
        service.database.dispose()
        service.executor.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def service(make_service: Callable[..., Service]) -> Service:
    return make_service()

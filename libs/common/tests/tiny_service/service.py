"""The tiny test service's app factory (and ``python service.py PORT`` to serve it for real)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
from opentelemetry.sdk.trace import SpanProcessor

from chassis import Section, Service, Settings, load_settings

SERVICE_DIR = Path(__file__).parent


class GreetingSection(Section):
    text: str = "hi"
    repeat: int = 1


class TinySettings(Settings):
    greeting: GreetingSection = GreetingSection()


def load_handlers() -> ModuleType:
    name = "chassis_tests_tiny_handlers"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, SERVICE_DIR / "handlers.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def create_service(
    settings: TinySettings,
    *,
    span_processors: Iterable[SpanProcessor] = (),
    spec: Path = SERVICE_DIR / "openapi.yaml",
) -> Service:
    handlers = load_handlers()
    service = Service(
        settings,
        spec=spec,
        handlers=handlers,
        span_processors=span_processors,
    )
    with service.database.engine.begin() as connection:
        connection.execute(sa.text(handlers.SCHEMA))
    return service


if __name__ == "__main__":
    from chassis.server import serve

    serve(create_service(load_settings(TinySettings, SERVICE_DIR)), port=int(sys.argv[1]))

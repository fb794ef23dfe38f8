"""The shop app factory: settings -> chassis -> API -> notices and recovery."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from opentelemetry.sdk.trace import SpanProcessor

from chassis import Service, ServiceClient
from shop.notices import ChatNotices
from shop.recovery import RecoveryLoop
from shop.settings import SERVICE_DIR, ShopSettings, load


@dataclass(frozen=True)
class ShopComponents:
    settings: ShopSettings
    books: ServiceClient
    notices: ChatNotices
    recovery: RecoveryLoop


def create_service(
    settings: ShopSettings | None = None, *, span_processors: Iterable[SpanProcessor] = ()
) -> Service:
    from shop import handlers  # handlers import this module for ShopComponents

    settings = settings or load()
    service = Service(
        settings,
        spec=SERVICE_DIR / "openapi.yaml",
        handlers=handlers,
        span_processors=span_processors,
    )
    books = service.client("books")
    components = ShopComponents(
        settings=settings,
        books=books,
        notices=ChatNotices(service.client("chat")),
        recovery=RecoveryLoop(
            service.database,
            books,
            interval=settings.orders.recovery_interval_seconds,
            older_than=settings.orders.pending_grace_seconds,
        ),
    )
    service.provide(components)
    service.on_startup(lambda _: components.recovery.start())
    service.on_shutdown(lambda _: components.recovery.stop())
    service.on_shutdown(lambda _: components.notices.close())
    return service

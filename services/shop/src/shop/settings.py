"""shop's settings: the chassis sections plus how orders are settled and recovered."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from chassis import Section, Settings, load_settings

SERVICE_DIR = Path(__file__).parent


class OrdersSection(Section):
    # A pending order untouched for this long was abandoned by a crashed process: recovery
    # settles it. A live request stops starting reservations after half of it.
    pending_grace_seconds: float = Field(default=60.0, gt=0)
    recovery_interval_seconds: float = Field(default=30.0, gt=0)
    # A request replaying an idempotency key waits this long for the first one to settle.
    replay_wait_seconds: float = Field(default=5.0, ge=0)
    # Test hook: exit the process right after reserving stock, before recording the outcome.
    crash_after_reserving: bool = False


class ShopSettings(Settings):
    orders: OrdersSection = OrdersSection()


def load() -> ShopSettings:
    return load_settings(ShopSettings, SERVICE_DIR)

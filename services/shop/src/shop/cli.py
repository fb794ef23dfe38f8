"""``shop migrate | seed | serve`` (design §9)."""

from __future__ import annotations

from chassis import ServiceCli
from shop.app import create_service
from shop.settings import SERVICE_DIR, load

cli = ServiceCli(
    name="shop",
    load_settings=load,
    create_service=create_service,
    migrations=SERVICE_DIR / "migrations",
)


def main() -> int:
    return cli.main()

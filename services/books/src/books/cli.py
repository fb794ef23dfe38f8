"""``books migrate | seed | serve`` (design §9)."""

from __future__ import annotations

from books.app import create_service
from books.seed import seed_catalog
from books.settings import SERVICE_DIR, load
from chassis import ServiceCli

cli = ServiceCli(
    name="books",
    load_settings=load,
    create_service=create_service,
    migrations=SERVICE_DIR / "migrations",
    seed=seed_catalog,
)


def main() -> int:
    return cli.main()

"""``books migrate | seed | serve`` (design §9)."""

from __future__ import annotations

from books.settings import SERVICE_DIR, load
from chassis import ServiceCli

cli = ServiceCli(
    name="books",
    load_settings=load,
    # imported by the command that runs them: migrate and seed never load the web stack
    create_service="books.app:create_service",
    migrations=SERVICE_DIR / "migrations",
    seed="books.seed:seed_catalog",
)


def main() -> int:
    return cli.main()

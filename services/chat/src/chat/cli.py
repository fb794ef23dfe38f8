"""``chat migrate | seed | serve`` (design §9)."""

from __future__ import annotations

from chassis import ServiceCli
from chat.settings import SERVICE_DIR, load

cli = ServiceCli(
    name="chat",
    load_settings=load,
    # imported by the command that runs them: migrate and seed never load the web stack
    create_service="chat.app:create_service",
    migrations=SERVICE_DIR / "migrations",
)


def main() -> int:
    return cli.main()

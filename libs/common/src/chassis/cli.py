"""The service command line of design §9: ``<service> migrate | seed | serve``.

A service's console script is::

    cli = ServiceCli(name="books", load_settings=load, create_service=create_service,
                     migrations=SERVICE_DIR / "migrations", seed=seed_catalog)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from sqlalchemy.orm import Session

from chassis.config import ConfigError, Settings
from chassis.db import Database
from chassis.logging import configure_logging, get_logger
from chassis.service import Service

SettingsT = TypeVar("SettingsT", bound=Settings)
log = get_logger("chassis.cli")


@dataclass(frozen=True)
class ServiceCli(Generic[SettingsT]):
    name: str
    load_settings: Callable[[], SettingsT]
    create_service: Callable[[SettingsT], Service]
    migrations: Path
    seed: Callable[[Session], int] | None = None

    def main(self, argv: Sequence[str] | None = None) -> int:
        arguments = self._parser().parse_args(argv)
        try:
            settings = self.load_settings()
        except ConfigError as exc:
            print(f"{self.name}: {exc}", file=sys.stderr)
            return 2
        configure_logging(self.name, settings.logging)
        command: Callable[[SettingsT, argparse.Namespace], int] = arguments.command
        return command(settings, arguments)

    def _parser(self) -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(prog=self.name, description=f"The {self.name} service.")
        commands = parser.add_subparsers(required=True, metavar="command")
        migrate = commands.add_parser("migrate", help="apply the database migrations")
        migrate.add_argument("--revision", default="head", help="target revision (default head)")
        migrate.add_argument(
            "--downgrade", action="store_true", help="move down to --revision instead of up"
        )
        migrate.set_defaults(command=self._migrate)
        seed = commands.add_parser("seed", help="load demo data (idempotent)")
        seed.set_defaults(command=self._seed)
        serve = commands.add_parser("serve", help="run the production server")
        serve.add_argument("--host", help="interface to listen on (default http.host)")
        serve.add_argument("--port", type=int, help="port to listen on (default http.port)")
        serve.set_defaults(command=self._serve)
        return parser

    def _migrate(self, settings: SettingsT, arguments: argparse.Namespace) -> int:
        from chassis import migrations  # alembic only loads for this command: faster serve

        url = settings.database.url.get_secret_value()
        if arguments.downgrade:
            migrations.downgrade(self.migrations, url, arguments.revision)
        else:
            migrations.upgrade(self.migrations, url, arguments.revision)
        revision = migrations.current_revision(self.migrations, url)
        log.info("migrations applied", revision=revision)
        return 0

    def _seed(self, settings: SettingsT, _: argparse.Namespace) -> int:
        if self.seed is None:
            log.info("nothing to seed")
            return 0
        database = Database(settings.database)
        try:
            with database.session_scope() as session:
                added = self.seed(session)
        finally:
            database.dispose()
        log.info("seeded", added=added)
        return 0

    def _serve(self, settings: SettingsT, arguments: argparse.Namespace) -> int:
        from chassis.server import serve

        try:
            service = self.create_service(settings)
        except ConfigError as exc:  # what only the service can check, e.g. auth.public_key
            print(f"{self.name}: {exc}", file=sys.stderr)
            return 2
        serve(service, host=arguments.host, port=arguments.port)
        return 0

"""The service command line of design §9: ``<service> migrate | seed | serve``.

A service's console script is::

    cli = ServiceCli(name="books", load_settings=load, create_service="books.app:create_service",
                     migrations=SERVICE_DIR / "migrations", seed="books.seed:seed_catalog")

``create_service`` and ``seed`` may be given as "module:function": imported only by the command
that runs them, so that `migrate` and `seed` do not load the web stack (and `migrate` not the
service's domain either): less memory, a faster start.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from chassis.config import ConfigError, Settings
from chassis.logging import configure_logging, get_logger

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from chassis.service import Service

SettingsT = TypeVar("SettingsT", bound=Settings)
log = get_logger("chassis.cli")


def resolve(target: Any) -> Any:
    """``target`` itself, or the attribute a "module:attribute" string names (imported now)."""
    if not isinstance(target, str):
        return target
    module, _, attribute = target.partition(":")
    if not attribute:
        raise ValueError(f"{target!r}: expected 'module:attribute'")
    return getattr(importlib.import_module(module), attribute)


@dataclass(frozen=True)
class ServiceCli(Generic[SettingsT]):
    name: str
    load_settings: Callable[[], SettingsT]
    create_service: Callable[[SettingsT], Service] | str
    migrations: Path
    seed: Callable[[Session], int] | str | None = None

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
        from chassis import migrations  # the database layer only loads for this command

        url = settings.database.url.get_secret_value()
        up_to_head = not arguments.downgrade and arguments.revision == "head"
        if up_to_head and migrations.is_up_to_date(self.migrations, url):
            log.info("migrations applied", revision=migrations.head_revision(self.migrations))
            return 0
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
        from chassis.db import Database

        seed: Callable[[Session], int] = resolve(self.seed)
        database = Database(settings.database)
        try:
            with database.session_scope() as session:
                added = seed(session)
        finally:
            database.dispose()
        log.info("seeded", added=added)
        return 0

    def _serve(self, settings: SettingsT, arguments: argparse.Namespace) -> int:
        from chassis.server import serve

        create_service: Callable[[SettingsT], Service] = resolve(self.create_service)
        try:
            service = create_service(settings)
        except ConfigError as exc:  # what only the service can check, e.g. auth.public_key
            print(f"{self.name}: {exc}", file=sys.stderr)
            return 2
        serve(service, host=arguments.host, port=arguments.port)
        return 0
